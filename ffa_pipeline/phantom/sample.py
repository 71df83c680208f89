"""Render one eye in every requested modality, each with its angiograms in the same frame and its labels."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..vocab import MODALITIES, PHASE_SECONDS_RANGE, PHASES, phase_to_seconds
from .camera import fundus_camera, uwf_camera
from .ffa import render_ffa
from .geometry import EyeGeometry
from .imaging import Acquisition, expose, fundus_aperture, misregistration, uwf_view
from .lesions import LESION_TYPES
from .modalities import render_cfp, render_oct, render_slo
from .raster import Frame, rasterise

MIN_RESOLUTION = 64
SOURCE_RENDERERS = {"cfp": render_cfp, "oct": render_oct, "uwf_slo": render_slo}
VIEW_OF = {"cfp": "fundus", "oct": "fundus", "uwf_slo": "uwf"}  # cfp and oct share the fundus camera
PHASE_JITTER = 0.15  # log-normal spread of the time at which a named phase is photographed

# Independent random streams per eye, so a modality renders the same whichever others are asked for.
STREAM_CAMERAS, STREAM_TEXTURE, STREAM_ACQUISITION, STREAM_PHASE = 1, 2, 3, 4


def phase_key(phase: str | float) -> str:
    """Column suffix of a phase: its name, or e.g. ``45s`` for a time in seconds."""
    if isinstance(phase, str) and phase in PHASES:
        return phase
    return f"{phase_to_seconds(phase):g}s"


def _check(resolution: int, modalities: Sequence[str], phases: Sequence[str | float]) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < MIN_RESOLUTION:
        raise ValueError(f"resolution must be an integer >= {MIN_RESOLUTION}, got {resolution!r}")
    for modality in modalities:
        if modality not in MODALITIES:
            raise ValueError(f"Unknown modality {modality!r}; allowed: {list(MODALITIES)}")
    for phase in phases:
        phase_to_seconds(phase)


def render_sample(
    eye: EyeGeometry,
    resolution: int,
    modalities: Sequence[str] = MODALITIES,
    phases: Sequence[str | float] = ("early", "late"),
    randomise: bool = True,
    misregister: bool = False,
) -> dict[str, dict]:
    """All images and labels of one eye: ``{modality: row}``, a row holding the dataset columns.

    Row keys: ``source_image`` (uint8 RGB for cfp/uwf_slo, grey for oct), ``ffa_<phase>`` (uint8
    grey, pixel-aligned with the source unless ``misregister``) and ``ffa_<phase>_seconds``,
    ``vessel_mask`` (0/255), ``artery_vein`` (0/1 artery/2 vein), ``mask_<lesion>`` (0/255) for
    every ``LESION_TYPES``, ``disc_x/y`` and ``fovea_x/y`` (pixels), ``source_to_ffa_affine`` (2x3),
    and the eye's ``modality``, ``disease``, ``severity``, ``seed``, ``eye`` (OD/OS), ``cup_disc_ratio``.
    Phases are names from the vocabulary or seconds after injection (column ``ffa_45s`` for 45.0).
    ``randomise`` switches on domain randomisation (camera framing, exposure, colour, blur, noise,
    JPEG, phase timing); without it the rendering is canonical. Same eye and arguments, same pixels.
    """
    _check(resolution, modalities, phases)
    seconds = {phase_key(p): _phase_seconds(eye.seed, p, randomise) for p in phases}
    views: dict[str, View] = {}
    angiograms: dict[tuple[str, str], np.ndarray] = {}
    rows = {}
    for modality in modalities:
        view_name = VIEW_OF[modality]
        if view_name not in views:
            views[view_name] = _view(eye, view_name, resolution, randomise)
        view = views[view_name]
        frame = view.frame
        aperture = None if modality == "oct" else view.retina  # OCT en-face (and its FFA) fill the square

        source = SOURCE_RENDERERS[modality](eye, frame)
        if view.lids is not None:  # the lids are part of the SLO picture, black in the angiogram
            source = source * view.retina + view.lids * (1.0 - view.retina)
        row = {
            "modality": modality,
            "source_image": _take(
                eye, modality, "source_image", source, None if view.lids is not None else aperture, randomise
            ),
        }
        affine = np.eye(2, 3, dtype=np.float32)
        if misregister:
            affine = misregistration(_stream(eye.seed, STREAM_ACQUISITION, modality, "affine"), resolution)
        for key, time in seconds.items():
            if (view_name, key) not in angiograms:
                angiograms[view_name, key] = render_ffa(eye, frame, time)
            light = angiograms[view_name, key]
            if misregister:
                light = cv2.warpAffine(light, affine, (resolution, resolution), flags=cv2.INTER_LINEAR)
            row[f"ffa_{key}"] = _take(eye, modality, f"ffa_{key}", light, aperture, randomise)
            row[f"ffa_{key}_seconds"] = float(time)
        row["vessel_mask"], row["artery_vein"] = (labels.copy() for labels in frame.vessel_labels())
        for name in LESION_TYPES:
            row[f"mask_{name}"] = frame.lesion_mask(name).copy()
        disc, fovea = frame.camera.to_pixels(np.stack([eye.disc_centre, eye.fovea]))
        row.update(
            disease=eye.disease,
            severity=float(eye.severity),
            seed=int(eye.seed),
            eye=eye.laterality,
            disc_x=float(disc[0]),
            disc_y=float(disc[1]),
            fovea_x=float(fovea[0]),
            fovea_y=float(fovea[1]),
            cup_disc_ratio=float(eye.cup_disc_ratio),
            source_to_ffa_affine=affine,
        )
        rows[modality] = row
    return rows


@dataclass
class View:
    """One camera's picture of the eye: the rasterised frame, the visible retina, and eyelids (SLO only)."""

    frame: Frame
    retina: np.ndarray
    lids: np.ndarray | None


