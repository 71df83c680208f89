"""Source modalities composed from a rasterised frame: colour fundus photo, OCT en-face/OCTA, UWF SLO.

Each renderer returns float32 in [0, 1] before the camera's own effects (aperture, vignetting,
noise): grey (H, W) for ``oct``, planar RGB (3, H, W) for ``cfp`` and ``uwf_slo`` (numpy
arithmetic on planes is several times faster than on interleaved pixels).

* CFP: orange-red fundus, darker macula with a foveal reflex, yellow-white disc with a paler
  cup, vessels absorb mostly green and blue (best contrast in the green channel), veins darker
  and wider than arteries; red haemorrhages, yellow exudates and drusen, white cotton-wool spots.
* OCT en-face / OCTA: flow signal; vessels and the capillary mesh bright, dark FAZ and
  non-perfusion, shadows under blood, dark fluid cysts.
* UWF SLO (Optos): red (633 nm) and green (532 nm) lasers only; the red channel sees the choroid,
  the green one the retina (vessels and blood dark), so the image is orange-green, greener in
  the periphery.
"""

from __future__ import annotations

import cv2
import numpy as np

from .geometry import EyeGeometry
from .raster import Frame


def _blur(layer, sigma_px: float):
    if np.isscalar(layer) or sigma_px < 0.3:
        return layer
    return cv2.GaussianBlur(layer, (0, 0), sigma_px)


def _planar(colour) -> np.ndarray:
    return np.asarray(colour, np.float32)[:, None, None]


def _mix(rgb: np.ndarray, colour, alpha) -> np.ndarray:
    """Paint ``colour`` over planar ``rgb`` with per-pixel opacity ``alpha`` (a no-op when alpha is 0.0)."""
    if np.isscalar(alpha):
        return rgb
    return rgb * (1.0 - alpha) + _planar(colour) * alpha


def _absorb(rgb: np.ndarray, transmission, coverage) -> np.ndarray:
    """Darken by a coloured absorber (transmission per channel) covering ``coverage`` of each pixel."""
    if np.isscalar(coverage):
        return rgb
    return rgb * (1.0 - coverage * (1.0 - _planar(transmission)))


def choroid_pattern(frame: Frame) -> np.ndarray:
    """Ridges standing for large choroidal vessels (tessellated fundus, atrophy)."""
    return np.clip(1.0 - np.abs(frame.texture["mid"]) / 0.6, 0.0, 1.0)


def peripapillary_crescent(eye: EyeGeometry, frame: Frame) -> np.ndarray:
    """Pale crescent on the temporal edge of the disc (peripapillary atrophy)."""
    towards_fovea = (eye.fovea - eye.disc_centre) / np.linalg.norm(eye.fovea - eye.disc_centre)
    rd = frame.disc_distance
    cosine = ((frame.x - eye.disc_centre[0]) * towards_fovea[0] + (frame.y - eye.disc_centre[1]) * towards_fovea[1]) / (
        rd + 1e-6
    )
    band = (rd > 0.9 * eye.disc_radius) & (rd < (1.25 + 0.2 * eye.appearance.peripapillary_atrophy) * eye.disc_radius)
    return np.clip(cosine, 0.0, 1.0) ** 2 * band


