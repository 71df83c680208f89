"""One markdown table from several `train/evaluate.py` runs (the experiments' tables in the README).

    python experiments/summarize.py "LoRA, 4 pairs=runs/experiments/lora-4/eval" \
        "scratch, 4 pairs=runs/experiments/scratch-4/eval"

Each argument is `LABEL=EVAL_DIR`; the diffusion model's rows of `EVAL_DIR/metrics.json` are listed under LABEL,
and the baselines of the first run that has them are listed once at the end (same images in every run).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

METRICS = {"psnr": ("PSNR (dB) ↑", ".2f"), "ssim": ("SSIM ↑", ".3f"), "ms_ssim": ("MS-SSIM ↑", ".3f"),
           "l1": ("L1 ↓", ".3f"), "vessel_auc": ("vessel AUC ↑", ".3f")}


def rows_of(label: str, method: dict) -> list[list[str]]:
    rows = []
    for phase, stats in method["phases"].items():
        cells = [f"{stats[key]['mean']:{digits}}" if stats[key]["mean"] is not None else "–"
                 for key, (_, digits) in METRICS.items()]
        rows.append([label, phase, str(stats["n"]), *cells])
    return rows


def summarize(runs: Sequence[tuple[str, Path]]) -> str:
    """Markdown table: one block of rows per run (its diffusion model), then the baselines once."""
    rows, baselines = [], {}
    for label, folder in runs:
        report = json.loads((folder / "metrics.json").read_text())
        rows += rows_of(label, report["methods"]["diffusion"])
        for key, method in report["methods"].items():
            if key != "diffusion":
                baselines.setdefault(key, method)
    for method in baselines.values():
        rows += rows_of(f"baseline: {method['label']}", method)
    header = ["run", "phase", "n", *(name for name, _ in METRICS.values())]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=EVAL_DIR")
    args = parser.parse_args(argv)
    runs = []
    for item in args.runs:
        label, sep, folder = item.rpartition("=")
        if not sep or not Path(folder, "metrics.json").is_file():
            parser.error(f"{item!r}: expected LABEL=EVAL_DIR with EVAL_DIR/metrics.json")
        runs.append((label, Path(folder)))
    sys.stdout.write(summarize(runs))


if __name__ == "__main__":
    main()
