"""Lesions per disease, drawn as polygons in the canonical right-eye frame (fovea at 0, disc on +x).

Each ``add_<disease>`` function adds shapes to ``lesions[type]`` and may change the vessels
(vein occlusion dilates and twists the veins downstream of the block). Counts and sizes
grow with severity in [0, 1]. Sizes are degrees (1 deg ~ 0.29 mm of retina).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .vessels import VEIN, VesselTree, guidance

LESION_TYPES: tuple[str, ...] = (
    "microaneurysm",
    "haemorrhage",
    "hard_exudate",
    "cotton_wool_spot",
    "non_perfusion",
    "neovascularisation",
    "macular_oedema",
    "drusen",
    "geographic_atrophy",
    "cnv",
    "disc_haemorrhage",
)


@dataclass(frozen=True)
class Anatomy:
    """Healthy landmarks the lesions are placed around (canonical frame, degrees)."""

    disc_x: float
    disc_radius: float
    faz_radius: float


@dataclass
class Pathology:
    """What a disease adds to a healthy eye (canonical frame)."""

    lesions: dict[str, list[np.ndarray]] = field(default_factory=lambda: {name: [] for name in LESION_TYPES})
    new_vessels: list[np.ndarray] = field(default_factory=list)
    occlusion_delay_seconds: float = 0.0
    disc_swelling: float = 0.0
    cup_disc_ratio: float | None = None
    notch_angle: float | None = None


@lru_cache(maxsize=8)
def _circle(vertices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Angles of ``vertices`` points around a circle, with their cosines and sines."""
    angle = np.linspace(0.0, 2 * np.pi, vertices, endpoint=False)
    return angle, np.cos(angle), np.sin(angle)


def blob(rng: np.random.Generator, centre, radius: float, irregularity: float = 0.25, vertices: int = 20) -> np.ndarray:
    """Irregular closed outline: a circle whose radius wobbles with a few random harmonics."""
    angle, cos, sin = _circle(vertices)
    amplitude, phase = rng.uniform(-1, 1, 3), rng.uniform(0, 2 * np.pi, 3)
    wobble = 1.0 + sum(
        irregularity / harmonic**0.5 * a * np.cos(harmonic * angle + p)
        for harmonic, a, p in zip((2, 3, 5), amplitude, phase)
    )
    r = radius * np.maximum(wobble, 0.3)
    return (np.asarray(centre) + np.stack([r * cos, r * sin], axis=1)).astype(np.float32)


def ellipse(centre, half_length: float, half_width: float, direction, vertices: int = 14) -> np.ndarray:
    """Ellipse outline with its long axis along ``direction``."""
    _, cos, sin = _circle(vertices)
    u = np.asarray(direction, float) / (np.linalg.norm(direction) + 1e-9)
    v = np.array([-u[1], u[0]])
    points = np.outer(half_length * cos, u) + np.outer(half_width * sin, v)
    return (np.asarray(centre) + points).astype(np.float32)


def _polar(rng: np.random.Generator, count: int, radius: np.ndarray, centre=(0.0, 0.0)) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi, count)
    return np.asarray(centre) + np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def _dots(rng: np.random.Generator, centres: np.ndarray, low: float, high: float, irregularity: float = 0.15):
    return [blob(rng, c, rng.uniform(low, high), irregularity, vertices=10) for c in centres]


def _flames(rng: np.random.Generator, centres: np.ndarray, disc_x: float, length: tuple[float, float]):
    """Flame haemorrhages: thin ellipses along the nerve-fibre direction (the arcade flow)."""
    directions = guidance(np.asarray(centres, float).reshape(-1, 2), disc_x, 2.8)
    shapes = []
    for centre, direction in zip(centres, directions):
        half = rng.uniform(*length) / 2
        shapes.append(ellipse(centre, half, half * rng.uniform(0.2, 0.35), direction))
    return shapes


