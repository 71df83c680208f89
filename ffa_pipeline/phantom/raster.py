"""Rasterise one eye's geometry through one camera into coverage layers every modality composes.

Vessels are drawn as anti-aliased OpenCV polylines grouped by pixel width (sub-pixel vessels
are drawn one pixel wide and proportionally fainter); lesions are filled polygons. Layers are
float32 coverages in [0, 1]. Masks are coverage >= 0.5, so a mask shows what a pixel shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .camera import Camera
from .geometry import EyeGeometry
from .lesions import LESION_TYPES
from .vessels import ARTERY, VEIN

SHIFT = 4  # sub-pixel bits for OpenCV drawing
SCALE = 1 << SHIFT
FAINT_LEVELS = 8  # grey levels for vessels thinner than a pixel
LAMINAR_MIN_WIDTH_PX = 3.0  # veins at least this wide show laminar flow (a dark core filling late)
NEW_VESSEL_RADIUS_DEG = 0.03


@dataclass
class Frame:
    """An eye seen through a camera: coverage layers plus distance maps, all (size, size) float32."""

    camera: Camera
    x: np.ndarray
    y: np.ndarray
    fovea_distance: np.ndarray
    disc_distance: np.ndarray
    artery: np.ndarray
    vein: np.ndarray
    vein_core: np.ndarray
    vein_occluded: np.ndarray | None
    new_vessels: np.ndarray | None
    disc: np.ndarray
    cup: np.ndarray
    lesions: dict[str, np.ndarray] = field(default_factory=dict)
    texture: dict[str, np.ndarray] = field(default_factory=dict)
    _memo: dict = field(default_factory=dict, repr=False)

    def memo(self, key: str, compute):
        """Derived layers computed once per frame and shared by the renderers (e.g. CFP and FFA)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def blurred(self, name: str, sigma_deg: float) -> np.ndarray | float:
        """A lesion (or ``disc``/``cup``) layer softened by a Gaussian of ``sigma_deg`` degrees."""
        layer = getattr(self, name) if name in ("disc", "cup") else self.lesion(name)
        sigma = sigma_deg * self.px_per_deg
        if np.isscalar(layer) or sigma < 0.3:
            return layer
        return self.memo(f"{name}@{sigma_deg}", lambda: cv2.GaussianBlur(layer, (0, 0), sigma))

    @property
    def size(self) -> int:
        return self.camera.size

    @property
    def px_per_deg(self) -> float:
        return self.camera.px_per_deg

    def perfused(self, faz_radius: float) -> np.ndarray:
        """Where retinal capillaries carry blood: everywhere but the foveal avascular zone and non-perfusion."""

        def compute() -> np.ndarray:
            faz = (self.fovea_distance * (1.0 / (1.25 * faz_radius))) ** 2
            return (1.0 - self.lesion("non_perfusion")) * (1.0 - np.exp(-faz * faz))

        return self.memo("perfused", compute)

    def lesion(self, name: str) -> np.ndarray | float:
        """Coverage of a lesion type, or 0.0 when the eye has none in view (cheap to compose)."""
        return self.lesions.get(name, 0.0)

    def lesion_mask(self, name: str) -> np.ndarray:
        """0/255 mask of a lesion type (all zeros when absent)."""
        layer = self.lesions.get(name)
        if layer is None:
            return np.zeros((self.size, self.size), np.uint8)
        return self.memo(f"mask {name}", lambda: (layer >= 0.5).astype(np.uint8) * np.uint8(255))

    def vessel_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Vessel mask (0/255) and artery/vein labels (0 background, 1 artery, 2 vein; the denser one wins)."""

        def compute() -> tuple[np.ndarray, np.ndarray]:
            artery, vein = self.artery >= 0.5, self.vein >= 0.5
            is_vein = vein & (self.vein >= self.artery)
            labels = artery.astype(np.uint8)
            labels[is_vein] = 2
            return (artery | vein).astype(np.uint8) * np.uint8(255), labels

        return self.memo("vessel labels", compute)


def draw_segments(size: int, start: np.ndarray, end: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Anti-aliased line segments of the given pixel widths, as float32 coverage."""
    canvas = np.zeros((size, size), np.uint8)
    thickness = np.maximum(1, np.rint(width)).astype(np.int32)
    # A vessel thinner than a pixel blurs into a fainter one-pixel line (square root: the optics spread it).
    level = np.clip(np.rint(np.sqrt(np.minimum(width, 1.0)) * FAINT_LEVELS), 0, FAINT_LEVELS).astype(np.int32)
    visible = level > 0
    segments = np.rint(np.stack([start, end], axis=1) * SCALE).astype(np.int32)[visible]
    key = (thickness * (FAINT_LEVELS + 1) + level)[visible]
    order = np.argsort(key, kind="stable")
    key, segments = key[order], segments[order]
    bounds = np.flatnonzero(np.diff(key)) + 1
    for group_key, group in zip(key[np.r_[0, bounds]] if len(key) else [], np.split(segments, bounds)):
        group_thickness, group_level = divmod(int(group_key), FAINT_LEVELS + 1)
        colour = round(255 * group_level / FAINT_LEVELS)
        cv2.polylines(canvas, group, False, colour, group_thickness, cv2.LINE_AA, SHIFT)
    return canvas.astype(np.float32) / 255.0


