"""Cameras: which part of the retina each modality sees and how degrees map to pixels.

``cfp`` and ``oct`` share one fundus camera (~45 deg field centred between disc and fovea);
``uwf_slo`` has a wide camera (~200 deg, centred near the fovea). A camera is a similarity
transform from retina degrees to pixel coordinates (x right, y down, pixel centres at
integers), so any FFA rendered with the same camera is pixel-aligned with its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .geometry import EyeGeometry

FUNDUS_FIELD_DEG = 45.0
FOVEA_TO_DISC_CENTRING = 0.3  # canonical fundus framing: centre 30 % of the way from the fovea to the disc
UWF_FIELD_DEG = 200.0
FUNDUS_APERTURE = 0.47  # radius of the circular field of view, fraction of the image side


@dataclass(frozen=True)
class Camera:
    size: int
    centre_deg: tuple[float, float]
    px_per_deg: float
    rotation_deg: float = 0.0

    @cached_property
    def matrix(self) -> np.ndarray:
        """2x3 affine from retina degrees to pixels."""
        a = np.radians(self.rotation_deg)
        linear = self.px_per_deg * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        offset = (self.size - 1) / 2.0 - linear @ np.asarray(self.centre_deg, float)
        return np.hstack([linear, offset[:, None]])

    def to_pixels(self, points_deg: np.ndarray) -> np.ndarray:
        matrix = self.matrix
        return np.asarray(points_deg, np.float64) @ matrix[:, :2].T + matrix[:, 2]

    def retina_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Retina coordinates (degrees) of every pixel centre, as two float32 images."""
        matrix = self.matrix
        inverse = np.linalg.inv(matrix[:, :2]).astype(np.float32)
        pixels = np.arange(self.size, dtype=np.float32)
        u = (pixels - np.float32(matrix[0, 2]))[None, :]
        v = (pixels - np.float32(matrix[1, 2]))[:, None]
        return inverse[0, 0] * u + inverse[0, 1] * v, inverse[1, 0] * u + inverse[1, 1] * v


def fundus_camera(eye: EyeGeometry, size: int, rng: np.random.Generator | None = None) -> Camera:
    """45 deg camera centred between fovea and disc; ``rng`` jitters field size, centre and roll.

    Real photos are fovea-centred (the disc at the edge of the field, as in scikit-image's), disc-centred, or in
    between; with ``rng`` the centre is anywhere on that line, so the model sees the disc at every such place.
    """
    towards_disc, field, shift, roll = FOVEA_TO_DISC_CENTRING, FUNDUS_FIELD_DEG, np.zeros(2), 0.0
    if rng is not None:
        towards_disc = rng.uniform(-0.2, 0.7)
        field *= rng.uniform(0.9, 1.1)
        shift = rng.normal(0.0, 1.5, 2)
        roll = rng.normal(0.0, 3.0)
    centre = eye.fovea + towards_disc * (eye.disc_centre - eye.fovea) + shift
    return Camera(size, (float(centre[0]), float(centre[1])), 2 * FUNDUS_APERTURE * size / field, roll)


def uwf_camera(eye: EyeGeometry, size: int, rng: np.random.Generator | None = None) -> Camera:
    """~200 deg camera centred a little nasal of the fovea, as an Optos image is."""
    centre = eye.fovea + 0.2 * (eye.disc_centre - eye.fovea)
    field, roll = UWF_FIELD_DEG, 0.0
    if rng is not None:
        field *= rng.uniform(0.92, 1.08)
        centre = centre + rng.normal(0.0, 4.0, 2)
        roll = rng.normal(0.0, 3.0)
    return Camera(size, (float(centre[0]), float(centre[1])), size / field, roll)
