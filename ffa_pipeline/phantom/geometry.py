"""One eye as a seeded geometry in retina coordinates, shared by every modality's camera.

Retina coordinates are degrees of visual angle from the fovea (1 deg ~ 0.29 mm), x to the
right and y down as seen in a fundus photo. A right eye (OD) has its disc to the right of the
fovea, a left eye (OS) to the left. The geometry is grown in a canonical right-eye frame
(disc on +x) and then tilted (disc slightly above the fovea) and mirrored for OS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..vocab import DISEASES
from .lesions import DISEASE_LESIONS, LESION_TYPES, Anatomy, Pathology
from .vessels import VesselTree, grow_trees

PHANTOM_DISEASES: tuple[str, ...] = tuple(name for name in DISEASES if name in DISEASE_LESIONS)
NON_PERFUSION_CELL_DEG = 0.5


@dataclass
class Appearance:
    """Per-eye look and physiology that is not geometry: pigment, colours, dye timing."""

    fundus_rgb: np.ndarray  # base colour of the fundus, linear [0, 1]
    pigment: float  # 0 blond, 1 dark fundus
    tessellation: float  # visibility of choroidal vessels
    macular_pigment: float  # darkening of the macula in CFP and FFA
    arm_retina_seconds: float  # dye arrival: start of the choroidal flush
    laminar_seconds: float  # from first venous wall filling to full veins
    occlusion_delay_seconds: float  # extra delay of the veins downstream of an occlusion
    disc_swelling: float  # blurred, hyperaemic disc in central vein occlusion
    peripapillary_atrophy: float  # pale crescent temporal to the disc


@dataclass
class EyeGeometry:
    """Everything needed to render one eye in any modality; degrees in retina coordinates."""

    seed: int
    disease: str
    severity: float
    laterality: str  # "OD" or "OS"
    disc_centre: np.ndarray  # (2,)
    disc_outline: np.ndarray  # (K, 2) polygon
    cup_outline: np.ndarray  # (K, 2) polygon
    cup_disc_ratio: float  # vertical cup diameter / vertical disc diameter
    faz_radius: float
    vessels: VesselTree
    new_vessels: list[np.ndarray]
    lesions: dict[str, list[np.ndarray]]
    appearance: Appearance
    fovea: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))

    @property
    def disc_radius(self) -> float:
        return float(np.abs(self.disc_outline[:, 1] - self.disc_centre[1]).max())


def sample_eye(seed: int, disease: str, severity: float | None = None) -> EyeGeometry:
    """Draw one eye: anatomy, artery and vein trees, and the lesions of ``disease`` at ``severity``.

    ``severity`` in [0, 1] scales lesion counts and sizes; ``None`` draws it from the seed
    (``normal`` eyes always get 0). The same arguments always give the same eye.
    """
    if disease not in PHANTOM_DISEASES:
        raise ValueError(f"Unknown phantom disease {disease!r}; allowed: {list(PHANTOM_DISEASES)}")
    if severity is not None and not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1] or None, got {severity!r}")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    drawn_severity = rng.uniform(0.2, 1.0)
    severity = 0.0 if disease == "normal" else float(drawn_severity if severity is None else severity)

    disc_distance = rng.normal(15.5, 0.8)
    disc_radius = rng.normal(3.0, 0.25)
    anatomy = Anatomy(disc_x=disc_distance, disc_radius=disc_radius, faz_radius=rng.uniform(0.7, 1.0))
    tree = grow_trees(rng, anatomy.disc_x, anatomy.faz_radius)
    pathology = DISEASE_LESIONS[disease](rng, tree, anatomy, severity)
    tree = _prune_non_perfused(tree, pathology.lesions["non_perfusion"])

    disc_outline, cup_outline = _disc_and_cup(rng, anatomy, pathology)
    cup_disc_ratio = float(np.ptp(cup_outline[:, 1]) / np.ptp(disc_outline[:, 1]))
    appearance = _appearance(rng, pathology)

    laterality = "OD" if rng.random() < 0.5 else "OS"
    tilt = np.radians(rng.normal(-6.5, 2.5))
    rotation = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    if laterality == "OS":
        rotation = np.diag([-1.0, 1.0]) @ rotation

    def place(points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, np.float64) @ rotation.T).astype(np.float32)

    tree.points = place(tree.points)
    return EyeGeometry(
        seed=int(seed),
        disease=disease,
        severity=severity,
        laterality=laterality,
        disc_centre=place(np.array([[anatomy.disc_x, 0.0]]))[0],
        disc_outline=place(disc_outline),
        cup_outline=place(cup_outline),
        cup_disc_ratio=cup_disc_ratio,
        faz_radius=anatomy.faz_radius,
        vessels=tree,
        new_vessels=[place(v) for v in pathology.new_vessels],
        lesions={name: [place(shape) for shape in pathology.lesions[name]] for name in LESION_TYPES},
        appearance=appearance,
    )


def _disc_and_cup(rng: np.random.Generator, anatomy: Anatomy, pathology: Pathology) -> tuple[np.ndarray, np.ndarray]:
    """Vertically oval disc; cup inside it, with a rim notch pulled towards the disc edge in glaucoma."""
    angle = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
    centre = np.array([anatomy.disc_x, 0.0])
    half_width, half_height = anatomy.disc_radius * rng.uniform(0.88, 0.97), anatomy.disc_radius
    disc = centre + np.stack([half_width * np.cos(angle), half_height * np.sin(angle)], axis=1)
    ratio = pathology.cup_disc_ratio if pathology.cup_disc_ratio is not None else rng.uniform(0.15, 0.45)
    cup_radius = np.full_like(angle, ratio)
    if pathology.notch_angle is not None:
        gap = np.angle(np.exp(1j * (angle - pathology.notch_angle)))
        cup_radius += (0.95 - ratio) * np.exp(-((gap / 0.35) ** 2))
    cup_centre = centre + np.array([-0.08 * anatomy.disc_radius, 0.0])
    cup = cup_centre + np.stack(
        [cup_radius * half_width * 0.95 * np.cos(angle), cup_radius * half_height * np.sin(angle)], axis=1
    )
    return disc.astype(np.float32), cup.astype(np.float32)


def _appearance(rng: np.random.Generator, pathology: Pathology) -> Appearance:
    pigment = rng.beta(2.0, 2.0)
    fundus_rgb = np.array([0.95 - 0.2 * pigment, 0.45 - 0.18 * pigment, 0.28 - 0.12 * pigment])
    fundus_rgb *= rng.uniform(0.92, 1.08, 3)
    return Appearance(
        fundus_rgb=fundus_rgb.astype(np.float32),
        pigment=float(pigment),
        tessellation=float(rng.beta(1.2, 4.0)),
        macular_pigment=float(rng.uniform(0.3, 0.7)),
        arm_retina_seconds=float(rng.uniform(8.5, 12.5)),
        laminar_seconds=float(rng.uniform(6.0, 10.0)),
        occlusion_delay_seconds=pathology.occlusion_delay_seconds,
        disc_swelling=pathology.disc_swelling,
        peripapillary_atrophy=float(rng.random() < 0.3) * rng.uniform(0.3, 1.0),
    )


def _prune_non_perfused(tree: VesselTree, areas: list[np.ndarray]) -> VesselTree:
    """Remove the small vessels inside non-perfusion areas: they are what is missing there."""
    if not areas:
        return tree
    size = int(2 * 110 / NON_PERFUSION_CELL_DEG)
    grid = np.zeros((size, size), np.uint8)

    def to_cell(points: np.ndarray) -> np.ndarray:
        return np.round((points + 110.0) / NON_PERFUSION_CELL_DEG).astype(np.int32)

    for area in areas:
        cv2.fillPoly(grid, [to_cell(area)], 1)
    cell = np.clip(to_cell(tree.points), 0, size - 1)
    inside = grid[cell[:, 1], cell[:, 0]].astype(bool)
    return tree.subset(~(inside & (tree.radius < 0.07)))
