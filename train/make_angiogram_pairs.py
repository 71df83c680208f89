"""Pairs with real anatomy: a photo-like image rendered from each real angiogram, paired with that angiogram.

    python train/make_angiogram_pairs.py --input ../shared/data/ffa_real --split train \
        --output_dir data/angiogram-pairs

Why (ours, not a library's): the phantom's vessel trees, disc and macula are drawn by a program, and a model
trained on the phantom alone lays its own anatomy over a real photo (experiments/real_photo_check.py: whatever the
photo, the disc lands at the same place). Real angiograms carry real anatomy (curved arcades, the disc where the
vessels converge, a dark macula) but come without a photo. So each real FFA gets a source rendered from it that
shows what a colour fundus photo shows of the same eye: the angiogram's smooth background with its vessels
removed (dark fovea, the disc's glow) as the fundus tone, a photo's small deep foveal pit where the angiogram's
fovea is dark (`foveal_pit`), its larger vessels drawn dark, in a fundus photo's orange. Through the model's
"grey_ridges" input representation (CLAHE grey + ridge maps) this looks much like a real photo. What it cannot
show is how pathology looks in a photo: leakage becomes a bright patch and non-perfusion a dark one, which a real
photo does not have; the capillaries visible in FFA are left out.

Layouts of `--input` (`--layout`):
- `ffa_real` (the public huapu4/FFA set, `../shared/data/ffa_real`; 45-55 degree angiograms -> `cfp` rows):
  `disease_diagnosis/<split>/<disease folder>/*.jpg` (phase not given: `--diagnosis_phase`) and
  `phase_identification/<split>/<phase folder>/*.jpg` (`non_ffa` holds non-angiograms and is skipped).
- `uwf_triplets` (`../shared/data/uwf_slo_ffa`; 200-degree angiograms -> `uwf_slo` rows):
  `<split>/<id>_ffa_early.png`, `<split>/<id>_ffa_late.png` beside `<split>/<id>_slo.png`. Each angiogram is framed
  exactly as the pipeline frames that eye's real SLO and the source is drawn in the SLO's pseudo-colour (red and
  green lasers, no blue), so the model sees real ultra-widefield anatomy at its real scale: a small disc, thin
  vessels reaching the periphery. (Trained on the angiograms as `cfp` or as posterior-pole angiograms relabelled
  `uwf_slo`, the model drew thick posterior-pole vessels over the whole UWF field.) With `--real_slo_source` the
  source is the eye's real SLO instead (framed the same way, as acquired: not pixel-aligned with the angiogram), so
  that a model also sees what a real SLO looks like; the vessel mask is still the angiogram's, and a `loss_mask`
  column marks where the pair does agree: outside the angiogram's retinal field (`loss_mask`: the SLO's eyelids and
  lashes, and the black around its image), where the angiogram is black (`train/train_ffa.py --loss_mask_column
  loss_mask` trains only there). With `--register` as well, each angiogram is registered onto its SLO
  (`ffa_pipeline.registration`, as `train/prepare_dataset.py` registers the test pairs); one that registers is
  warped into the SLO's pixels and its `loss_mask` covers its whole frame, the retina too (2 of the 8 real train
  pairs register: experiments/registered_slo_probe.sh). With `--local_registration` as well, each pair is then
  refined by a smooth local warp (`refine_locally`, whether or not the global fit was accepted: the global affine
  leaves ~10 px of local error, and eye 3's early pair, rejected globally, registers locally inside part of its
  retina; experiments/results/local_registration_probe.md): a pair whose local refinement passes its held-out
  checks is warped locally (`warp_locally`) and its `loss_mask` is the outside of the retina plus the refinement's
  supported region (the lit retina within one tile of a verified match), not the whole frame; one that fails
  locally keeps the global outcome above. The foveal pit is
  drawn at an SLO's scale where the eye's early frame has its fovea. With `--lid_draws N` each angiogram is
  rendered N times, each seen between its own random eyelids (`with_lids`, `--lid_style`). With `--optic_disc`
  the disc is drawn as a real SLO shows it, a near-white spot with a broad glow (`optic_disc_glow`). With
  `--slo_look` each source (each lid draw anew) shows the eye as a real SLO does (`slo_look`): only some of its
  vessels, fainter and unevenly visible, among a choroidal mesh and dust rings, over the same angiogram.
- `ffa_real` with `--uwf_periphery DIR` (-> `uwf_slo` rows): each posterior-pole angiogram shrunk to its size in an
  ultra-widefield frame and set over the posterior pole of a phantom UWF angiogram of the same phase from DIR (a
  `train/make_phantom_dataset.py --modalities uwf_slo` folder at the same resolution), then rendered as an SLO
  (`set_into_uwf`): real discs and maculae at UWF scale from 84 eyes, where the UWF triplets have 4. Models
  fine-tuned at 512 px on those 4 eyes drew their discs and not an unseen eye's
  (experiments/results/uwf512_probe.md).

Output: the phantom's wide layout, so `train/train_ffa.py` reads both with the same flags and can concatenate them
(`--train_data_dir data/phantom-train data/angiogram-pairs`): `eye_id`, `modality` (`cfp`; `uwf_slo` for
`uwf_triplets` and `--uwf_periphery`), `source_image`, `ffa_<phase>` and `ffa_<phase>_seconds` for `--phases` (only
the angiogram's own phase is filled, the others are empty), `vessel_mask` (0/255: the vessels drawn into the photo,
from the angiogram's ridge map, not a manual tracing; for the vessel AUC of `train/evaluate.py`), `disease`,
`source_path` (and `loss_mask`, 0/255, with `--real_slo_source`). An image seen twice (same pixels) is kept once.
`--split test` gives held-out pairs for `train/evaluate.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import shlex
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
from datasets import Features, Image, Value

from ffa_pipeline.anatomy import FOVEA_RADIUS, find_fovea, retinal_field
from ffa_pipeline.data import load_dataset_fresh, write_parquet_splits
from ffa_pipeline.image_processing import FFAImageProcessor, vessel_map
from ffa_pipeline.phantom.imaging import uwf_view
from ffa_pipeline.registration import refine_locally, register_pair, warp_locally, warp_to
from ffa_pipeline.vocab import PHASES

DISEASE_FOLDERS = {"normal": "normal", "brvo": "vein_occlusion", "with_np": "diabetic_retinopathy",
                   "none_np": "diabetic_retinopathy"}
PHASE_FOLDERS = {"arterial_phase": "arterial", "venous_phase": "early"}
SKIPPED_FOLDERS = ("non_ffa",)
FUNDUS_ORANGE = (0.95, 0.6, 0.25)  # gain of R, G, B on the fundus tone: an orange fundus with a green channel
SLO_PSEUDO_COLOUR = (0.9, 0.9, 0.05)  # Optos: red ~ green laser, no blue (the real SLOs' median R, G, B ~ 1 : 1 : 0.05)


@dataclass(frozen=True)
class Layout:
    """How one input layout's angiograms become rows."""

    modality: str
    palette: tuple[float, float, float]  # gain of R, G, B on the grey fundus
    license: str
    vessel_width: float  # the larger vessels' width in pixels at 256 px
    vessel_contrast: float  # how much darker than the fundus a vessel is drawn (real UWF SLO vessels are faint)
    foveal_pit: bool  # draw a photo's foveal pit where the angiogram has a dark fovea (`foveal_pit`)
    optic_disc: bool = False  # add a real SLO's bright disc where the angiogram has its disc (`optic_disc_glow`)


