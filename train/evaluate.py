#!/usr/bin/env python
"""Evaluate an FFADiffusionPipeline against ground-truth angiograms, beside baselines run on the same images.

Every evaluation pair (a source image and its registered angiogram at one phase) is scored with
`ffa_pipeline.metrics`: PSNR, SSIM, MS-SSIM, L1, the mean error inside each lesion type's mask, and the vessel AUC
(the output's grey level as a vessel detector against the vessel mask, inside the source's field of view). Methods:
- the diffusion model (`--scheduler`, `--num_inference_steps`, `--image_guidance_scale`, `--label_guidance_scale`);
- `--baselines`: `inverted_green` (1 - the source's green channel, contrast-stretched) and `pix2pix` (a small
  pix2pix-style U-Net trained in this run on the training split with the diffusion run's step budget, or loaded
  with `--pix2pix_checkpoint`);
- `--steps_sweep` x `--sweep_schedulers`: quality and median seconds per image against the number of steps.
Writes `metrics.json` and `metrics.md` (markdown tables) to `--output_dir`.

Example, phantom data (wide layout, the default column flags):
    python train/evaluate.py --model ffa-model --train_data_dir phantom --max_samples 50 \
        --baselines inverted_green pix2pix --steps_sweep 2 4 8 16 32 50 --sweep_schedulers ddim dpm++ unipc \
        --output_dir ffa-eval
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from datasets import Image as ImageFeature
from tqdm.auto import tqdm

from ffa_pipeline import FFADiffusionPipeline
from ffa_pipeline.baselines import Pix2PixUNet, inverted_green, train_pix2pix
from ffa_pipeline.data import (
    ColumnSpec,
    PairedFFADataset,
    check_columns,
    decode_image,
    load_dataset_fresh,
    resolve_labels,
)
from ffa_pipeline.image_processing import FFAImageProcessor
from ffa_pipeline.metrics import MASK_THRESHOLD, evaluate_pair, ms_ssim_scales
from ffa_pipeline.pipeline_ffa import SCHEDULERS, make_scheduler

logger = logging.getLogger(__name__)

BASELINES = ("inverted_green", "pix2pix")
METRICS = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "ms_ssim": "MS-SSIM ↑", "l1": "L1 ↓", "vessel_auc": "vessel AUC ↑"}
SECONDS_FORMAT = ".3g"
DEFAULT_PIX2PIX_STEPS = 1000  # when neither --pix2pix_steps nor the model's train_log.jsonl says otherwise


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="FFADiffusionPipeline folder or Hub id.")
    parser.add_argument("--device", default=None, help="Default: cuda when available, else cpu.")

    data = parser.add_argument_group("data (column flags as in train_ffa.py; defaults: the phantom's wide layout)")
    data.add_argument("--dataset_name", help="Hub dataset id or local dataset folder (datasets.load_dataset).")
    data.add_argument("--dataset_config_name", default=None)
    data.add_argument("--train_data_dir", help="Local folder with the dataset's files (parquet / arrow / csv).")
    data.add_argument("--split", default=None, help="Default: 'test' if the dataset has one, else 'train'.")
    data.add_argument("--source_image_column", default="source_image")
    data.add_argument("--target_image_column", default="ffa_early,ffa_late", help="One column, or a comma list.")
    data.add_argument("--phase_column", default="ffa_early_seconds,ffa_late_seconds",
                      help="Names or seconds; one per target column.")
    data.add_argument("--modality_column", default="modality", help="Empty string: use --modality for all rows.")
    data.add_argument("--modality", default=None, help="The modality of every row when there is no column.")
    data.add_argument("--disease_column", default="disease", help="Empty string: every row is 'unknown'.")
    data.add_argument("--vessel_mask_column", default="vessel_mask",
                      help="Vessel mask image (0/255) for the vessel AUC; skipped if the dataset has no such column.")
    data.add_argument("--lesion_mask_prefix", default="mask_",
                      help="Image columns named <prefix><lesion type> are lesion masks (empty string: none).")
    data.add_argument("--max_samples", type=int, default=None, help="Evaluate the first N rows (each gives one "
                      "pair per target column).")
    data.add_argument("--resolution", type=int, default=None,
                      help="Generate and score at this side. Default: score at the model's own resolution, each "
                      "output generated at the checkpoint's side for its modality (pipe.resolution_for) and resized.")
    data.add_argument("--per_modality", action="store_true",
                      help="One table row per method x phase x modality (default: modalities pooled).")

    generation = parser.add_argument_group("diffusion model")
    generation.add_argument("--num_inference_steps", type=int, default=None, help="Default: the checkpoint's own.")
    generation.add_argument("--scheduler", choices=list(SCHEDULERS), default=None,
                            help="Default: the checkpoint's own scheduler.")
    generation.add_argument("--image_guidance_scale", type=float, default=None, help="Default: the checkpoint's own.")
    generation.add_argument("--label_guidance_scale", type=float, default=None, help="Default: the checkpoint's own.")
    generation.add_argument("--seed", type=int, default=0, help="Pair i is generated with seed + i.")
    generation.add_argument("--batch_size", type=int, default=1, help="Images per pipeline call (1: exact timing).")

    baselines = parser.add_argument_group("baselines")
    baselines.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES))
    baselines.add_argument("--pix2pix_checkpoint", default=None, help="A saved Pix2PixUNet folder: load, don't train.")
    baselines.add_argument("--pix2pix_train_data_dir", default=None,
                           help="Paired data to train pix2pix on (same column flags). Default: the 'train' split of "
                                "the evaluated dataset.")
    baselines.add_argument("--pix2pix_steps", type=int, default=None,
                           help="Default: the diffusion run's step count (the model's train_log.jsonl), else "
                                f"{DEFAULT_PIX2PIX_STEPS}.")
    baselines.add_argument("--pix2pix_batch_size", type=int, default=4,
                           help="Give the diffusion run's --train_batch_size (train_ffa.py's default is 4).")
    baselines.add_argument("--pix2pix_learning_rate", type=float, default=2e-4)

    sweep = parser.add_argument_group("steps-vs-quality sweep")
    sweep.add_argument("--steps_sweep", nargs="*", type=int, default=[], help="e.g. 2 4 8 16 32 50 (none: no sweep).")
    sweep.add_argument("--sweep_schedulers", nargs="+", choices=list(SCHEDULERS), default=["ddim", "dpm++", "unipc"])

    parser.add_argument("--output_dir", default="ffa-eval")
    args = parser.parse_args(argv)

    if (args.dataset_name is None) == (args.train_data_dir is None):
        parser.error("give exactly one of --dataset_name or --train_data_dir")
    positive = ["num_inference_steps", "batch_size", "max_samples", "resolution", "pix2pix_steps",
                "pix2pix_batch_size"]
    for flag in positive:
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} must be >= 1, got {value}")
    if any(steps < 1 for steps in args.steps_sweep):
        parser.error(f"--steps_sweep values must be >= 1, got {args.steps_sweep}")
    for flag in ("image_guidance_scale", "label_guidance_scale"):
        if getattr(args, flag) is not None and not getattr(args, flag) >= 0:
            parser.error(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    if "pix2pix" not in args.baselines and (args.pix2pix_checkpoint or args.pix2pix_train_data_dir):
        parser.error("--pix2pix_checkpoint / --pix2pix_train_data_dir need 'pix2pix' in --baselines")
    if args.pix2pix_checkpoint and args.pix2pix_train_data_dir:
        parser.error("give --pix2pix_checkpoint (load) or --pix2pix_train_data_dir (train), not both")
    return args


# ------------------------------------------------------------------------------------------------------------ data
@dataclass
class EvalPair:
    """One source and its ground-truth angiogram at one phase, squared at the evaluation resolution."""

    index: int
    row: int
    source_cell: dict  # the undecoded source (a full-size photo is big): the pipeline gets it whole, as a user's
    source_column: str  # call would, and finds the field of view itself
    source_square: np.ndarray  # RxRx3 in [0, 1], framed exactly as the pipeline frames the source
    field_of_view: np.ndarray  # RxR bool
    target: np.ndarray  # RxR grey in [0, 1]
    modality: str
    disease: str
    phase_seconds: float
    phase: str  # the nearest named phase of the model, for grouping
    vessel_mask: np.ndarray | None = None
    lesion_masks: dict[str, np.ndarray] = field(default_factory=dict)

    def source(self) -> np.ndarray:
        return decode_image(self.source_cell, self.row, self.source_column)


def load_splits(dataset_name: str | None, config_name: str | None, data_dir: str | None) -> DatasetDict:
    """All splits, read as train_ffa.py reads its data."""
    if dataset_name is not None:
        return load_dataset_fresh(dataset_name, config_name)
    return load_dataset_fresh(data_dir)


def choose_split(splits: DatasetDict, requested: str | None) -> str:
    """--split, or 'test' when there is one (held-out eyes), else 'train'."""
    if requested is None:
        return "test" if "test" in splits else "train"
    if requested not in splits:
        raise ValueError(f"--split {requested!r} is not in the dataset; its splits: {list(splits)}")
    return requested


def column_spec(args: argparse.Namespace) -> ColumnSpec:
    return ColumnSpec.from_flags(args.source_image_column, args.target_image_column, args.phase_column,
                                 args.modality_column, args.disease_column, None)


def image_columns(dataset: Dataset, names: list[str]) -> Dataset:
    """Keep image cells undecoded, as `decode_image` (and the trainer) reads them."""
    for name in names:
        if isinstance(dataset.features[name], ImageFeature):
            dataset = dataset.cast_column(name, ImageFeature(decode=False))
    return dataset


def lesion_mask_columns(dataset: Dataset, prefix: str) -> dict[str, str]:
    """{lesion type: column} for every image column named <prefix><type>."""
    if not prefix:
        return {}
    return {name.removeprefix(prefix): name for name, feature in dataset.features.items()
            if name.startswith(prefix) and isinstance(feature, ImageFeature)}


def nearest_phase(seconds: float, phases: dict[str, float]) -> str:
    """The model's named phase closest in log-time (30 s and 45 s are both 'early'), for the table rows."""
    return min(phases, key=lambda name: abs(math.log1p(phases[name]) - math.log1p(seconds)))