def _outside_faz(points: np.ndarray, faz_radius: float) -> np.ndarray:
    return points[np.hypot(points[:, 0], points[:, 1]) > faz_radius + 0.6]


def _tangle(rng: np.random.Generator, centre, radius: float, count: int) -> list[np.ndarray]:
    """Neovascular tuft: short wiggly loops that stay inside a disc around ``centre``."""
    vessels = []
    for _ in range(count):
        heading = rng.uniform(0, 2 * np.pi)
        turn = np.cumsum(rng.normal(0.0, 0.6, 24))
        steps = 0.12 * radius * np.stack([np.cos(heading + turn), np.sin(heading + turn)], axis=1)
        path = np.cumsum(steps, axis=0)
        path *= radius / max(radius, np.abs(path).max())
        vessels.append((np.asarray(centre) + path).astype(np.float32))
    return vessels


def add_normal(rng: np.random.Generator, tree: VesselTree, anatomy: Anatomy, severity: float) -> Pathology:
    """A healthy eye has nothing to add."""
    return Pathology()


def add_diabetic_retinopathy(
    rng: np.random.Generator, tree: VesselTree, anatomy: Anatomy, severity: float
) -> Pathology:
    """Microaneurysms, haemorrhages, exudates; cotton-wool spots, non-perfusion, oedema, new vessels as it worsens."""
    out = Pathology()
    s, disc_x, faz = severity, anatomy.disc_x, anatomy.faz_radius
    count, far = rng.poisson(4 + 50 * s), rng.poisson(20 * s)
    posterior = _polar(rng, count, 1.5 + np.abs(rng.normal(0, 9, count)))
    peripheral = _polar(rng, far, rng.uniform(15, 70, far))
    out.lesions["microaneurysm"] = _dots(rng, _outside_faz(np.concatenate([posterior, peripheral]), faz), 0.07, 0.16)

    count = rng.poisson(30 * s**1.5)
    centres = _outside_faz(_polar(rng, count, 3 + np.abs(rng.normal(0, 25 * s + 5, count))), faz)
    flame = rng.random(len(centres)) < 0.35
    out.lesions["haemorrhage"] = _dots(rng, centres[~flame], 0.2, 0.3 + 0.6 * s, 0.3) + _flames(
        rng, centres[flame], disc_x, (0.6, 1.6)
    )

    if s > 0.3:
        for _ in range(1 + rng.poisson(2 * s)):
            # A circinate cluster: a partial, ragged ring of yellow dots around a leaking spot.
            centre = _polar(rng, 1, np.array([rng.uniform(2.0, 9.0)]))[0]
            count, ring = rng.integers(6, 10 + int(30 * s)), rng.uniform(0.6, 2.2)
            start = rng.uniform(0, 2 * np.pi)
            angle = start + rng.uniform(0, rng.uniform(np.pi, 2 * np.pi), count)
            reach = np.abs(rng.normal(ring, 0.35 * ring, count))
            dots = centre + np.stack([reach * np.cos(angle), reach * np.sin(angle)], axis=1)
            out.lesions["hard_exudate"] += _dots(rng, _outside_faz(dots, faz), 0.05, 0.1 + 0.15 * s, 0.4)

    if s > 0.4:
        count = rng.poisson(1 + 5 * s)
        centres = _polar(rng, count, rng.uniform(4.0, 18.0, count), centre=(disc_x, 0.0))
        out.lesions["cotton_wool_spot"] = [blob(rng, c, rng.uniform(0.4, 0.9), 0.35) for c in _outside_faz(centres, 2)]

    if s > 0.5:
        count = 1 + rng.poisson(4 * (s - 0.5))
        centres = _polar(rng, count, rng.uniform(12.0, 55.0, count))
        out.lesions["non_perfusion"] = [blob(rng, c, rng.uniform(3.0, 6.0 + 8.0 * s), 0.35) for c in centres]

    if s > 0.45 and rng.random() < 0.7:
        petals = rng.integers(8, 13)
        angle = np.linspace(0, 2 * np.pi, petals, endpoint=False) + rng.uniform(0, 1)
        reach = rng.uniform(1.2, 1.6) + faz
        for a in angle:
            direction = np.array([np.cos(a), np.sin(a)])
            out.lesions["macular_oedema"].append(ellipse(reach * direction, rng.uniform(0.5, 0.8), 0.3, direction))

    if s > 0.7:
        if rng.random() < 0.4 or not out.lesions["non_perfusion"]:
            centre = np.array([disc_x, 0.0]) + rng.normal(0.0, 1.0, 2)
        else:
            area = out.lesions["non_perfusion"][0]
            centre = area[rng.integers(len(area))]
        radius = rng.uniform(1.2, 2.5)
        out.lesions["neovascularisation"].append(blob(rng, centre, radius, 0.2))
        out.new_vessels += _tangle(rng, centre, radius * 0.9, rng.integers(5, 10))
    return out


