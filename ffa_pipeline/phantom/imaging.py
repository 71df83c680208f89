"""What the instrument adds: field-of-view apertures, eyelids, and domain randomisation.

Randomisation covers exposure, colour balance, gamma, vignetting and illumination gradient,
optical blur, sensor noise and JPEG compression, plus an optional small misregistration of
the angiogram against its source (a similarity transform whose 2x3 matrix is returned).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .camera import FUNDUS_APERTURE


@lru_cache(maxsize=8)
def fundus_aperture(size: int) -> np.ndarray:
    """Circular field of view of a fundus camera (soft one-pixel edge); shared, read-only."""
    centre = (size - 1) / 2.0
    yy, xx = np.ogrid[:size, :size]
    radius = np.sqrt((xx - centre) ** 2 + (yy - centre) ** 2)
    aperture = np.clip(FUNDUS_APERTURE * size - radius + 0.5, 0.0, 1.0).astype(np.float32)
    aperture.flags.writeable = False
    return aperture


def uwf_view(
    size: int,
    rng: np.random.Generator,
    half_width: tuple[float, float] = (0.48, 0.54),
    half_height: tuple[float, float] = (0.4, 0.46),
) -> tuple[np.ndarray, np.ndarray]:
    """Retina visible between the eyelids of an Optos image, and the lids and lashes around it (planar RGB).
    The window's half-width and half-height (fractions of the side) are drawn from the given ranges."""
    coarse = np.linspace(0.0, 1.0, 64, dtype=np.float32)
    u = (coarse[None, :] - rng.uniform(0.48, 0.52)) / rng.uniform(*half_width)
    v = (coarse[:, None] - rng.uniform(0.5, 0.55)) / rng.uniform(*half_height)
    power = rng.uniform(2.0, 2.6)
    inside = cv2.resize(np.abs(u) ** power + np.abs(v) ** power, (size, size), interpolation=cv2.INTER_LINEAR)
    retina = np.clip((1.0 - inside) * (size / 6.0), 0.0, 1.0)

    shade = 0.7 + 0.3 * cv2.resize(rng.random((6, 6), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    shade *= np.clip(1.4 - 0.5 * inside, 0.4, 1.0)  # the lid margin next to the eye is lit brightest
    lashes = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(8, 20))):
        heading = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.6) * np.linspace(0, 1, 12)[:, None]
        path = rng.uniform(0, size, 2) + np.cumsum(size * 0.03 * np.hstack([np.cos(heading), np.sin(heading)]), 0)
        cv2.polylines(lashes, [np.rint(path * 16).astype(np.int32)], False, 255, max(1, size // 200), cv2.LINE_AA, 4)
    shade *= 1.0 - lashes.astype(np.float32) * (0.8 / 255.0)
    lid = np.array([0.7, 0.95, 0.2], np.float32)[:, None, None] * shade
    lid[:, : max(1, int(size * rng.uniform(0.02, 0.05)))] = 0.0
    return retina, lid


@dataclass(frozen=True)
class Acquisition:
    """One exposure's imaging conditions; the defaults are a clean, canonical exposure."""

    gain: float = 1.0
    gamma: float = 1.0
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    vignette: float = 0.3
    gradient: tuple[float, float] = (0.0, 0.0)
    blur_px: float = 0.0
    noise: float = 0.0
    jpeg_quality: int | None = None

    @classmethod
    def random(cls, rng: np.random.Generator, size: int) -> Acquisition:
        """Plausible variation between photographers, devices and visits (blur scales with the image size)."""
        return cls(
            gain=float(rng.uniform(0.8, 1.2)),
            gamma=float(rng.uniform(0.8, 1.25)),
            colour=tuple(float(c) for c in rng.uniform(0.88, 1.12, 3)),
            vignette=float(rng.uniform(0.1, 0.55)),
            gradient=tuple(float(g) for g in rng.normal(0.0, 0.08, 2)),
            blur_px=float(rng.uniform(0.0, 0.8) * size / 256),
            noise=float(rng.uniform(0.005, 0.03)),
            jpeg_quality=int(rng.integers(60, 96)) if rng.random() < 0.6 else None,
        )


def expose(
    image: np.ndarray, aperture: np.ndarray | None, acquisition: Acquisition, rng: np.random.Generator
) -> np.ndarray:
    """Float image in [0, 1], grey (H, W) or planar RGB (3, H, W) -> uint8 (H, W) or (H, W, 3) as recorded."""
    size = image.shape[-1]
    u, v, radius2 = _unit_grid(size)
    light = (
        acquisition.gain
        * (1.0 - acquisition.vignette * radius2)
        * (1.0 + acquisition.gradient[0] * u + acquisition.gradient[1] * v)
    )
    if image.ndim == 3:
        planes = image * light * np.asarray(acquisition.colour, np.float32)[:, None, None]
        out = cv2.merge([cv2.convertScaleAbs(plane, alpha=255.0) for plane in planes])
    else:
        out = cv2.convertScaleAbs(image * light, alpha=255.0)
    if acquisition.gamma != 1.0:
        out = cv2.LUT(out, _curve(lambda x: x ** (1.0 / acquisition.gamma)))
    if acquisition.blur_px >= 0.3:
        out = cv2.GaussianBlur(out, (0, 0), acquisition.blur_px)
    if acquisition.noise > 0:
        strength = cv2.LUT(out, _curve(lambda x: acquisition.noise * np.sqrt(x + 0.05), np.float32))
        grain = _grain(rng, out.shape) * strength
        out = cv2.convertScaleAbs(out.astype(np.float32) + grain)
    if aperture is not None:
        out = cv2.multiply(out, _as_uint8(aperture, out.ndim), scale=1.0 / 255.0)
    if acquisition.jpeg_quality is not None:
        out = _jpeg(out, acquisition.jpeg_quality)
    return out


def _as_uint8(mask: np.ndarray, ndim: int) -> np.ndarray:
    """A [0, 1] float mask as uint8 (0..255), repeated over channels for colour images."""
    scaled = cv2.convertScaleAbs(mask, alpha=255.0)
    return cv2.merge([scaled] * 3) if ndim == 3 else scaled


@lru_cache(maxsize=8)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates scaled to [-1, 1] (x, y) and the squared radius."""
    axis = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) / (size / 2.0)
    u, v = axis[None, :], axis[:, None]
    return u, v, u**2 + v**2


def _curve(function, dtype=np.uint8) -> np.ndarray:
    """Lookup table of a function on [0, 1] for cv2.LUT, scaled back to 0..255 (uint8 rounds, float32 keeps)."""
    values = np.clip(function(np.arange(256, dtype=np.float64) / 255.0) * 255.0, 0, 255)
    return (values + 0.5).astype(np.uint8) if dtype == np.uint8 else values.astype(dtype)


@lru_cache(maxsize=4)
def _grain_tile(shape: tuple[int, ...]) -> np.ndarray:
    """Fixed unit Gaussian noise twice the image size; crops of it at random offsets are cheap noise."""
    return np.random.default_rng(0).standard_normal((2 * shape[0], 2 * shape[1], *shape[2:]), dtype=np.float32)


def _grain(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    tile = _grain_tile(shape)
    top, left = rng.integers(0, shape[0], 2)
    return tile[top : top + shape[0], left : left + shape[1]]


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    colour = image.ndim == 3
    ok, encoded = cv2.imencode(".jpg", image[..., ::-1] if colour else image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    return np.ascontiguousarray(decoded[..., ::-1]) if colour else decoded


def misregistration(rng: np.random.Generator, size: int) -> np.ndarray:
    """Small random similarity transform about the image centre, 2x3, source pixels -> FFA pixels."""
    angle = np.radians(rng.normal(0.0, 1.5))
    scale = 1.0 + rng.normal(0.0, 0.015)
    shift = rng.normal(0.0, 0.015 * size, 2)
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.full(2, (size - 1) / 2.0)
    return np.hstack([linear, (centre - linear @ centre + shift)[:, None]]).astype(np.float32)