def build_pairs(dataset: Dataset, spec: ColumnSpec, labels: dict[str, np.ndarray], pipe: FFADiffusionPipeline,
                resolution: int, vessel_column: str | None, lesion_columns: dict[str, str]) -> list[EvalPair]:
    """Every (row, target column) with a phase, with its masks, framed around the source's field of view."""
    dataset = image_columns(dataset, [spec.source, *spec.targets, *([vessel_column] if vessel_column else []),
                                      *lesion_columns.values()])
    processor = FFAImageProcessor(resolution=resolution, min_size=8)
    pairs = []
    for row in tqdm(range(len(dataset)), desc="loading pairs"):
        record = dataset[row]
        source = decode_image(record[spec.source], row, spec.source)
        framing = processor.frame(source)

        def square(image: np.ndarray, framing=framing) -> np.ndarray:
            return processor.apply_framing(image, framing, resolution)

        def mask(column: str, record=record, row=row) -> np.ndarray:
            return square(decode_image(record[column], row, column))[..., 0] >= MASK_THRESHOLD

        field_of_view = processor.find_field_of_view(source)[0].astype(np.float32)[..., None]
        shared = {
            "row": row, "source_cell": record[spec.source], "source_column": spec.source,
            "source_square": square(source), "field_of_view": square(field_of_view)[..., 0] >= MASK_THRESHOLD,
            "modality": pipe.modalities[labels["modality"][row]], "disease": pipe.diseases[labels["disease"][row]],
            "vessel_mask": mask(vessel_column) if vessel_column else None,
            "lesion_masks": {lesion: m for lesion, column in lesion_columns.items() if (m := mask(column)).any()},
        }
        for j, column in enumerate(spec.targets):
            seconds = float(labels["phase_seconds"][row, j])
            if not np.isfinite(seconds):
                continue
            target = square(decode_image(record[column], row, column)).mean(axis=2)
            pairs.append(EvalPair(index=len(pairs), target=target, phase_seconds=seconds,
                                  phase=nearest_phase(seconds, pipe.phases), **shared))
    return pairs


