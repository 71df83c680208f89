"""One markdown table of the real-photo figures that move with the sampling noise, over several seeds per run.

    python experiments/seed_spread.py "image guidance 2=runs/guidance-seeds/g2" "image guidance 1.5=runs/..."

Each argument is `LABEL=DIR`; DIR holds, per seed S, `rpc-seedS/real_photo_check.json`
(`experiments/real_photo_check.py --seed S`) and `eval-seedS/metrics.json` (`train/evaluate.py --seed S` on the
registered UWF test pairs, `data/uwf-registered`). With 3 real UWF test eyes and one colour photo, a per-frame
figure of one seed says little (experiments/results/uwf512_mixed.md, "Five seeds"): this counts over seeds how
often the skimage fovea, the real UWF discs and the registered foveae are found, beside the registered paired
metrics and the means over seeds of the UWF vessel figures (the output's ridges against the SLO's fine vessels,
3 eyes, and against the registered angiogram's vessels, 2 eyes; the mirrored output's in brackets). Ours (a summary
of this project's own checks).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SKIMAGE = "skimage retina (CFP)"
UWF_EYES = ("10", "7", "8")
REGISTERED = "UWF registered (early): fovea"
REGISTERED_VESSELS = "UWF registered: vessels"
REGISTERED_EYES = ("10", "8")
FOUND = 0.05  # a fovea within this fraction of the frame of the reference one is found (real_photo_check.py)
DISC_FOUND = 0.10  # a disc within this fraction of the frame of the real angiogram's is in its place
PHASES = ("early", "late")


def load_run(folder: Path, seeds: Sequence[int]) -> tuple[list[dict], list[dict]]:
    """The real-photo checks and registered evaluations of one run, one of each per seed."""
    checks, evaluations = [], []
    for seed in seeds:
        for name, into in (("rpc", checks), ("eval", evaluations)):
            path = folder / f"{name}-seed{seed}" / ("real_photo_check.json" if name == "rpc" else "metrics.json")
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run the checks of seed {seed} into {folder} first")
            into.append(json.loads(path.read_text()))
    return checks, evaluations


def span(values: Sequence[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def row(label: str, checks: list[dict], evaluations: list[dict]) -> str:
    """One table row: counts over seeds (and phases, eyes, crops) of what was found, and paired metric means."""
    fovea = [check[SKIMAGE][phase]["fovea_offset"] < FOUND for check in checks for phase in PHASES]
    darkness = [check[SKIMAGE]["early"]["fovea_darkness_as_real_angiograms"] for check in checks]
    contrast = [check[SKIMAGE]["early"]["vessel_contrast_output"] for check in checks]
    discs = {eye: sum(check[f"UWF test {eye} (SLO)"][phase]["disc_offset_vs_real"] < DISC_FOUND
                      for check in checks for phase in PHASES) for eye in UWF_EYES}
    whole = {eye: sum(check[REGISTERED][f"uwf_test_{eye}"]["whole"]["fovea_offset"] < FOUND for check in checks)
             for eye in REGISTERED_EYES}
    # the crops are whatever real_photo_check.py measured besides the whole frame (its CROPS)
    cropped = {eye: sum(view["fovea_offset"] < FOUND for check in checks
                        for name, view in check[REGISTERED][f"uwf_test_{eye}"].items() if name != "whole")
               for eye in REGISTERED_EYES}
    crops_per_seed = len(checks[0][REGISTERED][f"uwf_test_{REGISTERED_EYES[0]}"]) - 1
    paired = {(phase, metric): np.mean([e["methods"]["diffusion"]["phases"][phase][metric]["mean"]
                                        for e in evaluations])
              for phase in PHASES for metric in ("psnr", "ms_ssim")}
    fine_ridges = [[check[f"UWF test {eye} (SLO)"][phase][key] for check in checks for eye in UWF_EYES
                    for phase in PHASES]
                   for key in ("fine_vessel_ridge_auc", "fine_vessel_ridge_auc_flipped_control")]
    registered_ridges = [[check[REGISTERED_VESSELS][f"uwf_test_{eye}"][phase][key] for check in checks
                          for eye in REGISTERED_EYES for phase in PHASES]
                         for key in ("ridge_auc", "ridge_auc_flipped_control")]
    n = len(checks)
    cells = [
        label,
        f"{sum(fovea)} of {2 * n}", span(darkness), span(contrast),
        f"{sum(discs.values())} of {6 * n} ({' / '.join(str(discs[eye]) for eye in UWF_EYES)})",
        " / ".join(f"{whole[eye]} of {n}, {cropped[eye]} of {crops_per_seed * n}" for eye in REGISTERED_EYES),
        " / ".join(f"{paired[(phase, 'psnr')]:.2f}" for phase in PHASES),
        " / ".join(f"{paired[(phase, 'ms_ssim')]:.3f}" for phase in PHASES),
        *(f"{np.mean(values):.3f} ({np.mean(mirrored):.3f})" for values, mirrored in (fine_ridges, registered_ridges)),
    ]
    return "| " + " | ".join(cells) + " |"


def table(runs: Sequence[tuple[str, Path]], seeds: Sequence[int]) -> str:
    header = ["run", "skimage fovea found (early + late)",
              "skimage fovea darkness as on real angiograms, early (real normal 0.37)",
              "skimage vessel contrast, early", "UWF disc within 0.10 (eyes 10 / 7 / 8)",
              "registered fovea found, eye 10 / eye 8 (whole frame, 3 crops)", "registered PSNR early / late (dB)",
              "registered MS-SSIM early / late", "UWF ridges vs the SLO's fine vessels (mirrored)",
              "registered UWF vessel ridges (mirrored)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [row(label, *load_run(folder, seeds)) for label, folder in runs]
    return "\n".join(lines)


def parse_run(text: str) -> tuple[str, Path]:
    label, sep, folder = text.partition("=")
    if not sep or not label or not folder:
        raise argparse.ArgumentTypeError(f"expected LABEL=DIR, got {text!r}")
    return label, Path(folder)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=parse_run, metavar="LABEL=DIR")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    print(table(args.runs, args.seeds))


if __name__ == "__main__":
    main()
