"""Fluorescein angiogram at a continuous time after injection, in any camera's frame.

Dye arrives at the arm-retina time t0 (~10 s): the choroid flushes in patches, arteries fill
~1.5 s later, veins fill first along their walls (laminar flow) and then in the centre
(~25-30 s). Dye in the blood then falls with recirculation to about half its peak by ~10 min:
the real late angiograms of ../shared keep ~0.9 of their early vessel contrast
(experiments/phantom_realism.py). What holds dye outside the vessels grows brighter: leakage
(grows and spreads), staining (fixed shape) and pooling (fills a space). Blood, exudate and
cotton-wool spots block fluorescence; atrophy lets the choroid show through (window defect);
non-perfused retina has no capillary glow.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import Appearance, EyeGeometry
from .raster import Frame

LEAK_SOURCES = {"microaneurysm": 0.4, "neovascularisation": 1.0, "cnv": 1.0, "macular_oedema": 1.5}
BLOCKERS = {"haemorrhage": 0.92, "disc_haemorrhage": 0.92, "cotton_wool_spot": 0.55, "hard_exudate": 0.3}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class DyeCurves:
    """Dye level of each compartment at one time, in [0, 1]."""

    seconds_since_arrival: float
    choroid: float
    artery: float
    vein_wall: float
    vein_core: float
    blood: float
    leak: float
    stain: float
    spread_deg: float


def dye_curves(seconds: float, appearance: Appearance, delay: float = 0.0) -> DyeCurves:
    """Compartment curves at ``seconds`` after injection; ``delay`` postpones venous filling (occlusion)."""
    t = seconds - appearance.arm_retina_seconds
    elapsed = max(t, 0.0)
    venous = t - 4.0 - delay
    return DyeCurves(
        seconds_since_arrival=t,
        choroid=float(_sigmoid(t / 0.8) * (0.85 + 0.15 * np.exp(-elapsed / 45.0))),
        artery=float(_sigmoid((t - 1.5) / 0.5)),
        vein_wall=float(_sigmoid(venous / 1.0)),
        vein_core=float(_sigmoid((venous - appearance.laminar_seconds) / 2.0)),
        blood=float(_sigmoid(t / 0.8) * (0.5 + 0.5 * np.exp(-elapsed / 120.0))),
        leak=float(1.0 - np.exp(-elapsed / 150.0)),
        stain=float(1.0 - np.exp(-elapsed / 300.0)),
        spread_deg=float(0.1 + 0.065 * np.sqrt(elapsed)),
    )


@dataclass
class FluorescenceMaps:
    """Time-independent maps of one frame; an angiogram at time t is a weighted sum of them."""

    seen: np.ndarray | float  # fraction not hidden by blood, exudate or cotton-wool spots in front
    choroid: np.ndarray  # background glow, already dimmed by macular pigment, blockers, non-perfusion
    capillaries: np.ndarray
    window: np.ndarray | float  # atrophy shows the choroid through
    drusen: np.ndarray | float
    disc_glow: np.ndarray
    disc_stain: np.ndarray
    keep: np.ndarray  # fraction of the background seen between vessels
    vein_wall: np.ndarray
    vein_core: np.ndarray
    vein_wall_occluded: np.ndarray | float
    vein_core_occluded: np.ndarray | float
    artery: np.ndarray
    bright_early: np.ndarray | float  # filling lesions: microaneurysms, CNV
    leak_sources: np.ndarray | float
    stain: np.ndarray | float
    pool: np.ndarray | float


def _present(layer) -> bool:
    return not np.isscalar(layer) or layer != 0


def _weighted_sum(terms) -> np.ndarray | float:
    """Sum of weight * layer over the terms that exist (0.0 when none do: cheap to compose)."""
    present = [weight * layer for weight, layer in terms if weight and _present(layer)]
    return sum(present[1:], present[0]) if present else 0.0


def fluorescence_maps(eye: EyeGeometry, frame: Frame) -> FluorescenceMaps:
    """The per-frame maps of ``render_ffa``; computed once per frame and shared by all phases."""
    look, texture, rf = eye.appearance, frame.texture, frame.fovea_distance
    block = _weighted_sum((s, np.minimum(2.0 * frame.blurred(n, 0.05), 1.0)) for n, s in BLOCKERS.items())
    seen = 1.0 - np.minimum(block, 0.97)
    non_perfused = frame.lesion("non_perfusion")
    # Xanthophyll and the denser RPE of the macula block the choroidal flush: a real angiogram's macula is
    # about half as bright as the fundus around it, over about a disc diameter (the real angiograms of ../shared:
    # 0.37 of the field at the fovea of normal eyes, 0.49-0.57 over all, by experiments/phantom_realism.py).
    macula = 1.0 - (0.7 + 0.25 * look.macular_pigment) * np.exp(-((rf / 8.0) ** 2))
    periphery = 1.0 - 0.75 * np.clip((rf - 20.0) / 70.0, 0.0, 1.0)
    choroid = (0.17 + 0.012 * texture["low"] + 0.025 * texture["mid"]) * macula * periphery
    choroid *= 1.0 - 0.45 * non_perfused

    occluded = frame.vein_occluded if frame.vein_occluded is not None else 0.0
    new_vessels = frame.new_vessels if frame.new_vessels is not None else 0.0
    in_front = (1.0 - frame.artery) * (1.0 - new_vessels)
    vein_core = np.minimum(frame.vein_core, frame.vein)
    vein_wall = (frame.vein - vein_core) * in_front
    vein_core = vein_core * in_front
    leaks = [(strength, frame.lesion(name)) for name, strength in LEAK_SOURCES.items()]
    bright_early = _weighted_sum(
        [(0.8, frame.lesion("microaneurysm")), (0.5, frame.lesion("cnv") * (0.4 + texture["mesh"]))]
    )
    return FluorescenceMaps(
        seen=seen,
        choroid=choroid * seen,
        capillaries=0.12 * (0.5 + texture["mesh"]) * frame.perfused(eye.faz_radius) * seen,
        window=frame.blurred("geographic_atrophy", 0.3) * seen,
        drusen=frame.blurred("drusen", 0.05) * seen,
        disc_glow=(frame.disc - 0.6 * frame.cup) * seen,
        disc_stain=frame.blurred("disc", 0.4) * seen,
        keep=(1.0 - frame.vein) * in_front,
        vein_wall=vein_wall,
        vein_core=vein_core,
        vein_wall_occluded=vein_wall * occluded,
        vein_core_occluded=vein_core * occluded,
        artery=frame.artery * (1.0 - new_vessels) + new_vessels,
        bright_early=bright_early * seen,
        leak_sources=_weighted_sum(leaks + [(0.1, occluded), (0.5 * look.disc_swelling, frame.disc)]),
        stain=0.2 * occluded,
        pool=0.7 * frame.blurred("macular_oedema", 0.3),
    )


def render_ffa(eye: EyeGeometry, frame: Frame, seconds: float) -> np.ndarray:
    """Fluorescence (float32, about [0, 1]) at ``seconds`` after injection, before the camera's response."""
    maps: FluorescenceMaps = frame.memo("fluorescence", lambda: fluorescence_maps(eye, frame))
    look = eye.appearance
    dye = dye_curves(seconds, look)
    delayed = dye_curves(seconds, look, look.occlusion_delay_seconds)
    filled = dye.artery * dye.blood

    choroid = maps.choroid * dye.choroid
    if dye.seconds_since_arrival < 6.0:
        choroid = choroid * _sigmoid((dye.seconds_since_arrival - 0.8 - 0.9 * frame.texture["low"]) / 0.6)
    light = choroid + filled * maps.capillaries + 0.45 * filled * maps.disc_glow
    light = light + (0.5 * dye.choroid + 0.25 * dye.stain) * maps.window
    light = light + (0.3 * dye.choroid + 0.3 * dye.stain) * maps.drusen
    light = light * maps.keep + dye.blood * (
        dye.vein_wall * maps.vein_wall
        + dye.vein_core * maps.vein_core
        + (delayed.vein_wall - dye.vein_wall) * maps.vein_wall_occluded
        + (delayed.vein_core - dye.vein_core) * maps.vein_core_occluded
        + dye.artery * maps.artery
    )
    light = light + filled * maps.bright_early
    if not np.isscalar(maps.leak_sources):
        spread = cv2.GaussianBlur(maps.leak_sources, (0, 0), max(dye.spread_deg * frame.px_per_deg, 0.3))
        light = light + dye.leak * np.clip(2.0 * spread, 0.0, 1.2) * maps.seen
    # The stained disc tissue glows around and over its vessels, so it is added after them.
    light = light + dye.stain * (maps.stain + 0.2 * maps.disc_stain) + dye.leak * maps.pool
    return np.asarray(light, np.float32)