LAYOUTS = {"ffa_real": Layout("cfp", FUNDUS_ORANGE, "apache-2.0", vessel_width=1.0, vessel_contrast=0.55,
                              foveal_pit=True),
           "uwf_triplets": Layout("uwf_slo", SLO_PSEUDO_COLOUR, "mit", vessel_width=0.6, vessel_contrast=0.35,
                                  foveal_pit=True)}
# `--optic_disc`: the real train and test SLOs' disc, through the "grey_ridges" input at 512 px, is a near-white
# spot (0.98 of the equalised grey at its centre in 5 of 7 eyes) whose glow falls to 0.4-0.6 at 0.05 of the side;
# the rendered sources' disc only 0.86-0.88 -> 0.57-0.71 (the angiogram's own smooth background). DISC_GLOW_SIGMA
# (of the side) and DISC_GLOW_GAIN (added to the fundus tone, 0.5-0.8) bring the rendered profile to 0.98-1.00 ->
# 0.62-0.65 (2026-12-01). A 512 px fine-tune on such renders still drew the real SLOs' disc dark
# (experiments/results/uwf512_probe.md, last section).
DISC_GLOW_SIGMA, DISC_GLOW_GAIN = 0.02, 0.35
# The foveal pit: a Gaussian dip of PIT_SIGMA x the side (a colour photo's fovea; scaled by the fovea's size in
# the layout's field, FOVEA_RADIUS: 0.0075 for an SLO, as the real SLOs' dark spot), PIT_DEPTH deep where the
# angiogram's fovea is at most PIT_FULL of its surround (`find_fovea`), none from PIT_NONE up. Real normal
# angiograms' foveae are 0.45-0.56 or, where the fovea is not in the frame's centre, 0.83-0.89
# (data/angiogram-pairs, 2026-11-30); the UWF train angiograms' early foveae 0.25-0.40.
PIT_SIGMA, PIT_DEPTH, PIT_FULL, PIT_NONE = 0.025, 0.5, 0.45, 0.7
UWF_PHASES = ("early", "late")
# `set_into_uwf`: the side of a 45-55 degree angiogram as a fraction of a UWF frame's: its disc-fovea distance is
# 0.25-0.3 of its side, 0.09-0.13 in the real UWF angiograms framed at 512 px (2026-12-01); its centre lands within
# UWF_POLE_SHIFT (sd, of the side) of the frame's centre, near the fovea as in an Optos frame.
UWF_POLE_SCALE, UWF_POLE_SHIFT = (0.33, 0.47), 0.02
# Its field's edge fades into the phantom's over a Gaussian of UWF_POLE_FEATHER x its side, brightness matched there:
# a sharp edge showed as a bright circle in both the angiogram and the rendered source (by eye, 2026-12-01).
UWF_POLE_FEATHER = 0.04
# Half-width and half-height ranges of the window between the eyelids (`with_lids`), as fractions of the side:
# narrower than the phantom's, whose lids barely reach the sides; in the framed real SLOs the lids cover roughly the
# outer 2-12 % of each side (by eye, 2026-12-01).
LID_WINDOW = ((0.38, 0.48), (0.36, 0.46))
# The "slo" style's window (`with_lids`): wide, so the lids cover mostly what lies outside the angiogram's own field.
SLO_LID_WINDOW = ((0.42, 0.52), (0.40, 0.50))
LID_STYLES = ("slo", "phantom")
# `--slo_look` (`slo_look`): a real SLO, seen through `grey_ridges`, shows fewer and fainter vessels than its
# angiogram, their visibility uneven over the field, among a mesh of choroidal texture and the bright rings of dust
# on the optics; the plain renders show every vessel of the angiogram on an even retina (by eye on the ridge maps of
# test eye 10, 2026-12-02). Each draw keeps the vessels above a random SLO_VESSEL_THRESHOLD of the render's vessel
# map, at SLO_CONTRAST_GAIN x the layout's contrast, times a smooth visibility field (SLO_VISIBILITY_CELLS cells
# a side, from SLO_MIN_VISIBILITY to 1); darkens the fundus tone by up to SLO_CHOROID_DEPTH along the ridges of
# band-passed noise (the phantom's `choroid_pattern` idea) of scale SLO_CHOROID_SCALE (of the side); and adds up to
# SLO_DUST_RINGS rings of radius SLO_DUST_RADIUS (of the side), SLO_DUST_GAIN brighter than the tone.
SLO_VESSEL_THRESHOLD = (0.0, 0.5)
SLO_CONTRAST_GAIN = (0.5, 1.0)
SLO_VISIBILITY_CELLS, SLO_MIN_VISIBILITY = 4, 0.2
SLO_CHOROID_DEPTH, SLO_CHOROID_SCALE = (0.01, 0.06), (0.002, 0.005)
SLO_DUST_RINGS, SLO_DUST_RADIUS, SLO_DUST_GAIN = 30, (0.004, 0.01), (0.05, 0.2)