def add_amd(rng: np.random.Generator, tree: VesselTree, anatomy: Anatomy, severity: float) -> Pathology:
    """Drusen around the fovea; advanced eyes get geographic atrophy (dry) or CNV with blood (wet)."""
    out = Pathology()
    s = severity
    count = rng.poisson(15 + 80 * s)
    centres = _polar(rng, count, np.abs(rng.normal(0.0, 3.0 + 4.0 * s, count)))
    out.lesions["drusen"] = [blob(rng, c, 0.08 + 0.3 * s * rng.random(), 0.15, vertices=10) for c in centres]
    if s > 0.55 and rng.random() < 0.5:
        centre = _polar(rng, 1, np.array([rng.uniform(0.0, 2.5)]))[0]
        radius = rng.uniform(1.0, 2.5) * (0.5 + s)
        out.lesions["cnv"].append(blob(rng, centre, radius, 0.3))
        rim = _polar(rng, rng.integers(1, 4), np.array([radius * rng.uniform(0.8, 1.2)]), centre)
        out.lesions["haemorrhage"] += [blob(rng, c, rng.uniform(0.5, 1.5), 0.35) for c in rim]
    elif s > 0.55:
        for _ in range(rng.integers(1, 4)):
            centre = _polar(rng, 1, np.array([rng.uniform(0.5, 4.0)]))[0]
            out.lesions["geographic_atrophy"].append(blob(rng, centre, rng.uniform(1.2, 2.0 + 2.5 * s), 0.4))
    return out


def add_vein_occlusion(rng: np.random.Generator, tree: VesselTree, anatomy: Anatomy, severity: float) -> Pathology:
    """Branch (one temporal quadrant) or central (all quadrants) retinal vein occlusion."""
    out = Pathology()
    s, disc_x, faz = severity, anatomy.disc_x, anatomy.faz_radius
    central = rng.random() < 0.25 + 0.2 * s
    relative = tree.points - np.array([disc_x, 0.0])
    distance = np.hypot(relative[:, 0], relative[:, 1])
    if central:
        territory = distance > rng.uniform(0.5, 1.5)
        out.disc_swelling = 0.4 + 0.6 * s
    else:
        side = rng.choice([-1.0, 1.0])
        angle = np.degrees(np.arctan2(relative[:, 1] * side, -relative[:, 0]))
        start = rng.uniform(-5.0, 25.0)
        territory = (angle > start) & (angle < start + rng.uniform(55.0, 85.0)) & (distance > rng.uniform(2.0, 6.0))
    occluded = territory & (tree.kind == VEIN)
    tree.occluded[:] = occluded
    tree.radius[occluded] *= 1.2 + 0.5 * s
    _twist(rng, tree, occluded, strength=0.4 + 0.8 * s)
    out.occlusion_delay_seconds = 5.0 + 20.0 * s

    veins = tree.points[occluded]
    if not len(veins):
        return out
    count = rng.poisson((150 if central else 40) * (0.3 + s))
    centres = veins[rng.integers(len(veins), size=count)] + rng.normal(0.0, 1.2, (count, 2))
    centres = _outside_faz(centres, faz)
    flame = rng.random(len(centres)) < 0.75
    out.lesions["haemorrhage"] = _flames(rng, centres[flame], disc_x, (0.7, 2.2)) + _dots(
        rng, centres[~flame], 0.25, 0.8, 0.3
    )
    count = rng.poisson(1 + 4 * s)
    near = veins[np.hypot(*(veins - [disc_x, 0.0]).T) < 20.0]
    if len(near):
        centres = _outside_faz(near[rng.integers(len(near), size=count)] + rng.normal(0, 1.5, (count, 2)), faz)
        out.lesions["cotton_wool_spot"] = [blob(rng, c, rng.uniform(0.4, 0.9), 0.35) for c in centres]
    if s > 0.45:
        far = veins[np.hypot(*(veins - [disc_x, 0.0]).T) > 12.0]
        if len(far):
            for c in far[rng.integers(len(far), size=rng.integers(1, 4))]:
                out.lesions["non_perfusion"].append(blob(rng, c, rng.uniform(3.0, 5.0 + 6.0 * s), 0.35))
    if s > 0.5 and rng.random() < 0.6:
        for a in np.linspace(0, 2 * np.pi, rng.integers(8, 12), endpoint=False):
            direction = np.array([np.cos(a), np.sin(a)])
            out.lesions["macular_oedema"].append(ellipse((faz + 1.3) * direction, 0.7, 0.35, direction))
    return out