def render_cfp(eye: EyeGeometry, frame: Frame) -> np.ndarray:
    """Colour fundus photo, planar RGB: pigmented fundus, macula, disc and cup, lesions, then the vessels on top."""
    look, texture, px = eye.appearance, frame.texture, frame.px_per_deg
    shade = 1.0 + 0.03 * texture["low"] + 0.02 * texture["mid"]
    rgb = _planar(look.fundus_rgb) * shade
    rgb = _absorb(rgb, (0.8, 0.6, 0.6), look.tessellation * 0.5 * (1.0 - choroid_pattern(frame)))
    rf = frame.fovea_distance
    macula = look.macular_pigment * (0.8 * np.exp(-((rf / 4.0) ** 2)) + 0.6 * np.exp(-((rf / 1.5) ** 2)))
    rgb = _absorb(rgb, (0.45, 0.1, 0.1), macula)
    rgb = rgb + 0.25 * np.exp(-((rf / 0.12) ** 2))

    disc_px = eye.disc_radius * px
    swelling = look.disc_swelling
    disc = _blur(frame.disc, (0.08 + 0.3 * swelling) * disc_px)
    rgb = _mix(rgb, (1.0, 0.75 - 0.2 * swelling, 0.45 - 0.15 * swelling), 0.9 * disc)
    rgb = _mix(rgb, (1.0, 0.92, 0.72), 0.85 * _blur(frame.cup, 0.15 * disc_px) * (1.0 - 0.6 * swelling))
    if look.peripapillary_atrophy:
        crescent = _blur(peripapillary_crescent(eye, frame).astype(np.float32), 0.05 * disc_px)
        rgb = _mix(rgb, (0.92, 0.72, 0.55), 0.7 * look.peripapillary_atrophy * crescent)

    atrophy = frame.blurred("geographic_atrophy", 0.1)
    if not np.isscalar(atrophy):
        pale = _planar((0.95, 0.62, 0.42)) * (0.8 + 0.2 * choroid_pattern(frame))
        rgb = rgb * (1 - 0.85 * atrophy) + pale * (0.85 * atrophy)
    rgb = _mix(rgb, (0.98, 0.85, 0.5), 0.75 * frame.blurred("drusen", 0.05))
    rgb = _mix(rgb, (0.42, 0.48, 0.35), 0.55 * frame.blurred("cnv", 0.2))
    rgb = _mix(rgb, (1.0, 0.85, 0.6), 0.12 * frame.blurred("macular_oedema", 0.3))
    rgb = _mix(rgb, (1.0, 0.93, 0.55), 0.9 * frame.lesion("hard_exudate"))
    rgb = _mix(rgb, (0.95, 0.92, 0.85), 0.6 * frame.blurred("cotton_wool_spot", 0.25))

    rgb = _absorb(rgb, (0.9, 0.62, 0.68), frame.artery)
    rgb = _absorb(rgb, (0.72, 0.42, 0.5), frame.vein)
    rgb = _absorb(rgb, (0.9, 0.8, 0.85), frame.vein_occluded if frame.vein_occluded is not None else 0.0)
    rgb = _absorb(rgb, (0.75, 0.4, 0.45), frame.new_vessels if frame.new_vessels is not None else 0.0)
    for name in ("haemorrhage", "disc_haemorrhage", "microaneurysm"):
        rgb = _mix(rgb, (0.55, 0.1, 0.07), 0.85 * frame.blurred(name, 0.03))
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def render_oct(eye: EyeGeometry, frame: Frame) -> np.ndarray:
    """OCT en-face / OCTA of the superficial plexus, grey: flow is bright, the FAZ and non-perfusion are dark."""
    texture = frame.texture
    perfused = frame.perfused(eye.faz_radius)
    grey = 0.1 + 0.025 * texture["low"] + 0.32 * texture["mesh"] * perfused + 0.15 * frame.disc
    vessels = np.maximum(frame.artery, frame.vein)
    if frame.new_vessels is not None:
        vessels = np.maximum(vessels, frame.new_vessels)
    grey = grey * (1.0 - vessels) + 0.9 * vessels
    grey = grey + 0.5 * frame.lesion("microaneurysm") + 0.5 * frame.lesion("cnv") * (0.4 + texture["mesh"])
    grey = grey + 0.2 * frame.lesion("geographic_atrophy") + 0.15 * frame.lesion("hard_exudate")
    shadow = (
        0.6 * frame.lesion("haemorrhage")
        + 0.6 * frame.lesion("disc_haemorrhage")
        + 0.4 * frame.lesion("cotton_wool_spot")
        + 0.6 * frame.lesion("macular_oedema")
    )
    grey = grey * (1.0 - np.clip(shadow, 0.0, 0.9))
    return np.clip(grey, 0.0, 1.0).astype(np.float32)


def render_slo(eye: EyeGeometry, frame: Frame) -> np.ndarray:
    """Optos pseudo-colour, planar RGB: red laser sees the choroid, green the retina; no blue."""
    look, texture, rf = eye.appearance, frame.texture, frame.fovea_distance
    periphery = np.clip((rf - 15.0) / 75.0, 0.0, 1.0)
    grain = 1.0 + 0.04 * texture["low"] + 0.04 * texture["mid"]
    # Broad patches where the choroid shows red through a thinner pigment layer, green elsewhere.
    patches = texture["broad"]
    red = (0.65 + 0.2 * (1 - look.pigment)) * grain * (1.0 - 0.55 * periphery) * (1.0 + 0.18 * patches)
    red = red * (1.0 - 0.3 * look.tessellation * (1.0 - choroid_pattern(frame)))
    green = 0.5 * grain * (1.0 - 0.1 * periphery) * (1.0 - 0.08 * patches)
    macula = look.macular_pigment * np.exp(-((rf / 3.0) ** 2))
    green, red = green * (1.0 - 0.5 * macula), red * (1.0 - 0.15 * macula)
    red, green = red + 0.35 * frame.disc + 0.1 * frame.cup, green + 0.3 * frame.disc + 0.15 * frame.cup

    bright = frame.lesion("hard_exudate") + 0.7 * frame.lesion("drusen") + 0.6 * frame.lesion("cotton_wool_spot")
    red, green = red + 0.12 * bright + 0.15 * frame.lesion("geographic_atrophy"), green + 0.3 * bright
    blood = frame.lesion("haemorrhage") + frame.lesion("disc_haemorrhage") + frame.lesion("microaneurysm")
    new_vessels = frame.new_vessels if frame.new_vessels is not None else 0.0
    blood = np.clip(blood, 0.0, 1.0)
    green = green * (1.0 - 0.45 * frame.artery - 0.6 * frame.vein - 0.5 * new_vessels) * (1.0 - 0.7 * blood)
    red = red * (1.0 - 0.12 * frame.artery - 0.22 * frame.vein) * (1.0 - 0.35 * blood)
    return np.clip(np.stack([red, green, 0.06 * green]), 0.0, 1.0).astype(np.float32)