# ------------------------------------------------------------------------------------------------------ methods
Predictor = Callable[[list[EvalPair]], list[np.ndarray]]


def diffusion_predictor(pipe: FFADiffusionPipeline, args: argparse.Namespace, resolution: int,
                        num_inference_steps: int) -> Predictor:
    def predict(pairs: list[EvalPair]) -> list[np.ndarray]:
        # one generator per pair: its noise does not depend on which batch it lands in
        generators = [torch.Generator().manual_seed(args.seed + pair.index) for pair in pairs]
        output = pipe([p.source() for p in pairs], modality=[p.modality for p in pairs],
                      disease=[p.disease for p in pairs], phase=[p.phase_seconds for p in pairs],
                      num_inference_steps=num_inference_steps, image_guidance_scale=args.image_guidance_scale,
                      label_guidance_scale=args.label_guidance_scale, generator=generators, output_type="np",
                      height=args.resolution, width=args.resolution, output_size=(resolution, resolution))
        return list(output.images[..., 0])

    return predict


def inverted_green_predictor(pairs: list[EvalPair]) -> list[np.ndarray]:
    return [inverted_green(p.source_square, p.field_of_view) for p in pairs]


def pix2pix_predictor(model: Pix2PixUNet, device: str) -> Predictor:
    @torch.no_grad()
    def predict(pairs: list[EvalPair]) -> list[np.ndarray]:
        source = torch.from_numpy(np.stack([p.source_square for p in pairs])).permute(0, 3, 1, 2) * 2 - 1
        seconds = torch.tensor([p.phase_seconds for p in pairs])
        angiograms = model(source.to(device), seconds.to(device))[:, 0]
        return list(((angiograms + 1) / 2).clamp(0, 1).cpu().numpy())

    return predict