def photo_from_angiogram(angiogram: np.ndarray, layout: Layout = LAYOUTS["ffa_real"],
                         landmark_angiogram: np.ndarray | None = None,
                         slo_look_rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """HxW uint8 angiogram -> (HxWx3 float32 photo-like image in [0, 1] of the same anatomy, HxW bool mask of the
    vessels drawn in it); see the module docstring. Scales are fractions of the side: any resolution, same picture.
    `layout` gives the colours (a photo's orange or an SLO's pseudo-colour) and the vessels' width and contrast.
    `landmark_angiogram` (uint8, same framing): the frame whose fovea gets the foveal pit and whose disc the disc's
    glow, default `angiogram`; a late UWF frame's fovea is faint (found 0.17 of the side astray in eye 4) and its
    leakage may outshine the disc, so the eye's early frame is used. With `slo_look_rng` the source is drawn as a real
    SLO shows its eye (`slo_look`), that generator's own draw.
    """
    return draw_photo(*fundus_parts(angiogram, layout, landmark_angiogram), layout, slo_look_rng)


def fundus_parts(angiogram: np.ndarray, layout: Layout, landmark_angiogram: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The parts of `photo_from_angiogram`'s image that do not change between draws: (HxW fundus tone, HxW vessel
    map in [0, 1], HxW bool field), computed once per angiogram however many looks are drawn from them."""
    side = angiogram.shape[0]
    grey = angiogram.astype(np.float32) / 255.0
    field = cv2.erode((cv2.GaussianBlur(grey, (0, 0), 0.008 * side) > 0.03).astype(np.uint8),
                      cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.035 * side) | 1,) * 2)).astype(bool)
    vessel_width = layout.vessel_width * side / 256
    vessels = vessel_map(angiogram, vessels_dark=False, sigmas=(vessel_width, 2 * vessel_width))
    vessels = np.clip((vessels - 0.25) / 0.75, 0.0, 1.0)  # the larger vessels; FFA also shows capillaries
    no_vessels = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.03 * side) | 1,) * 2)
    background = cv2.GaussianBlur(cv2.morphologyEx(grey, cv2.MORPH_OPEN, no_vessels), (0, 0), 0.015 * side)
    low, high = np.percentile(background[field], [2, 98]) if field.any() else (0.0, 1.0)
    tone = 0.5 + 0.3 * np.clip((background - low) / (high - low + 1e-6), 0.0, 1.0)
    landmarks = grey if landmark_angiogram is None else landmark_angiogram.astype(np.float32) / 255.0
    if layout.foveal_pit:
        tone = tone * foveal_pit(landmarks, field, FOVEA_RADIUS[layout.modality])
    if layout.optic_disc:
        tone = tone + optic_disc_glow(landmarks, field)
    return tone, vessels, field


def draw_photo(tone: np.ndarray, vessels: np.ndarray, field: np.ndarray, layout: Layout,
               slo_look_rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`fundus_parts` -> (photo-like image, vessel mask) as `photo_from_angiogram` returns them."""
    contrast = layout.vessel_contrast
    if slo_look_rng is not None:
        tone, vessels, contrast = slo_look(tone, vessels, contrast, slo_look_rng)
    fundus = tone * (1.0 - contrast * vessels) * field
    photo = np.clip(fundus[..., None] * np.array(layout.palette, np.float32), 0.0, 1.0).astype(np.float32)
    return photo, (vessels > 0) & field


def slo_look(tone: np.ndarray, vessels: np.ndarray, contrast: float, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HxW fundus tone, HxW vessel map in [0, 1], the layout's vessel contrast) -> (tone, vessels, HxW contrast) as
    a real SLO shows them (SLO_* above): fewer, fainter vessels, unevenly visible, a choroidal mesh and dust rings.
    Ours: the model learnt UWF vessel trees from renders that show every vessel cleanly and drew a real SLO's sparse,
    noisy vessels dim and few (experiments/results/uwf_vessel_limits.md); the angiogram, the target, is unchanged, so
    the model learns to draw the whole tree from what an SLO shows of it."""
    side = tone.shape[0]
    threshold = rng.uniform(*SLO_VESSEL_THRESHOLD)
    vessels = np.clip((vessels - threshold) / (1.0 - threshold), 0.0, 1.0)
    cells = rng.random((SLO_VISIBILITY_CELLS, SLO_VISIBILITY_CELLS)).astype(np.float32)
    visibility = np.clip(cv2.resize(cells, (side, side), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    contrast = contrast * rng.uniform(*SLO_CONTRAST_GAIN) * (SLO_MIN_VISIBILITY + (1 - SLO_MIN_VISIBILITY) * visibility)
    scale = rng.uniform(*SLO_CHOROID_SCALE) * side
    noise = rng.standard_normal((side, side)).astype(np.float32)
    band = cv2.GaussianBlur(noise, (0, 0), scale) - cv2.GaussianBlur(noise, (0, 0), 3 * scale)
    band /= band.std() + 1e-6
    tone = tone * (1.0 - rng.uniform(*SLO_CHOROID_DEPTH) * np.clip(1.0 - np.abs(band) / 0.6, 0.0, 1.0))
    dust = np.zeros((side, side), np.float32)
    for _ in range(rng.integers(0, SLO_DUST_RINGS + 1)):
        centre = (int(rng.integers(0, side)), int(rng.integers(0, side)))
        radius = max(2, round(rng.uniform(*SLO_DUST_RADIUS) * side))
        cv2.circle(dust, centre, radius, float(rng.uniform(*SLO_DUST_GAIN)), max(1, round(0.0015 * side)), cv2.LINE_AA)
    return tone + dust, vessels, contrast.astype(np.float32)


def foveal_pit(angiogram: np.ndarray, field: np.ndarray, radius: float = FOVEA_RADIUS["cfp"]) -> np.ndarray:
    """HxW gain (<= 1) that draws a colour photo's fovea into the fundus tone where the angiogram (HxW float) has a
    dark fovea: a small, deep pit, so that the sources' "grey_ridges" input shows what a real photo's shows (a
    dark spot ringed in the bright-ridge map, as in scikit-image's photo). The angiogram's own smooth background
    gives only a broad, shallow dip there, and a model trained on that alone drew a faint fovea from a real photo
    (experiments/real_photo_check.py: 0.65 of the field where real normal angiograms are 0.37). `radius`: the
    fovea's radius as a fraction of the side (`FOVEA_RADIUS` of the layout's modality); the pit scales with it."""
    side = angiogram.shape[0]
    fovea = find_fovea(angiogram, field, radius)
    depth = PIT_DEPTH * float(np.clip((PIT_NONE - fovea.darkness) / (PIT_NONE - PIT_FULL), 0.0, 1.0))
    yy, xx = np.mgrid[:side, :side]
    sigma = PIT_SIGMA * radius / FOVEA_RADIUS["cfp"] * side
    distance2 = ((yy - fovea.y) ** 2 + (xx - fovea.x) ** 2) / sigma**2
    return (1.0 - depth * np.exp(-distance2 / 2)).astype(np.float32)


def optic_disc_centre(angiogram: np.ndarray, field: np.ndarray) -> tuple[int, int]:
    """(y, x) of the disc of a square angiogram (HxW): its brightest point inside the field after a blur of 0.008 x
    the side, as an early frame shows it (ours)."""
    blurred = cv2.GaussianBlur(angiogram.astype(np.float32), (0, 0), 0.008 * angiogram.shape[0])
    y, x = np.unravel_index(np.where(field, blurred, -np.inf).argmax(), blurred.shape)
    return int(y), int(x)


def optic_disc_glow(angiogram: np.ndarray, field: np.ndarray) -> np.ndarray:
    """HxW glow (>= 0) to add to the fundus tone at the disc of the angiogram (HxW float; `optic_disc_centre`). A
    real SLO's disc is a near-white spot with a broad glow; the angiogram's smooth background gives the rendered
    source only a faint one, and a model fine-tuned at 512 px drew the real SLOs' disc dark
    (experiments/results/uwf512_probe.md)."""
    side = angiogram.shape[0]
    y, x = optic_disc_centre(angiogram, field)
    yy, xx = np.mgrid[:side, :side]
    distance2 = ((yy - y) ** 2 + (xx - x) ** 2) / (DISC_GLOW_SIGMA * side) ** 2
    return (DISC_GLOW_GAIN * np.exp(-distance2 / 2) * field).astype(np.float32)


def set_into_uwf(angiogram: np.ndarray, periphery: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A square posterior-pole angiogram (uint8) shrunk to its size in an ultra-widefield frame (`UWF_POLE_SCALE`)
    and set over the posterior pole of `periphery` (a phantom UWF angiogram, uint8, the output's side), flipped so
    that its disc lies on the same side as the phantom's, its brightness matched to the phantom's around it, its
    field's edge feathered (ours)."""
    side = periphery.shape[0]
    pole_side = int(round(rng.uniform(*UWF_POLE_SCALE) * side)) | 1
    pole = cv2.resize(angiogram, (pole_side, pole_side), interpolation=cv2.INTER_AREA).astype(np.float32)
    pole_field = retinal_field(pole.astype(np.uint8)) & (cv2.GaussianBlur(pole, (0, 0), 0.01 * pole_side) > 8)
    corner = (side - pole_side) // 2 + np.round(rng.normal(0.0, UWF_POLE_SHIFT * side, 2)).astype(int)
    top, left = np.clip(corner, 0, side - pole_side)
    region = periphery[top:top + pole_side, left:left + pole_side].astype(np.float32)
    pole_disc_x = optic_disc_centre(pole, pole_field)[1]
    phantom_disc_x = optic_disc_centre(region, pole_field)[1]
    if (pole_disc_x - pole_side / 2) * (phantom_disc_x - pole_side / 2) < 0:
        pole, pole_field = pole[:, ::-1], pole_field[:, ::-1]
    inner = cv2.erode(pole_field.astype(np.uint8), np.ones((int(0.1 * pole_side) | 1,) * 2, np.uint8))
    weight = cv2.GaussianBlur(inner.astype(np.float32), (0, 0), UWF_POLE_FEATHER * pole_side)
    rim = (weight > 0.1) & (weight < 0.6)
    gain = np.clip(np.median(region[rim]) / max(np.median(pole[rim]), 1.0), 0.2, 2.0) if rim.any() else 1.0
    blended = weight * np.clip(pole * gain, 0, 255) + (1.0 - weight) * region
    out = periphery.copy()
    out[top:top + pole_side, left:left + pole_side] = blended.round().astype(np.uint8)
    return out


def load_uwf_periphery(path: Path, resolution: int, phases: set[str]) -> list[dict[str, np.ndarray]]:
    """Each phantom UWF eye's angiograms by phase (uint8 at `resolution`) from a `make_phantom_dataset.py` folder;
    a folder without uwf_slo rows or without one of `phases` is an error naming what it has."""
    rows = load_dataset_fresh(str(path))["train"]
    missing = sorted(phase for phase in phases if f"ffa_{phase}" not in rows.column_names)
    if missing:
        raise ValueError(f"--uwf_periphery {path}: no column for phase(s) {missing}; it has {rows.column_names}")
    eyes = [{phase: cv2.resize(np.asarray(row[f"ffa_{phase}"].convert("L")), (resolution, resolution),
                               interpolation=cv2.INTER_AREA) for phase in phases}
            for row in rows if row["modality"] == "uwf_slo"]
    if not eyes:
        raise ValueError(f"--uwf_periphery {path}: no uwf_slo rows; modalities: {sorted(set(rows['modality']))}")
    return eyes


def collect(root: Path, split: str, diagnosis_phase: str) -> list[tuple[Path, str, str]]:
    """(path, disease, phase) of every angiogram of `split` in the `ffa_real` layout; an unknown folder is an error
    naming the known ones."""
    found = []
    for task, folders, label in (("disease_diagnosis", DISEASE_FOLDERS, "disease"),
                                 ("phase_identification", PHASE_FOLDERS, "phase")):
        for folder in sorted(p for p in (root / task / split).glob("*") if p.is_dir()):
            if folder.name in SKIPPED_FOLDERS:
                continue
            if folder.name not in folders:
                raise ValueError(f"{folder}: unknown {label} folder {folder.name!r}; known: "
                                 f"{sorted(folders) + list(SKIPPED_FOLDERS)}")
            for path in sorted(folder.glob("*.jpg")):
                if task == "disease_diagnosis":
                    found.append((path, folders[folder.name], diagnosis_phase))
                else:
                    found.append((path, "unknown", folders[folder.name]))
    if not found:
        raise ValueError(f"no angiogram under {root}/{{disease_diagnosis,phase_identification}}/{split}/<folder>/*.jpg")
    return found


def collect_uwf(root: Path, split: str) -> list[tuple[Path, str, str]]:
    """(path, disease, phase) of every angiogram of `split` in the `uwf_triplets` layout (disease not given)."""
    found = [(path, "unknown", phase) for path in sorted((root / split).glob("*_ffa_*.png"))
             for phase in UWF_PHASES if path.stem.endswith(f"_ffa_{phase}")]
    if not found:
        raise ValueError(f"no angiogram under {root}/{split}/<id>_ffa_{{{','.join(UWF_PHASES)}}}.png")
    for path, _, _ in found:
        slo = uwf_slo_path(path)
        if not slo.is_file():
            raise ValueError(f"{path}: no SLO {slo.name} beside it to frame it by")
        early = uwf_early_path(path)
        if not early.is_file():
            raise ValueError(f"{path}: no early angiogram {early.name} beside it to find the fovea by")
    return found


def uwf_eye(angiogram_path: Path) -> str:
    """The eye id of `<id>_ffa_<phase>.png`."""
    return angiogram_path.name.split("_ffa_")[0]


def uwf_slo_path(angiogram_path: Path) -> Path:
    return angiogram_path.with_name(uwf_eye(angiogram_path) + "_slo.png")


def uwf_early_path(angiogram_path: Path) -> Path:
    return angiogram_path.with_name(uwf_eye(angiogram_path) + "_ffa_early.png")


def load_angiogram(path: Path, layout: str, resolution: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(the angiogram as a square uint8 grey image at `resolution`, framed as the pipeline frames its source;
    for `uwf_triplets` the eye's real SLO framed the same way, HxWx3 float in [0, 1], else None)."""
    if layout == "ffa_real":
        grey = np.asarray(PIL.Image.open(path).convert("L"))
        return cv2.resize(grey, (resolution, resolution), interpolation=cv2.INTER_AREA), None
    angiogram, slo, _ = frame_with_slo(path, resolution)
    return angiogram, slo


def frame_with_slo(path: Path, resolution: int, register: bool = False, local_registration: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A UWF angiogram and its eye's real SLO framed alike (as `load_angiogram`), and with `register` the part of
    the retina where the pair agrees after registration onto the SLO (HxW bool), or None when the pair does not
    register and the angiogram stays as acquired. Global (`register_pair`, as `train/prepare_dataset.py` registers
    the test pairs): wherever the warped angiogram covers the SLO. With `local_registration`, a pair whose local
    refinement (`refine_locally`) is trusted is warped locally instead and agrees only on the refinement's
    `support`, where its matches verify it; one whose refinement is not trusted keeps the global outcome."""
    processor = FFAImageProcessor(resolution=resolution)
    slo = processor.to_float_rgb(uwf_slo_path(path))
    framing = processor.frame(slo)
    grey = np.asarray(PIL.Image.open(path).convert("L"))
    covered = None
    if register:
        slo_uint8 = (slo * 255).round().astype(np.uint8)
        result = register_pair(slo_uint8, grey)
        report = (f"{path.name}: global {'registered' if result.ok else 'not registered (' + result.reason + ')'}, "
                  f"inlier ratio {result.inlier_ratio:.2f}")
        local = refine_locally(slo_uint8, grey, result) if local_registration else None
        if local is not None:
            report += (f"; local {'ok' if local.ok else 'rejected (' + local.reason + ')'}, held-out inliers "
                       f"{local.heldout_inliers:.2f} (global {local.global_heldout_inliers:.2f}), median "
                       f"{local.heldout_median_error_px:.1f} px, vessel correlation {local.heldout_correlation:.2f} "
                       f"(global {local.global_heldout_correlation:.2f}), {local.num_matches} matches, support "
                       f"{local.supported_fraction:.2f}")
        if local is not None and local.ok:
            covered = local.support & (warp_locally(np.ones_like(grey), local) > 0)
            grey = warp_locally(grey, local)
            report += " -> local warp, loss outside the retina and on the support"
        elif result.ok:
            covered = warp_to(np.ones_like(grey), result.matrix, slo.shape) > 0
            grey = warp_to(grey, result.matrix, slo.shape)
            report += " -> global warp, loss on the whole frame"
        else:
            report += " -> as acquired, loss outside the retina only"
        print(report)
    angiogram = processor.apply_framing(grey.astype(np.float32)[..., None] / 255.0, framing, resolution)[..., 0]
    if covered is not None:
        covered = processor.apply_framing(covered.astype(np.float32)[..., None], framing, resolution)[..., 0] > 0.99
    return (angiogram * 255).round().astype(np.uint8), processor.apply_framing(slo, framing, resolution), covered


def features(phases: list[str], loss_mask: bool = False) -> Features:
    columns = {"eye_id": Value("string"), "modality": Value("string"), "source_image": Image()}
    for phase in phases:
        columns[f"ffa_{phase}"] = Image()
        columns[f"ffa_{phase}_seconds"] = Value("float32")
    columns.update(vessel_mask=Image(), disease=Value("string"), source_path=Value("string"))
    return Features({**columns, "loss_mask": Image()} if loss_mask else columns)


def loss_mask(angiogram: np.ndarray, covered: np.ndarray | None = None) -> np.ndarray:
    """HxW uint8, 255 where a real SLO and its angiogram (framed alike) agree: outside the angiogram's retinal field
    (`retinal_field`, with its margin), where the SLO shows eyelids and lashes, or the black around its image, and
    the angiogram is black; and, for a pair registered onto its SLO, where they agree after registration
    (`covered`: wherever the warped angiogram covers the SLO, or a local registration's supported region).

    Unregistered, they are not pixel-aligned, so on the retina they disagree about where each vessel is, and a model
    trained there draws a dim blur (experiments/results/real_slo_probe.md). The black around the image counts too:
    left out (commit f6e489f), the model drew bright clouds there on the real test SLOs.
    """
    agree = ~retinal_field(angiogram)
    if covered is not None:
        agree |= covered
    return agree.astype(np.uint8) * 255


def make_rows(found: list[tuple[Path, str, str]], phases: list[str], resolution: int,
              root: Path, layout: str = "ffa_real", real_slo_source: bool = False,
              foveal_pit: bool = True, lid_draws: int = 0, lid_style: str = "slo",
              optic_disc: bool = False, uwf_periphery: list[dict[str, np.ndarray]] | None = None,
              register: bool = False, local_registration: bool = False,
              slo_look: bool = False) -> tuple[list[dict], int]:
    """Dataset rows (images as PNG bytes) and the number of duplicates left out; `foveal_pit=False` draws none
    where the layout would; `lid_draws` > 0 renders each angiogram that many times, each with its own eyelids
    (`with_lids` in `lid_style`); `optic_disc` adds a real SLO's bright disc (`optic_disc_glow`); `uwf_periphery`
    (`load_uwf_periphery`) sets each `ffa_real` angiogram into a random phantom UWF eye (`set_into_uwf`);
    `register` (with `real_slo_source`) registers each angiogram onto its SLO, `local_registration` refines that
    locally (`frame_with_slo`); `slo_look` draws each rendered source as a real SLO shows its eye (`slo_look`), anew
    for each lid draw."""
    rows, seen, earlies = [], set(), {}  # earlies: each UWF eye's early frame, framed once for both its phases
    drawing = LAYOUTS["uwf_triplets" if uwf_periphery else layout]
    drawing = dataclasses.replace(drawing, foveal_pit=drawing.foveal_pit and foveal_pit, optic_disc=optic_disc)
    for path, disease, phase in found:
        covered = None
        if register:
            angiogram, slo, covered = frame_with_slo(path, resolution, register=True,
                                                     local_registration=local_registration)
        else:
            angiogram, slo = load_angiogram(path, layout, resolution)
        digest = hashlib.sha256(angiogram.tobytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        if uwf_periphery:
            rng = np.random.default_rng(int(digest[:15], 16))
            angiogram = set_into_uwf(angiogram, uwf_periphery[rng.integers(len(uwf_periphery))][phase], rng)
        early = None
        if layout == "uwf_triplets" and (drawing.foveal_pit or drawing.optic_disc):
            early_path = uwf_early_path(path)
            if early_path not in earlies:
                earlies[early_path] = angiogram if early_path == path else load_angiogram(early_path, layout,
                                                                                         resolution)[0]
            early = earlies[early_path]
        parts = fundus_parts(angiogram, drawing, landmark_angiogram=early)
        photo, vessels = draw_photo(*parts, drawing)
        extra = {}
        if real_slo_source:
            photo = slo
            extra["loss_mask"] = PIL.Image.fromarray(loss_mask(angiogram, covered))
        eye_id = f"ffa_real/{digest[:12]}" if layout == "ffa_real" else f"uwf_slo_ffa/{uwf_eye(path)}"
        for draw in range(max(lid_draws, 1)):
            source, target, mask = photo, angiogram, vessels
            if slo_look:
                source, mask = draw_photo(*parts, drawing,
                                          slo_look_rng=np.random.default_rng([int(digest[:15], 16), draw, 1]))
            if lid_draws:
                rng = np.random.default_rng([int(digest[:15], 16), draw])
                source, target, mask = with_lids(source, angiogram, mask, rng, lid_style)
            row = {"eye_id": eye_id, "modality": drawing.modality,
                   "source_image": PIL.Image.fromarray((source * 255).round().astype(np.uint8)),
                   "vessel_mask": PIL.Image.fromarray(mask.astype(np.uint8) * 255),
                   "disease": disease, "source_path": path.relative_to(root).as_posix(), **extra}
            for name in phases:
                own = name == phase
                row[f"ffa_{name}"] = PIL.Image.fromarray(target) if own else None
                row[f"ffa_{name}_seconds"] = PHASES[name] if own else None
            rows.append(row)
    return rows, len(found) - len(seen)


def with_lids(photo: np.ndarray, angiogram: np.ndarray, vessels: np.ndarray, rng: np.random.Generator,
              style: str = "slo") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pair seen between eyelids, as an Optos camera sees most eyes; the angiogram is black under them, as in
    the phantom's UWF angiograms. The real angiograms' sources had none, and the model drew a real SLO's lid as a
    bright patch (eye 7 of ../shared/data/uwf_slo_ffa, brighter than its disc).

    `style` (LID_STYLES): "phantom": the phantom's lids and thin lashes (`uwf_view`, bright green) in a narrow
    window that also cuts the angiogram's peripheral retina and leaves the angiogram's own black surround black in
    the source (step 3h of experiments/train_default.sh: real lids drawn darker, not yet dark). "slo" (`slo_lids`):
    lids that look more like a real SLO's through `grey_ridges`, over everything outside a wide window *and*
    outside the angiogram's own field (no black in the source, where a real SLO has none; the retina that the
    angiogram shows is mostly kept), with clusters of thick dark lashes that reach over the retina's edge and
    darken the angiogram there too; its vessel mask keeps only the fully clear retina (step 3i: the model learnt
    these too, yet draws a real SLO's lids no darker than after step 3h; README)."""
    size = photo.shape[0]
    if style == "phantom":
        retina, lids = uwf_view(size, rng, half_width=LID_WINDOW[0], half_height=LID_WINDOW[1])
        source = photo * retina[..., None] + lids.transpose(1, 2, 0) * (1.0 - retina[..., None])
        target = (angiogram * retina).round().astype(np.uint8)
        return source.astype(np.float32), target, vessels & (retina > 0.5)
    if style != "slo":
        raise ValueError(f"unknown lid style {style!r}; allowed: {list(LID_STYLES)}")
    window, _ = uwf_view(size, rng, half_width=SLO_LID_WINDOW[0], half_height=SLO_LID_WINDOW[1])
    field = cv2.GaussianBlur((photo.max(axis=2) > 0.01).astype(np.float32), (0, 0), 0.004 * size)
    retina = window * field
    lid, lashes = slo_lids(retina, rng)
    clear = 1.0 - lashes
    source = (photo * retina[..., None] + lid * (1.0 - retina[..., None])) * clear[..., None]
    target = (angiogram * retina * clear).round().astype(np.uint8)
    return source.astype(np.float32), target, vessels & (retina > 0.9) & (lashes < 0.1)


def slo_lids(retina: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 lid colour, HxW lash darkness in [0, 1]) around `retina` (HxW, 1 inside the window), modelled on the
    real train SLOs by eye (ours): a yellow-green lid of uneven brightness, lit brightest at its margin,
    and clusters of near-parallel thick dark lashes rooted along the margin, pointing away from the centre."""
    size = retina.shape[0]
    shade = 0.55 + 0.45 * cv2.resize(rng.random((5, 5), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    from_margin = cv2.distanceTransform((retina < 0.5).astype(np.uint8), cv2.DIST_L2, 5) / size
    shade *= 1.0 + rng.uniform(0.1, 0.4) * np.exp(-from_margin / 0.02)
    colour = np.array([rng.uniform(0.45, 0.8), 1.0, 0.08], np.float32) * rng.uniform(0.45, 1.0)
    lid = np.clip(shade[..., None] * colour, 0.0, 1.0)
    lashes = np.zeros((size, size), np.float32)
    ys, xs = np.nonzero((retina > 0.3) & (retina < 0.7))
    centre = np.array([size / 2, size / 2])
    for _ in range(int(rng.integers(3, 8)) if len(ys) else 0):
        i = rng.integers(len(ys))
        root = np.array([xs[i], ys[i]], float)
        outward = np.arctan2(*(root - centre)[::-1]) + rng.normal(0, 0.35)
        out, along = np.array([np.cos(outward), np.sin(outward)]), np.array([-np.sin(outward), np.cos(outward)])
        for offset in rng.uniform(-0.1, 0.1, int(rng.integers(5, 14))) * size:
            heading = outward + rng.normal(0, 0.12) + rng.normal(0, 0.15) * np.linspace(0, 1, 8)
            start = root + offset * along - rng.uniform(0.01, 0.04) * size * out  # roots just inside the retina
            step = size * rng.uniform(0.015, 0.035)
            path = start + np.cumsum(step * np.stack([np.cos(heading), np.sin(heading)], 1), 0)
            layer = np.zeros((size, size), np.uint8)
            cv2.polylines(layer, [np.rint(path * 16).astype(np.int32)], False, 255,
                          max(1, int(size * rng.uniform(0.005, 0.015))), cv2.LINE_AA, 4)
            lashes = np.maximum(lashes, layer / 255.0 * rng.uniform(0.5, 0.9))
    lashes = cv2.GaussianBlur(lashes, (0, 0), 0.002 * size)
    return lid.astype(np.float32), lashes


def write_card(args: argparse.Namespace, files: dict[str, str], rows: list[dict]) -> None:
    counts = Counter(f"{row['disease']}/{next(p for p in args.phases if row[f'ffa_{p}'] is not None)}"
                     for row in rows)
    front = ["---", f"license: {args.license}", "task_categories:", "- image-to-image", "tags:", "- synthetic",
             "- fluorescein-angiography", "configs:", "- config_name: default", "  data_files:"]
    front += [line for split, path in files.items() for line in (f"  - split: {split}", f"    path: {path}")]
    body = [
        "---", "", f"# {args.output_dir.name}", "",
        ("Real ultra-widefield fluorescein angiograms, each paired with its eye's real SLO "
         + ("(registered onto it where the registration is trusted"
            + (", by a smooth local warp where its local refinement is trusted (`loss_mask` then covers only the "
               "refinement's supported region of the retina)" if args.local_registration else "")
            + ", else as acquired; see `loss_mask`)" if args.register else "as acquired (not pixel-aligned)")
         + ", framed as the pipeline frames the SLO, by `train/make_angiogram_pairs.py` of ffa-diffusion."
         if args.real_slo_source else
         "Real fluorescein angiograms, each paired with a photo-like source rendered from it (not a real photo) by "
         "`train/make_angiogram_pairs.py` of ffa-diffusion; see its docstring for how and for what the source "
         "cannot show."), "",
        f"- Angiograms: `{args.input}`, split `{args.split}` (licence of the source data: {args.license})",
        f"- Command: `{shlex.join(['python', 'train/make_angiogram_pairs.py', *sys.argv[1:]])}`",
        f"- Rows: {len(rows)}; per disease/phase: " + "; ".join(f"{k} {v}" for k, v in sorted(counts.items())),
    ]
    if args.layout == "ffa_real":
        body.append(f"- Phase of the `disease_diagnosis` angiograms (not given): `{args.diagnosis_phase}`")
    if args.uwf_periphery is not None:
        body.append(f"- Each angiogram shrunk to ultra-widefield scale and set into a phantom UWF angiogram of "
                    f"`{args.uwf_periphery}` (`set_into_uwf`), rendered as an SLO: `uwf_slo` rows")
    (args.output_dir / "README.md").write_text("\n".join(front + body) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True,
                        help="e.g. ../shared/data/ffa_real or ../shared/data/uwf_slo_ffa")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="ffa_real",
                        help="ffa_real: huapu4/FFA folders (cfp rows); uwf_triplets: <id>_ffa_<phase>.png beside "
                             "<id>_slo.png (uwf_slo rows)")
    parser.add_argument("--split", default="train", help="sub-folder of each task: train or test")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--resolution", type=int, default=256, help="square side of the stored images")
    parser.add_argument("--phases", nargs="+", default=["arterial", "early", "mid", "late"],
                        help="target columns to write (the phantom's); each row fills its own phase's")
    parser.add_argument("--diagnosis_phase", default="mid",
                        help="phase of the disease_diagnosis angiograms: late venous / recirculation frames")
    parser.add_argument("--license", default=None,
                        help="licence of the angiograms (default: the layout's: huapu4/FFA Apache-2.0, LPUWF-LDM MIT)")
    parser.add_argument("--real_slo_source", action="store_true",
                        help="uwf_triplets: the eye's real SLO as the source (as acquired), not one rendered")
    parser.add_argument("--register", action="store_true",
                        help="with --real_slo_source: register each angiogram onto its SLO; a pair that registers "
                             "is warped into the SLO's pixels and its loss_mask covers the whole angiogram, one that "
                             "does not stays as acquired with the loss outside the retina only")
    parser.add_argument("--local_registration", action="store_true",
                        help="with --register: refine each pair by a smooth local warp (refine_locally, also when the "
                             "global fit was rejected); a pair whose refinement passes its held-out checks is warped "
                             "locally and its loss_mask is the outside of the retina plus the refinement's supported "
                             "region; one that fails locally keeps the global outcome")
    parser.add_argument("--no_foveal_pit", action="store_true",
                        help="no photo's foveal pit in the sources (as rendered for the default model's steps "
                             "3c-3f, experiments/train_default.sh)")
    parser.add_argument("--optic_disc", action="store_true",
                        help="uwf_triplets: draw the disc as a real SLO shows it, a near-white spot with a broad "
                             "glow, where the eye's early angiogram has its disc")
    parser.add_argument("--lid_draws", type=int, default=0,
                        help="uwf_triplets: render each angiogram this many times, each between its own random "
                             "eyelids (bright in the source, black in the angiogram); 0: no lids")
    parser.add_argument("--lid_style", choices=LID_STYLES, default="slo",
                        help="slo: lids like a real SLO's, around the angiogram's own field, with thick lashes; "
                             "phantom: the phantom's, in a narrower window (step 3h of experiments/train_default.sh)")
    parser.add_argument("--slo_look", action="store_true",
                        help="uwf_triplets: draw each rendered source as a real SLO shows its eye: fewer, fainter, "
                             "unevenly visible vessels among a choroidal mesh and dust rings (anew for each lid draw)")
    parser.add_argument("--uwf_periphery", type=Path, default=None,
                        help="ffa_real: set each angiogram, shrunk to UWF scale, into a phantom UWF angiogram of "
                             "this make_phantom_dataset.py folder and render it as an SLO (uwf_slo rows)")
    args = parser.parse_args(argv)
    if args.uwf_periphery is not None and args.layout != "ffa_real":
        parser.error(f"--uwf_periphery needs --layout ffa_real, got --layout {args.layout}")
    if args.uwf_periphery is not None and not args.uwf_periphery.is_dir():
        parser.error(f"--uwf_periphery {args.uwf_periphery}: no such folder")
    if args.real_slo_source and args.layout != "uwf_triplets":
        parser.error(f"--real_slo_source needs --layout uwf_triplets, got --layout {args.layout}")
    if args.register and not args.real_slo_source:
        parser.error("--register needs --real_slo_source (it registers the angiogram onto the eye's real SLO)")
    if args.local_registration and not args.register:
        parser.error("--local_registration needs --register (it refines the global registration onto the real SLO)")
    if args.optic_disc and (args.layout != "uwf_triplets" or args.real_slo_source):
        parser.error(f"--optic_disc needs --layout uwf_triplets with a rendered source, got --layout {args.layout}"
                     + (" --real_slo_source" if args.real_slo_source else ""))
    if args.slo_look and (args.layout != "uwf_triplets" or args.real_slo_source):
        parser.error(f"--slo_look needs --layout uwf_triplets with a rendered source, got --layout {args.layout}"
                     + (" --real_slo_source" if args.real_slo_source else ""))
    if args.lid_draws < 0:
        parser.error(f"--lid_draws must be >= 0, got {args.lid_draws}")
    if args.lid_draws and (args.layout != "uwf_triplets" and args.uwf_periphery is None or args.real_slo_source):
        parser.error(f"--lid_draws needs --layout uwf_triplets with a rendered source or --uwf_periphery, got "
                     f"--layout {args.layout}" + (" --real_slo_source" if args.real_slo_source else ""))
    args.license = args.license or LAYOUTS[args.layout].license
    for phase in [*args.phases, args.diagnosis_phase]:
        if phase not in PHASES:
            parser.error(f"unknown phase {phase!r}; allowed: {list(PHASES)}")
    own_phases = {args.diagnosis_phase, *PHASE_FOLDERS.values()} if args.layout == "ffa_real" else set(UWF_PHASES)
    needed = own_phases - set(args.phases)
    if needed:
        parser.error(f"--phases {args.phases} lacks {sorted(needed)}, the phase of some angiograms")
    if args.resolution < 64:
        parser.error(f"--resolution must be >= 64, got {args.resolution}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.layout == "ffa_real":
        found = collect(args.input, args.split, args.diagnosis_phase)
    else:
        found = collect_uwf(args.input, args.split)
    periphery = None
    if args.uwf_periphery is not None:
        periphery = load_uwf_periphery(args.uwf_periphery, args.resolution, {phase for _, _, phase in found})
    rows, duplicates = make_rows(found, args.phases, args.resolution, args.input, args.layout, args.real_slo_source,
                                 foveal_pit=not args.no_foveal_pit, lid_draws=args.lid_draws,
                                 lid_style=args.lid_style, optic_disc=args.optic_disc, uwf_periphery=periphery,
                                 register=args.register, local_registration=args.local_registration,
                                 slo_look=args.slo_look)
    files = write_parquet_splits({args.split: rows}, features(args.phases, args.real_slo_source), args.output_dir)
    write_card(args, files, rows)
    print(f"{len(rows)} pairs ({duplicates} duplicate images left out) -> {args.output_dir / files[args.split]}")


if __name__ == "__main__":
    main()
