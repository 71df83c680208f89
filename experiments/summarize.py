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


def pooled(groups: dict, by: str) -> dict:
    """Pool `phase/modality` groups (written by `evaluate.py --per_modality`) by one of the two keys.

    Means are weighted by the number of pairs; standard deviations are not pooled (not shown here)."""
    position = {"phase": 0, "modality": 1}[by]
    totals: dict = {}
    for name, stats in groups.items():
        key = name.split("/")[position]
        total = totals.setdefault(key, {"n": 0, **{metric: [0.0, 0] for metric in METRICS}})
        total["n"] += stats["n"]
        for metric in METRICS:
            if stats[metric]["mean"] is not None:
                total[metric][0] += stats[metric]["mean"] * stats[metric]["n"]
                total[metric][1] += stats[metric]["n"]
    return {key: {"n": total["n"], **{metric: {"mean": total[metric][0] / total[metric][1] if total[metric][1]
                                                else None} for metric in METRICS}}
            for key, total in totals.items()}


def rows_of(label: str, method: dict, by: str | None = None) -> list[list[str]]:
    rows = []
    groups = pooled(method["phases"], by) if by else method["phases"]
    for phase, stats in groups.items():
        cells = [f"{stats[key]['mean']:{digits}}" if stats[key]["mean"] is not None else "–"
                 for key, (_, digits) in METRICS.items()]
        seconds = method.get("median_seconds_per_image")
        rows.append([label, phase, str(stats["n"]), *cells, f"{seconds:.3g}" if seconds is not None else "–"])
    return rows


def summarize(runs: Sequence[tuple[str, Path]], by: str | None = None) -> str:
    """Markdown table: one block of rows per run (its diffusion model), then the baselines once.

    `by`: pool per-modality runs by "phase" or "modality"."""
    rows, baselines = [], {}
    for label, folder in runs:
        report = json.loads((folder / "metrics.json").read_text())
        rows += rows_of(label, report["methods"]["diffusion"], by)
        for key, method in report["methods"].items():
            if key != "diffusion":
                baselines.setdefault(key, method)
    for method in baselines.values():
        rows += rows_of(f"baseline: {method['label']}", method, by)
    header = ["run", by or "phase", "n", *(name for name, _ in METRICS.values()), "s / image"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=EVAL_DIR")
    parser.add_argument("--by", choices=["phase", "modality"], default=None,
                        help="pool the groups of an `evaluate.py --per_modality` run by phase or by modality")
    args = parser.parse_args(argv)
    runs = []
    for item in args.runs:
        label, sep, folder = item.rpartition("=")
        if not sep or not Path(folder, "metrics.json").is_file():
            parser.error(f"{item!r}: expected LABEL=EVAL_DIR with EVAL_DIR/metrics.json")
        runs.append((label, Path(folder)))
    sys.stdout.write(summarize(runs, args.by))


if __name__ == "__main__":
    main()