def score(predict: Predictor, pairs: list[EvalPair], batch_size: int, description: str,
          per_modality: bool = False) -> tuple[list[dict], float]:
    """Per-pair metrics of one method, and its median seconds per image (over batches)."""
    records, seconds_per_image = [], []
    for start in tqdm(range(0, len(pairs), batch_size), desc=description):
        batch = pairs[start : start + batch_size]
        began = time.perf_counter()
        predictions = predict(batch)
        seconds_per_image.append((time.perf_counter() - began) / len(batch))
        for pair, prediction in zip(batch, predictions):
            metrics = evaluate_pair(prediction, pair.target, masks=pair.lesion_masks, vessel_mask=pair.vessel_mask,
                                    region=pair.field_of_view)
            group = f"{pair.phase}/{pair.modality}" if per_modality else pair.phase
            records.append({"group": group, "phase_seconds": pair.phase_seconds, **metrics})
    return records, float(np.median(seconds_per_image))


def summary(values: list[float]) -> dict:
    """Mean, standard deviation and count of the defined (non-NaN) values."""
    defined = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if defined.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {"mean": float(defined.mean()), "std": float(defined.std(ddof=1)) if defined.size > 1 else 0.0,
            "n": int(defined.size)}


def aggregate(records: list[dict]) -> dict:
    """Records of one group of pairs -> {metric: summary}, "lesion_error": {type: summary}, n, mean seconds."""
    result = {"n": len(records), "phase_seconds": float(np.mean([r["phase_seconds"] for r in records]))}
    for metric in METRICS:
        result[metric] = summary([r.get(metric, math.nan) for r in records])
    lesion_types = dict.fromkeys(name for r in records for name in r["lesion_error"])
    result["lesion_error"] = {name: summary([r["lesion_error"].get(name, math.nan) for r in records])
                              for name in lesion_types}
    return result


def by_group(records: list[dict]) -> dict:
    """Groups (phases, or phase/modality) in time order, each aggregated."""
    groups = sorted(dict.fromkeys(r["group"] for r in records),
                    key=lambda g: min(r["phase_seconds"] for r in records if r["group"] == g))
    return {group: aggregate([r for r in records if r["group"] == group]) for group in groups}


# ------------------------------------------------------------------------------------------------------ pix2pix
def diffusion_training_steps(model: str) -> int | None:
    """The step count of the run that trained `model` (train_ffa.py's train_log.jsonl beside it), if known."""
    log = Path(model) / "train_log.jsonl"
    if not log.is_file():
        return None
    lines = log.read_text().strip().splitlines()
    return int(json.loads(lines[-1])["step"]) if lines else None


