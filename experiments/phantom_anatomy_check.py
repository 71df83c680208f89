"""Does the model draw the fovea and the disc where a held-out phantom eye has them, as dark / bright as the truth?

    python experiments/phantom_anatomy_check.py [--model assets/ffa-default] [--num_eyes 8] [--modality cfp]

The phantom twin of `experiments/real_photo_check.py`, with exact anatomy: normal eyes of `data/phantom-test`
(`bash experiments/evaluate_default.sh` draws it) in one modality (colour photos by default), at the checkpoint's
default settings; an output drawn at a larger side for its modality is shrunk to the phantom's frame.

* fovea: mean intensity in a disc of the modality's fovea radius (`FOVEA_RADIUS`: 0.05 x the frame for a photo)
  around the true fovea / mean in the field of view, for the output and for the true angiogram (< 1: dark);
* disc: distance from the true disc centre to the output's brightest point (after a blur of 0.02 x the frame), as a
  fraction of the frame's side.

Ours (not a library's): no library measures where a generated angiogram puts the fovea and the disc.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from real_photo_check import brightest_point  # this folder is on sys.path when run as a script

from ffa_pipeline import load_default_pipeline
from ffa_pipeline.anatomy import FOVEA_RADIUS
from ffa_pipeline.data import load_dataset_fresh
from ffa_pipeline.vocab import MODALITIES


def fovea_ratio(image: np.ndarray, fovea: tuple[float, float], field: np.ndarray, radius: float) -> float:
    side = image.shape[0]
    yy, xx = np.mgrid[:side, :side]
    around = (xx - fovea[0]) ** 2 + (yy - fovea[1]) ** 2 <= (radius * side) ** 2
    return float(image[around & field].mean() / image[field].mean())


def disc_offset(image: np.ndarray, disc: tuple[float, float], field: np.ndarray) -> float:
    y, x = brightest_point(image, field)
    return float(np.hypot(x - disc[0], y - disc[1]) / image.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded default model")
    parser.add_argument("--data_dir", default="data/phantom-test")
    parser.add_argument("--num_eyes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modality", default="cfp", choices=MODALITIES)
    args = parser.parse_args()
    pipe = load_default_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    rows = load_dataset_fresh(args.data_dir)["train"]
    rows = rows.filter(lambda row: row["disease"] == "normal" and row["modality"] == args.modality)
    rows = rows.select(range(min(args.num_eyes, len(rows))))
    fields = [np.asarray(row["source_image"].convert("RGB")).max(axis=2) > 10 for row in rows]
    report = {}
    for phase in ("early", "late"):
        values = {"fovea_output": [], "fovea_truth": [], "disc_offset_output": [], "disc_offset_truth": []}
        for row, field in zip(rows, fields):
            fovea, disc = (row["fovea_x"], row["fovea_y"]), (row["disc_x"], row["disc_y"])
            truth = np.asarray(row[f"ffa_{phase}"].convert("L"), np.float32) / 255.0
            output = pipe(row["source_image"], modality=args.modality, disease="normal", phase=phase,
                          output_type="np", output_size=truth.shape,
                          generator=torch.Generator().manual_seed(args.seed)).images[0, ..., 0]
            for name, image in (("output", output), ("truth", truth)):
                values[f"fovea_{name}"].append(fovea_ratio(image, fovea, field, FOVEA_RADIUS[args.modality]))
                values[f"disc_offset_{name}"].append(disc_offset(image, disc, field))
        report[phase] = {name: round(float(np.mean(v)), 3) for name, v in values.items()} | {"eyes": len(rows)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