def fill_polygons(size: int, polygons: list[np.ndarray]) -> np.ndarray:
    """Union of filled, anti-aliased polygons (already in pixels), as float32 coverage."""
    canvas = np.zeros((size, size), np.uint8)
    for polygon in polygons:
        cv2.fillPoly(canvas, [np.rint(polygon * SCALE).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
    return canvas.astype(np.float32) / 255.0


def _in_view(points: np.ndarray, size: int, margin: float) -> np.ndarray:
    return np.all((points > -margin) & (points < size - 1 + margin), axis=-1)


def rasterise(eye: EyeGeometry, camera: Camera, rng: np.random.Generator) -> Frame:
    """Draw every layer of ``eye`` through ``camera``; ``rng`` draws the tissue textures."""
    size, scale = camera.size, camera.px_per_deg
    x, y = camera.retina_grid()
    tree = eye.vessels
    pixels = camera.to_pixels(tree.points)
    first, second = tree.segments()
    in_view = _in_view(pixels[first], size, 4) | _in_view(pixels[second], size, 4)
    first, second = first[in_view], second[in_view]
    width = (tree.radius[first] + tree.radius[second]) * scale
    kind = tree.kind[first]

    def layer(selected: np.ndarray, width_factor: float = 1.0) -> np.ndarray:
        return draw_segments(size, pixels[first[selected]], pixels[second[selected]], width[selected] * width_factor)

    is_vein = kind == VEIN
    occluded = tree.occluded[first] & is_vein
    new_vessels = None
    if eye.new_vessels:
        paths = [camera.to_pixels(path) for path in eye.new_vessels]
        starts = np.concatenate([p[:-1] for p in paths])
        ends = np.concatenate([p[1:] for p in paths])
        new_vessels = draw_segments(size, starts, ends, np.full(len(starts), 2 * NEW_VESSEL_RADIUS_DEG * scale))

    lesions = {}
    for name in LESION_TYPES:
        shapes = _shapes_in_view(camera, eye.lesions[name])
        if shapes:
            lesions[name] = fill_polygons(size, shapes)

    return Frame(
        camera=camera,
        x=x,
        y=y,
        fovea_distance=np.sqrt((x - eye.fovea[0]) ** 2 + (y - eye.fovea[1]) ** 2),
        disc_distance=np.sqrt((x - eye.disc_centre[0]) ** 2 + (y - eye.disc_centre[1]) ** 2),
        artery=layer(kind == ARTERY),
        vein=layer(is_vein),
        vein_core=layer(is_vein & (width >= LAMINAR_MIN_WIDTH_PX), 0.45),
        vein_occluded=layer(occluded) if occluded.any() else None,
        new_vessels=new_vessels,
        disc=fill_polygons(size, [camera.to_pixels(eye.disc_outline)]),
        cup=fill_polygons(size, [camera.to_pixels(eye.cup_outline)]),
        lesions=lesions,
        texture={
            "broad": smooth_noise(rng, size, 20.0 * scale),
            "low": smooth_noise(rng, size, 6.0 * scale),
            "mid": smooth_noise(rng, size, max(2.0, 1.0 * scale)),
            "mesh": mesh(rng, size, max(2.5, 0.5 * scale)),
        },
    )


def _shapes_in_view(camera: Camera, shapes: list[np.ndarray]) -> list[np.ndarray]:
    """The polygons (in pixels) whose bounding box overlaps the image; all transformed in one go."""
    if not shapes:
        return []
    starts = np.cumsum([0] + [len(shape) for shape in shapes[:-1]])
    pixels = camera.to_pixels(np.concatenate(shapes))
    low, high = np.minimum.reduceat(pixels, starts), np.maximum.reduceat(pixels, starts)
    overlaps = (low.max(axis=1) < camera.size) & (high.min(axis=1) > 0)
    return [shape for shape, keep in zip(np.split(pixels, starts[1:]), overlaps) if keep]


def smooth_noise(rng: np.random.Generator, size: int, feature_px: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with blobs about ``feature_px`` pixels across."""
    cells = int(np.clip(np.ceil(size / max(feature_px, 1.0)), 2, size))
    coarse = rng.standard_normal((cells, cells), dtype=np.float32)
    fine = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    mean, std = cv2.meanStdDev(fine)
    return (fine - np.float32(mean[0, 0])) * np.float32(1.0 / (std[0, 0] + 1e-6))


def mesh(rng: np.random.Generator, size: int, cell_px: float) -> np.ndarray:
    """Capillary-like network: thin bright ridges along the zero crossings of smooth noise."""
    field_ = smooth_noise(rng, size, cell_px)
    return np.clip(1.0 - np.abs(field_) / 0.35, 0.0, 1.0) ** 2