def _view(eye: EyeGeometry, name: str, resolution: int, randomise: bool) -> View:
    camera_rng = _stream(eye.seed, STREAM_CAMERAS, name) if randomise else None
    texture_rng = _stream(eye.seed, STREAM_TEXTURE, name)
    if name == "uwf":
        frame = rasterise(eye, uwf_camera(eye, resolution, camera_rng), texture_rng)
        return View(frame, *uwf_view(resolution, texture_rng))
    frame = rasterise(eye, fundus_camera(eye, resolution, camera_rng), texture_rng)
    return View(frame, fundus_aperture(resolution), None)


def _take(
    eye: EyeGeometry, modality: str, column: str, image: np.ndarray, aperture: np.ndarray | None, randomise: bool
) -> np.ndarray:
    """Record one image as the instrument would, with this eye's own acquisition draw for this column."""
    rng = _stream(eye.seed, STREAM_ACQUISITION, modality, column)
    acquisition = Acquisition.random(rng, image.shape[-1]) if randomise else Acquisition()
    return expose(image, aperture, acquisition, rng)


def _stream(seed: int, *names: int | str) -> np.random.Generator:
    """Random stream of one eye for one purpose: the same names always give the same numbers."""
    return np.random.default_rng([seed, *(n if isinstance(n, int) else zlib.crc32(n.encode()) for n in names)])


def _phase_seconds(seed: int, phase: str | float, randomise: bool) -> float:
    """Seconds after injection at which this eye's ``phase`` image is taken (jittered when randomising)."""
    seconds = phase_to_seconds(phase)
    if not randomise:
        return seconds
    rng = _stream(seed, STREAM_PHASE, phase_key(phase))
    low, high = PHASE_SECONDS_RANGE
    return float(np.clip(seconds * np.exp(rng.normal(0.0, PHASE_JITTER)), max(low, 1.0), high))