def _twist(rng: np.random.Generator, tree: VesselTree, selected: np.ndarray, strength: float) -> None:
    """Make the selected vessels tortuous: a sideways wave ``strength`` vessel widths high, ~12 widths long."""
    arc = tree.arc_length()
    branches = tree.branch.max() + 1
    counts = np.maximum(np.bincount(tree.branch, minlength=branches), 1)
    diameter = 2 * np.bincount(tree.branch, tree.radius, minlength=branches) / counts
    wavelength = rng.uniform(10.0, 14.0, branches) * diameter
    phase = arc / wavelength[tree.branch] * 2 * np.pi + rng.uniform(0, 2 * np.pi, branches)[tree.branch]
    swell = 0.6 + 0.4 * np.sin(phase / 4.3 + rng.uniform(0, 2 * np.pi, branches)[tree.branch])
    tangent = np.gradient(tree.points, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    shift = strength * 2 * tree.radius * np.sin(phase) * swell * selected
    tree.points += (normal * shift[:, None]).astype(np.float32)


def add_glaucoma(rng: np.random.Generator, tree: VesselTree, anatomy: Anatomy, severity: float) -> Pathology:
    """Large cup, often a rim notch at a pole, sometimes a splinter haemorrhage on the disc margin."""
    out = Pathology()
    s, disc_x = severity, anatomy.disc_x
    out.cup_disc_ratio = float(np.clip(0.55 + 0.35 * s + rng.normal(0, 0.03), 0.5, 0.92))
    pole = rng.choice([-90.0, 90.0])
    if rng.random() < 0.5 + 0.4 * s:
        out.notch_angle = float(np.radians(pole + rng.normal(0, 15)))
    if rng.random() < 0.3 + 0.4 * s:
        a = np.radians(pole + rng.normal(0, 20))
        direction = np.array([np.cos(a), np.sin(a)])
        centre = np.array([disc_x, 0.0]) + anatomy.disc_radius * direction
        half_length, half_width = rng.uniform(0.4, 0.8), rng.uniform(0.1, 0.18)
        out.lesions["disc_haemorrhage"].append(ellipse(centre, half_length, half_width, direction))
    return out


DISEASE_LESIONS: dict[str, Callable[..., Pathology]] = {
    "normal": add_normal,
    "diabetic_retinopathy": add_diabetic_retinopathy,
    "amd": add_amd,
    "vein_occlusion": add_vein_occlusion,
    "glaucoma": add_glaucoma,
}
