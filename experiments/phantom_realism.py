"""Are the phantom's angiograms as contrasted as real ones, phase by phase? Vessel contrast and fovea darkness.

    python experiments/phantom_realism.py --phantom data/phantom-test [--real_data ../shared/data]

Two numbers per angiogram, each framed at 256 px by the pipeline's processor, measured the same way on real
angiograms (the ultra-widefield triplets' early and late FFA and the arterial / venous FFA of `ffa_real`) and on
the phantom's (medians per modality and phase; the fovea on normal eyes only):

* vessel contrast: mean grey on the top 12 % of the angiogram's bright-ridge map / mean on the rest of the field
  (the vessels of `experiments/real_photo_check.py`'s checks against a real angiogram);
* fovea darkness: mean grey in a disc of the fovea's radius (0.05 of the frame; 0.015 in ultra-widefield images)
  at the point of the frame's centre darkest against its surround / mean of the field (`ffa_pipeline.anatomy.fovea_of`;
  a real angiogram's fovea is dark).

A phantom whose late vessels fade into the background, or whose fovea is faint, teaches the model a late phase and
a macula that real angiograms do not have. Ours (no library measures this).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from real_photo_check import vessels_of  # this folder is on sys.path when run as a script

from ffa_pipeline.anatomy import FOVEA_RADIUS, fovea_of
from ffa_pipeline.data import load_dataset_fresh
from ffa_pipeline.image_processing import FFAImageProcessor
from ffa_pipeline.registration import to_gray, vessel_map

RESOLUTION = 256
FIELD_LEVEL = 0.01  # darker than this is outside the field of view (or no dye yet)
PHANTOM_PHASES = ("ffa_arterial", "ffa_early", "ffa_mid", "ffa_late")
REAL_SETS = {  # name: (glob under the data root, the modality whose field of view it has)
    "UWF early": ("uwf_slo_ffa/*/*_ffa_early.png", "uwf_slo"),
    "UWF late": ("uwf_slo_ffa/*/*_ffa_late.png", "uwf_slo"),
    "ffa_real arterial": ("ffa_real/phase_identification/train/arterial_phase/*.jpg", "cfp"),
    "ffa_real venous": ("ffa_real/phase_identification/train/venous_phase/*.jpg", "cfp"),
    "ffa_real normal eyes": ("ffa_real/disease_diagnosis/train/normal/*.jpg", "cfp"),
}


def contrast_and_fovea(grey: np.ndarray, modality: str) -> tuple[float, float]:
    """(vessel contrast, fovea darkness) of one framed angiogram (HxW float in [0, 1]) of an eye imaged in
    `modality` (the fovea's size in the frame); NaN where it has no field."""
    field = grey > FIELD_LEVEL
    if field.sum() < 100:
        return float("nan"), float("nan")
    vessels = vessels_of(vessel_map(to_gray(grey), vessels_dark=False), field)
    contrast = grey[vessels].mean() / grey[field & ~vessels].mean()
    fovea = fovea_of(grey, field, FOVEA_RADIUS[modality])
    return float(contrast), float(grey[fovea].mean() / grey[field].mean())


def real_rows(root: Path) -> list[str]:
    processor = FFAImageProcessor(resolution=RESOLUTION)
    lines = []
    for name, (pattern, modality) in REAL_SETS.items():
        values = []
        for path in sorted(root.glob(pattern)):
            rgb = processor.to_float_rgb(path)
            framed = processor.apply_framing(rgb, processor.frame(rgb), RESOLUTION).mean(2)
            values.append(contrast_and_fovea(framed, modality))
        if values:
            contrast, fovea = np.nanmedian(np.array(values), axis=0)
            lines.append(f"| real: {name} | {len(values)} | {contrast:.2f} | {fovea:.2f} |")
    return lines


def phantom_rows(folder: str) -> list[str]:
    rows = load_dataset_fresh(folder)["train"]
    lines = []
    for modality in sorted(set(rows["modality"])):
        subset = rows.filter(lambda row, m=modality: row["modality"] == m)
        for phase in [phase for phase in PHANTOM_PHASES if phase in subset.column_names]:
            values, normal = [], []  # one pass: each row's images are decoded once
            for row in subset:
                contrast, fovea = contrast_and_fovea(np.asarray(row[phase].convert("L"), np.float32) / 255, modality)
                values.append(contrast)
                if row["disease"] == "normal":
                    normal.append(fovea)
            contrast = np.nanmedian(values)
            fovea = f"{np.nanmedian(normal):.2f}" if normal else "–"
            name = f"phantom {modality} {phase.removeprefix('ffa_')}"
            lines.append(f"| {name} | {len(values)} | {contrast:.2f} | {fovea} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantom", nargs="+", default=["data/phantom-test"], help="phantom dataset folders")
    parser.add_argument("--real_data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    print("| angiograms | n | vessel contrast | fovea darkness (normal eyes) |\n|---|---|---|---|")
    for line in real_rows(args.real_data):
        print(line)
    for folder in args.phantom:
        print(f"| **{folder}** | | | |")
        for line in phantom_rows(folder):
            print(line)


if __name__ == "__main__":
    main()
