"""ffa_pipeline.anatomy: the fovea is the central spot darkest against its surround, inside the field."""

from __future__ import annotations

import numpy as np

from ffa_pipeline.anatomy import find_fovea, fovea_of

SIDE = 128


def eye(fovea: tuple[int, int] = (70, 58), depth: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """A round field, vignetted towards its edge, with a dark fovea."""
    yy, xx = np.mgrid[:SIDE, :SIDE]
    radius = np.hypot(yy - 63.5, xx - 63.5)
    field = radius < 60
    grey = 0.6 - 0.5 * (radius / 60) ** 4 - depth * np.exp(-((yy - fovea[0]) ** 2 + (xx - fovea[1]) ** 2) / 8.0**2)
    return (grey * field).astype(np.float32), field


def test_the_fovea_is_the_dark_spot_not_the_vignetted_edge():
    grey, field = eye()
    fovea = find_fovea(grey, field)
    assert np.hypot(fovea.y - 70, fovea.x - 58) <= 2
    assert fovea.darkness < 0.85
    assert fovea_of(grey, field)[70, 58]


def test_no_dark_fovea_reads_as_no_darker_than_around():
    assert find_fovea(*eye(depth=0.0)).darkness > 0.95


def test_an_image_without_a_field_has_no_fovea():
    fovea = find_fovea(np.zeros((SIDE, SIDE), np.float32), np.zeros((SIDE, SIDE), bool))
    assert fovea.darkness == float("inf")
