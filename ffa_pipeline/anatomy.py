"""Where the fovea is in a photo or an angiogram, how dark it is against its surround, and where an angiogram's
retina ends.

Ours (not a library's): used to check that a synthetic angiogram has its fovea where the input has it
(`experiments/real_photo_check.py`, `experiments/phantom_realism.py`), to draw a photo's foveal pit into the
sources rendered from real angiograms, and to find where a real SLO and its angiogram agree
(`train/make_angiogram_pairs.py`).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

# The fovea's radius as a fraction of the frame: 0.05 in a 45-55 degree photo or angiogram, about a quarter of
# that in a 200 degree ultra-widefield image (measured on the UWF test angiograms: 3-5 px of 256). The phantom's
# OCT en-face images are measured as photos.
FOVEA_RADIUS = {"cfp": 0.05, "oct": 0.05, "uwf_slo": 0.015}
# `retinal_field`: brighter than 0.6 x the Otsu level between the retina and the dark around it (the Otsu level alone
# cut off the dim peripheral retina of the UWF train angiograms, by eye, 2026-12-01), plus a margin of 0.02 x the side.
RETINA_LEVEL, RETINA_MARGIN = 0.6, 0.02


class Fovea(NamedTuple):
    """A fovea found by `find_fovea`: its pixel in the image and how dark it is against its surround."""

    y: int
    x: int
    darkness: float  # mean grey within 0.8 x the radius / mean within 2.5 x the radius (< 1: darker than around)


def find_fovea(grey: np.ndarray, field: np.ndarray, radius: float = FOVEA_RADIUS["cfp"]) -> Fovea:
    """The fovea of a square HxW grey image: the point of the centre (middle half of each axis) darkest against its
    surround, the field's mean grey within 0.8 x `radius` (a fraction of the side) over its mean within 2.5 x
    `radius`, at least 0.8 x `radius` inside the field. Against the surround and inside the field, so that neither a
    vignetted edge of the centre nor the black beyond the field is taken for the fovea (the plain darkest point lay
    on the centre's edge in 3 of 11 real normal angiograms and in the model's outputs of the skimage photo, and at
    the field's edge in the UWF SLOs and their angiograms)."""
    side = grey.shape[0]
    in_field = field.astype(np.float32)

    def field_mean(sigma: float) -> np.ndarray:
        weight = cv2.GaussianBlur(in_field, (0, 0), sigma)
        return cv2.GaussianBlur(grey.astype(np.float32) * in_field, (0, 0), sigma) / np.maximum(weight, 1e-3)

    relative = field_mean(0.8 * radius * side) / np.maximum(field_mean(2.5 * radius * side), 1e-3)
    margin = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * round(0.8 * radius * side) + 1,) * 2)
    search = cv2.erode(field.astype(np.uint8), margin).astype(bool)
    search[: side // 4] = search[3 * side // 4:] = search[:, : side // 4] = search[:, 3 * side // 4:] = False
    if not search.any():
        return Fovea(side // 2, side // 2, float("inf"))
    y, x = np.unravel_index(np.where(search, relative, np.inf).argmin(), relative.shape)
    return Fovea(int(y), int(x), float(relative[y, x]))


def disc_at(fovea: Fovea, side: int, radius: float = FOVEA_RADIUS["cfp"]) -> np.ndarray:
    """A side x side mask of a disc of `radius` x the side at `fovea`."""
    yy, xx = np.mgrid[:side, :side]
    return (yy - fovea.y) ** 2 + (xx - fovea.x) ** 2 <= (radius * side) ** 2


def fovea_of(grey: np.ndarray, field: np.ndarray, radius: float = FOVEA_RADIUS["cfp"]) -> np.ndarray:
    """A disc of `radius` x the side at the image's fovea (`find_fovea`)."""
    return disc_at(find_fovea(grey, field, radius), grey.shape[0], radius)


def fovea_distance(a: Fovea, b: Fovea) -> float:
    """Distance between two foveae in pixels."""
    return float(np.hypot(a.y - b.y, a.x - b.x))


def retinal_field(angiogram: np.ndarray) -> np.ndarray:
    """HxW bool: a square angiogram's retinal field (uint8 or float in [0, 1]), with a margin of RETINA_MARGIN x the
    side; outside it lie the eyelids, lashes and black surround of an ultra-widefield frame.

    The convex hull of the largest region brighter than RETINA_LEVEL x the image's Otsu level, both after a blur of
    0.01 x the side, which keeps the dim peripheral retina and the label box inside the field.
    """
    side = angiogram.shape[0]
    grey = angiogram if angiogram.dtype == np.uint8 else (np.clip(angiogram, 0, 1) * 255).round().astype(np.uint8)
    smooth = cv2.GaussianBlur(grey, (0, 0), 0.01 * side)
    otsu, _ = cv2.threshold(smooth, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats((smooth > RETINA_LEVEL * otsu).astype(np.uint8))
    field = np.zeros(grey.shape, np.uint8)
    if count > 1:
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        points = np.argwhere(labels == largest)[:, ::-1].astype(np.int32)
        cv2.fillConvexPoly(field, cv2.convexHull(points), 1)
    reach = 2 * round(RETINA_MARGIN * side) + 1
    return cv2.dilate(field, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach))).astype(bool)