def pix2pix_baseline(args: argparse.Namespace, pipe: FFADiffusionPipeline, splits: DatasetDict, split: str,
                     resolution: int, device: str) -> tuple[Pix2PixUNet, dict]:
    """Load `--pix2pix_checkpoint`, or train a Pix2PixUNet with the diffusion run's budget (saved to output_dir)."""
    if args.pix2pix_checkpoint:
        model = Pix2PixUNet.from_pretrained(args.pix2pix_checkpoint).to(device).eval()
        return model, {"checkpoint": args.pix2pix_checkpoint}
    if args.pix2pix_train_data_dir:
        train, trained_on = load_dataset_fresh(args.pix2pix_train_data_dir)["train"], args.pix2pix_train_data_dir
    else:
        if "train" not in splits:
            raise ValueError(f"pix2pix needs training pairs: the dataset has no 'train' split ({list(splits)}); "
                             "give --pix2pix_train_data_dir or --pix2pix_checkpoint")
        train, trained_on = splits["train"], f"{args.dataset_name or args.train_data_dir} [train]"
        if split == "train":
            logger.warning("Evaluating on the training split: pix2pix (and probably the diffusion model) saw these "
                           "images in training.")
    spec = column_spec(args)
    check_columns(train, spec)
    labels = resolve_labels(train, spec, pipe.modalities, pipe.diseases, pipe.phases, args.modality)
    data = PairedFFADataset(train, spec, labels, resolution, seed=args.seed)
    steps = args.pix2pix_steps or diffusion_training_steps(args.model) or DEFAULT_PIX2PIX_STEPS
    model = train_pix2pix(data, steps=steps, batch_size=args.pix2pix_batch_size, lr=args.pix2pix_learning_rate,
                          seed=args.seed, device=device)
    saved = Path(args.output_dir) / "pix2pix"
    model.save_pretrained(saved)
    return model, {"trained_on": trained_on, "rows": len(train), "steps": steps,
                   "batch_size": args.pix2pix_batch_size, "learning_rate": args.pix2pix_learning_rate,
                   "loss": "L1 (no PatchGAN)", "saved_to": str(saved)}


# ------------------------------------------------------------------------------------------------------- report
def _json_safe(value):
    """NaN / inf (undefined metrics, PSNR of identical images) -> null, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _cell(stat: dict | float, digits: str = ".3f", with_std: bool = False) -> str:
    """'0.512 ± 0.031' (a summary) or '0.512' (a number); '–' when undefined."""
    mean = stat["mean"] if isinstance(stat, dict) else stat
    if math.isnan(mean):
        return "–"
    if with_std and stat["n"] > 1:
        return f"{mean:{digits}} ± {stat['std']:{digits}}"
    return f"{mean:{digits}}"


def _digits(metric: str) -> str:
    return ".2f" if metric == "psnr" else ".3f"



def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def _generated_at(config: dict) -> str:
    """' (generated at 512 px for uwf_slo)' where the model drew some modality at another side than the scores'."""
    other = {name: side for name, side in config.get("generated_at", {}).items() if side != config["resolution"]}
    return f" (generated at {', '.join(f'{side} px for {name}' for name, side in other.items())})" if other else ""


def markdown_report(report: dict) -> str:
    config = report["config"]
    lines = [
        "# FFA evaluation",
        "",
        f"Model `{config['model']}` on `{config['dataset']}` [{config['split']}]: {config['pairs']} pairs from "
        f"{config['rows']} rows at {config['resolution']} px{_generated_at(config)}; diffusion with "
        f"{config['scheduler']}, "
        f"{config['num_inference_steps']} steps, guidance image {config['image_guidance_scale']:g} / label "
        f"{config['label_guidance_scale']:g}, seed {config['seed']}. Mean ± sd over pairs; MS-SSIM with "
        f"{config['ms_ssim_scales']} scales; vessel AUC inside the source's field of view.",
        "",
        "## Paired metrics",
        "",
    ]
    group = "phase/modality" if config["per_modality"] else "phase"
    header = ["method", group, "n", *METRICS.values(), "s / image"]
    rows = [[method["label"], phase, str(stats["n"]), *(_cell(stats[m], _digits(m), with_std=True) for m in METRICS),
             _cell(method["median_seconds_per_image"], SECONDS_FORMAT)]
            for method in report["methods"].values() for phase, stats in method["phases"].items()]
    lines += _table(header, rows)

    lesion_types = list(dict.fromkeys(name for method in report["methods"].values()
                                      for stats in method["phases"].values() for name in stats["lesion_error"]))
    if lesion_types:
        lines += ["", "## Lesion regions: mean absolute error inside each lesion mask ↓ (pairs with the lesion)", ""]
        rows = [[method["label"], phase,
                 *(f"{_cell(stats['lesion_error'][name])} ({stats['lesion_error'][name]['n']})"
                   if name in stats["lesion_error"] else "–" for name in lesion_types)]
                for method in report["methods"].values() for phase, stats in method["phases"].items()]
        lines += _table(["method", group, *(name.replace("_", " ") for name in lesion_types)], rows)

    if report["sweep"]:
        lines += ["", "## Steps vs quality (diffusion model, all phases)", ""]
        rows = [[row["scheduler"], str(row["steps"]), *(_cell(row[m], _digits(m)) for m in METRICS),
                 _cell(row["median_seconds_per_image"], SECONDS_FORMAT)] for row in report["sweep"]]
        lines += _table(["scheduler", "steps", *METRICS.values(), "median s / image"], rows)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------- main
