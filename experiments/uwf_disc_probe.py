"""Does a model draw the disc of an ultra-widefield eye it has not seen, from a rendered source as from the real SLO?

    python experiments/uwf_disc_probe.py --models assets/ffa-default runs/ffa-uwf512-disc [--output_dir DIR]

For a train eye and a test eye of `../shared/data/uwf_slo_ffa`, three sources of the same eye: its real SLO, the
source `train/make_angiogram_pairs.py` renders from its early angiogram, and that render with a real SLO's bright
disc (`--optic_disc`). Each model draws the early phase (seed 0, its default settings); the figure is the output's
mean brightness within 0.02 of the side around the early angiogram's disc (`optic_disc_centre`) over
the mean within 0.08 of the side (> 1: a bright disc). A model that draws the disc of the train eye's render but not
the test eye's has learnt the train eyes' discs, not what a disc looks like (experiments/results/uwf512_probe.md).
The real SLO is framed like its angiogram but not registered to it: its figure is rougher.

Ours (not a library's): a diagnostic of this project's UWF renders.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train"))
from make_angiogram_pairs import LAYOUTS, load_angiogram, optic_disc_centre, photo_from_angiogram  # noqa: E402

from ffa_pipeline import FFADiffusionPipeline  # noqa: E402

EYES = (("train", "2"), ("test", "10"))
SIDE = 768  # the side the UWF renders are made at (train_default.sh)


def sources(root: Path, split: str, eye: str) -> tuple[dict[str, np.ndarray], tuple[float, float]]:
    """The eye's three sources (HxWx3 float in [0, 1]) and its early angiogram's disc as fractions (y, x)."""
    angiogram, slo = load_angiogram(root / split / f"{eye}_ffa_early.png", "uwf_triplets", SIDE)
    y, x = optic_disc_centre(angiogram, np.ones(angiogram.shape, bool))
    uwf = LAYOUTS["uwf_triplets"]
    return {"real SLO": slo,
            "render": photo_from_angiogram(angiogram, uwf)[0],
            "render, bright disc": photo_from_angiogram(angiogram, dataclasses.replace(uwf, optic_disc=True))[0]}, \
        (y / SIDE, x / SIDE)


def disc_brightness(angiogram: np.ndarray, disc: tuple[float, float]) -> float:
    side = angiogram.shape[0]
    yy, xx = np.mgrid[:side, :side]
    distance = np.hypot(yy - disc[0] * side, xx - disc[1] * side) / side
    return float(angiogram[distance <= 0.02].mean() / angiogram[distance <= 0.08].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["assets/ffa-default"])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/uwf_slo_ffa"))
    parser.add_argument("--output_dir", type=Path, default=Path("runs/uwf_disc_probe"))
    args = parser.parse_args()
    pipes = {model: FFADiffusionPipeline.from_pretrained(model) for model in args.models}
    report = {}
    for split, eye in EYES:
        eye_sources, disc = sources(args.data, split, eye)
        for name, source in eye_sources.items():
            image = PIL.Image.fromarray((source * 255).round().astype(np.uint8))
            for model, pipe in pipes.items():
                output = pipe(image, modality="uwf_slo", disease="unknown", phase="early",
                              generator=torch.Generator().manual_seed(0), output_size="input").images[0]
                figure = disc_brightness(np.asarray(output.convert("L"), np.float32), disc)
                report.setdefault(f"{split} eye {eye}, {name}", {})[model] = figure
                print(f"{split} eye {eye}, {name}, {model}: disc / around {figure:.2f}", flush=True)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "uwf_disc_probe.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