def run_sweep(pipe: FFADiffusionPipeline, pairs: list[EvalPair], args: argparse.Namespace, resolution: int) -> list:
    """One row per (scheduler, steps): metrics over all pairs and the median seconds per image."""
    original = pipe.scheduler
    rows = []
    for name in args.sweep_schedulers:
        pipe.scheduler = make_scheduler(name, original.config)
        for steps in args.steps_sweep:
            records, seconds = score(diffusion_predictor(pipe, args, resolution, steps), pairs, args.batch_size,
                                     f"sweep {name} {steps} steps")
            overall = aggregate(records)
            rows.append({"scheduler": name, "steps": steps, "n": overall["n"],
                         **{m: overall[m]["mean"] for m in METRICS}, "median_seconds_per_image": seconds})
    pipe.scheduler = original
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = FFADiffusionPipeline.from_pretrained(args.model).to(device)
    pipe.set_progress_bar_config(disable=True)
    resolution = pipe.check_resolution(args.resolution or pipe.default_resolution)
    args.num_inference_steps, args.image_guidance_scale, args.label_guidance_scale = pipe.sampling_settings(
        args.num_inference_steps, args.image_guidance_scale, args.label_guidance_scale
    )

    splits = load_splits(args.dataset_name, args.dataset_config_name, args.train_data_dir)
    split = choose_split(splits, args.split)
    dataset = splits[split]
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    spec = column_spec(args)
    check_columns(dataset, spec)
    labels = resolve_labels(dataset, spec, pipe.modalities, pipe.diseases, pipe.phases, args.modality)
    vessel_column = args.vessel_mask_column if args.vessel_mask_column in dataset.column_names else None
    if args.vessel_mask_column and vessel_column is None:
        logger.info(f"No column {args.vessel_mask_column!r}: no vessel AUC.")
    pairs = build_pairs(dataset, spec, labels, pipe, resolution, vessel_column,
                        lesion_mask_columns(dataset, args.lesion_mask_prefix))
    if not pairs:
        raise ValueError(f"split {split!r} has no pair with a phase in {list(spec.phases)}")

    if args.scheduler is not None:
        pipe.scheduler = make_scheduler(args.scheduler, pipe.scheduler.config)
    scheduler_name = next((name for name, kind in SCHEDULERS.items() if type(pipe.scheduler) is kind),
                          type(pipe.scheduler).__name__)
    predictors = {"diffusion": (f"diffusion ({scheduler_name}, {args.num_inference_steps} steps)",
                                diffusion_predictor(pipe, args, resolution, args.num_inference_steps))}
    extra = {}
    if "inverted_green" in args.baselines:
        predictors["inverted_green"] = ("inverted green", inverted_green_predictor)
    if "pix2pix" in args.baselines:
        model, extra["pix2pix"] = pix2pix_baseline(args, pipe, splits, split, resolution, device)
        predictors["pix2pix"] = ("pix2pix U-Net (L1)", pix2pix_predictor(model, device))

    methods = {}
    for key, (label, predict) in predictors.items():
        records, seconds = score(predict, pairs, args.batch_size, label, args.per_modality)
        methods[key] = {"label": label, "median_seconds_per_image": seconds, "phases": by_group(records)}

    report = {
        "config": {"model": args.model, "dataset": args.dataset_name or args.train_data_dir, "split": split,
                   "rows": len(dataset), "pairs": len(pairs), "resolution": resolution, "device": device,
                   "generated_at": {name: args.resolution or pipe.resolution_for(name)
                                    for name in sorted({pair.modality for pair in pairs})},
                   "scheduler": scheduler_name, "num_inference_steps": args.num_inference_steps,
                   "image_guidance_scale": args.image_guidance_scale,
                   "label_guidance_scale": args.label_guidance_scale, "seed": args.seed,
                   "per_modality": args.per_modality,
                   "ms_ssim_scales": ms_ssim_scales(resolution), **extra},
        "methods": methods,
        "sweep": run_sweep(pipe, pairs, args, resolution) if args.steps_sweep else [],
    }
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(_json_safe(report), indent=2) + "\n")
    (output_dir / "metrics.md").write_text(markdown_report(report))
    logger.info(f"Wrote {output_dir / 'metrics.json'} and {output_dir / 'metrics.md'}")
    return report


if __name__ == "__main__":
    main()
