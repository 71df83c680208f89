"""Turn real paired retinal data into the Hugging Face dataset that `train/train_ffa.py` reads.

One row per (source image, FFA) pair, long format: `eye_id`, `source_image`, `target_image` (grey, *registered
onto the source frame*), `modality`, `disease`, `phase` (float32 seconds after injection), `phase_name`,
`registration_transform`, `registration_inliers`, `registration_error_px`, `source_path`, `target_path`.
The dataset is written as one parquet shard per split under `<output_dir>/data/` with a dataset card
`README.md`, reads back with `datasets.load_dataset(output_dir)`, and can be pushed with `--push_to_hub`.

Layouts (`--layout`):

* `misp`: the Isfahan MISP fundus/fluorescein-angiogram set (Hajeb Mohammad Alipour et al. 2012; 720x576,
  30 normal + 29 abnormal pairs) with folders `NORMAL/` and `ABNORMAL/`, each pair named `N.jpg` and `N-N.jpg`.
  The naming flips between the two folders: as far as we know the published layout has the fundus as `N.jpg`
  (angiogram `N-N.jpg`) in `NORMAL/` and the other way round in `ABNORMAL/`. That was not verifiable here, so
  the script does not rely on it: for every pair it tells the fundus (colour, red-dominant, high chroma) from the
  angiogram (grey, R~G~B) by content, reports how many pairs followed which naming in each folder, and leaves
  out a pair whose two images are both colour or both grey. Disease: `NORMAL` -> `normal`, `ABNORMAL` ->
  `diabetic_retinopathy`. MISP does not give the angiogram phase; its angiograms are mostly venous/recirculation
  frames, so the phase defaults to `mid` (change it with `--phase`).
* `uwf_triplets`: ultra-widefield triplets `<id>_slo.png`, `<id>_ffa_early.png`, `<id>_ffa_late.png` (e.g.
  `../shared/data/uwf_slo_ffa/{train,test}/`): two rows per eye (early and late), modality `uwf_slo`, disease
  `--disease` (default `unknown`). The folders `train/` and `test/` become two splits unless `--split` is given.
* `csv`: a CSV with columns `source_path,target_path,modality,disease,phase` (phase: a name or seconds; relative
  paths are relative to the CSV's folder; optional column `eye_id`).

Registration (see `ffa_pipeline/registration.py`): the target is registered to the source on vessel maps and
warped onto the source frame. `registration_transform` is the row-major 3x3 matrix that maps **target pixel
coordinates onto source pixel coordinates**, both in the original files (before `--resolution`). A pair whose
registration fails (too few / too low a ratio of inliers, degenerate transform) is reported and left out, as is
a pair with an unreadable image; both are listed on stdout and in the card. With `--registration none` the
target is only resized to the source size (the transform is that resize: identity for equal sizes) and the
inlier ratio and error are NaN (not measured).

Example:
    python train/prepare_dataset.py --layout uwf_triplets --input ../shared/data/uwf_slo_ffa \
        --output_dir data/uwf_slo_ffa --license mit --check_dir /tmp/registration_check
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
from datasets import Features, Image, List, Value

from ffa_pipeline.data import write_parquet_splits
from ffa_pipeline.image_processing import is_grey
from ffa_pipeline.registration import register_pair, registration_overlay, resize_matrix, warp_to
from ffa_pipeline.vocab import DISEASES, MODALITIES, PHASES, phase_to_seconds

LAYOUTS = ("misp", "uwf_triplets", "csv")
CSV_COLUMNS = ("source_path", "target_path", "modality", "disease", "phase")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
MISP_FOLDERS = {"normal": "normal", "abnormal": "diabetic_retinopathy"}
MISP_DEFAULT_PHASE = "mid"
UWF_PHASES = ("early", "late")
# Which way the source's vessels contrast: dark in a colour photo and an SLO, bright in OCT angiography en-face.
SOURCE_VESSELS_DARK = {"cfp": True, "uwf_slo": True, "oct": False}

FEATURES = Features(
    {
        "eye_id": Value("string"),
        "source_image": Image(),
        "target_image": Image(),
        "modality": Value("string"),
        "disease": Value("string"),
        "phase": Value("float32"),
        "phase_name": Value("string"),
        "registration_transform": List(Value("float32"), length=9),
        "registration_inliers": Value("float32"),
        "registration_error_px": Value("float32"),
        "source_path": Value("string"),
        "target_path": Value("string"),
    }
)


@dataclass
class PairSpec:
    """One (source, FFA) pair found in the input, before its images are read."""

    eye_id: str
    source_path: Path
    target_path: Path
    modality: str
    disease: str
    phase: str | float
    split: str
    label: str  # where the pair came from, for messages: a CSV row, a file name


@dataclass
class PairOutcome:
    """What happened to a pair: its registration numbers, and why it was left out (empty when kept)."""

    spec: PairSpec
    inlier_ratio: float = math.nan
    error_px: float = math.nan
    inliers: int = 0
    matches: int = 0
    rejected: str = ""
    row: dict = field(default_factory=dict, repr=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", required=True, choices=LAYOUTS, help="How the input is organised.")
    parser.add_argument("--input", required=True, type=Path, help="Input folder (misp, uwf_triplets) or CSV file.")
    parser.add_argument("--output_dir", required=True, type=Path, help="Where the dataset (parquet + card) goes.")
    parser.add_argument("--resolution", type=int, default=None,
                        help="Optional: pad to square and resize both images to this size after registration.")
    parser.add_argument("--registration", default="affine", choices=("affine", "homography", "none"),
                        help="Transform model fitted to register the FFA onto the source, or none.")
    parser.add_argument("--no_register", dest="registration", action="store_const", const="none",
                        help="Same as --registration none (the pairs are already aligned).")
    parser.add_argument("--min_inlier_ratio", type=float, default=0.2,
                        help="Reject a registration whose verified inlier ratio is lower (on the real SLO/FFA "
                             "triplets: visually correct fits 0.23-0.43, wrong ones <= 0.09, 0.14-0.18 unsure).")
    parser.add_argument("--min_inliers", type=int, default=20, help="Reject a registration with fewer inliers.")
    parser.add_argument("--modality", choices=MODALITIES, default=None,
                        help="Override the modality of every pair (default: cfp for misp, uwf_slo for "
                             "uwf_triplets, the CSV column).")
    parser.add_argument("--disease", choices=DISEASES, default=None,
                        help="Override the disease of every pair (default: the MISP folder, unknown for "
                             "uwf_triplets, the CSV column).")
    parser.add_argument("--phase", type=_phase_flag, default=None,
                        help=f"Override the FFA phase: a name {sorted(PHASES)} or seconds (misp default: "
                             f"{MISP_DEFAULT_PHASE}).")
    parser.add_argument("--split", default=None,
                        help="Put every pair in this split (default: the train/test folders of uwf_triplets, "
                             "else train).")
    parser.add_argument("--license", default="unknown", help="License of the data, for the dataset card.")
    parser.add_argument("--check_dir", type=Path, default=None,
                        help="Optional: write a vessel overlay PNG per registered pair here, for a visual check.")
    parser.add_argument("--push_to_hub", default=None, metavar="REPO", help="Optional: also push to this Hub repo.")
    args = parser.parse_args(argv)
    if args.resolution is not None and args.resolution < 8:
        parser.error(f"--resolution must be at least 8, got {args.resolution}")
    if not args.input.exists():
        parser.error(f"--input {str(args.input)!r} does not exist")
    return args


def _phase_flag(value: str) -> str | float:
    try:
        phase_to_seconds(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value if value in PHASES else float(value)


# ----------------------------------------------------------------------------------------------- layouts


def collect_misp(root: Path) -> tuple[list[PairSpec], list[PairOutcome]]:
    """MISP pairs from `NORMAL/` and `ABNORMAL/`; which file is the fundus is decided by content (see module doc)."""
    folders = {path.name.lower(): path for path in root.iterdir() if path.is_dir()}
    if not any(name in folders for name in MISP_FOLDERS):
        raise ValueError(f"--input {str(root)!r}: no NORMAL/ or ABNORMAL/ folder (found {sorted(folders)})")
    pairs, problems = [], []
    for name, disease in MISP_FOLDERS.items():
        if name not in folders:
            continue
        plain, dashed = {}, {}
        for path in sorted(folders[name].iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if match := re.fullmatch(r"(\d+)", path.stem):
                plain[match[1]] = path
            elif match := re.fullmatch(r"(\d+)-\d+", path.stem):
                dashed[match[1]] = path
        for number in sorted(set(plain) | set(dashed), key=int):
            spec = PairSpec(f"misp_{name}_{number}", plain.get(number), dashed.get(number), "cfp", disease,
                            MISP_DEFAULT_PHASE, "train", f"{folders[name].name}/{number}")
            if spec.source_path is None or spec.target_path is None:
                present = spec.source_path or spec.target_path
                problems.append(PairOutcome(spec, rejected=f"incomplete pair: only {present.name}"))
                continue
            pairs.append(spec)
    return pairs, problems


def orient_misp_pair(spec: PairSpec, plain: np.ndarray, dashed: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(fundus, angiogram, naming found) of a MISP pair `N` / `N-N`, told apart by colour; swaps `spec`'s paths.

    Raises ValueError when both images are colour or both grey.
    """
    plain_colour, dashed_colour = not is_grey(plain, tolerance=8), not is_grey(dashed, tolerance=8)
    if plain_colour == dashed_colour:
        kind = "colour" if plain_colour else "grey"
        raise ValueError(f"both images are {kind}: cannot tell the fundus from the angiogram")
    if plain_colour:
        return plain, dashed, "fundus N, angiogram N-N"
    spec.source_path, spec.target_path = spec.target_path, spec.source_path
    return dashed, plain, "fundus N-N, angiogram N"


def collect_uwf_triplets(root: Path) -> tuple[list[PairSpec], list[PairOutcome]]:
    """Two pairs (early, late) per `<id>_slo.png`; a split per folder (`train/`, `test/`)."""
    slo_paths = sorted(root.rglob("*_slo.png"))
    if not slo_paths:
        raise ValueError(f"--input {str(root)!r}: no <id>_slo.png file")
    pairs, problems = [], []
    for slo_path in slo_paths:
        eye = slo_path.name[: -len("_slo.png")]
        split = slo_path.parent.name if slo_path.parent != root else "train"
        for phase in UWF_PHASES:
            target = slo_path.with_name(f"{eye}_ffa_{phase}.png")
            spec = PairSpec(f"uwf_{split}_{eye}", slo_path, target, "uwf_slo", "unknown", phase, split,
                            f"{slo_path.parent.name}/{eye} {phase}")
            if target.exists():
                pairs.append(spec)
            else:
                problems.append(PairOutcome(spec, rejected=f"missing {target.name}"))
    return pairs, problems


def collect_csv(csv_path: Path) -> tuple[list[PairSpec], list[PairOutcome]]:
    """Pairs from a CSV; every label is checked up front and an error names the row, the value and the choices."""
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in CSV_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; found {columns}; expected {list(CSV_COLUMNS)}")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    pairs = []
    for number, row in enumerate(rows, start=1):
        where = f"{csv_path.name} row {number} (line {number + 1})"
        _check_value(row["modality"], MODALITIES, where, "modality")
        disease = row["disease"] or "unknown"
        _check_value(disease, DISEASES, where, "disease")
        try:
            phase_to_seconds(row["phase"])
        except ValueError as error:
            raise ValueError(f"{where}: column 'phase' has {row['phase']!r}: {error}") from None
        for column in ("source_path", "target_path"):
            if not row[column]:
                raise ValueError(f"{where}: column {column!r} is empty")
        source, target = (_resolve(csv_path.parent, row[c]) for c in ("source_path", "target_path"))
        phase = row["phase"] if row["phase"] in PHASES else float(row["phase"])
        pairs.append(PairSpec(row.get("eye_id") or source.stem, source, target, row["modality"], disease, phase,
                              "train", where))
    return pairs, []


def _check_value(value: str, allowed: tuple[str, ...], where: str, column: str) -> None:
    if value not in allowed:
        raise ValueError(f"{where}: column {column!r} has {value!r}; allowed: {list(allowed)}")


def _resolve(folder: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else folder / candidate


def collect_pairs(args: argparse.Namespace) -> tuple[list[PairSpec], list[PairOutcome]]:
    """The layout's pairs with the command-line overrides applied (modality, disease, phase, split)."""
    collector = {"misp": collect_misp, "uwf_triplets": collect_uwf_triplets, "csv": collect_csv}[args.layout]
    pairs, problems = collector(args.input)
    for spec in pairs + [outcome.spec for outcome in problems]:
        spec.modality = args.modality or spec.modality
        spec.disease = args.disease or spec.disease
        spec.phase = spec.phase if args.phase is None else args.phase
        spec.split = args.split or spec.split
    return pairs, problems


# ------------------------------------------------------------------------------------------ registration


def read_image(path: Path) -> np.ndarray:
    """uint8 RGB array; raises ValueError naming the path when the file is missing or not a readable image."""
    try:
        with PIL.Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None


def process_pair(spec: PairSpec, args: argparse.Namespace, root: Path) -> PairOutcome:
    """Read, (orient), register and warp one pair; a failure becomes a rejection with its reason, not a crash."""
    outcome = PairOutcome(spec)
    try:
        source, target = read_image(spec.source_path), read_image(spec.target_path)
        if args.layout == "misp":
            source, target, outcome.row["naming"] = orient_misp_pair(spec, source, target)
    except ValueError as error:
        outcome.rejected = str(error)
        return outcome
    target_gray = cv2.cvtColor(target, cv2.COLOR_RGB2GRAY)
    if args.registration == "none":
        matrix = resize_matrix(target.shape[:2], source.shape[:2])
    else:
        result = register_pair(source, target_gray, model=args.registration, min_inlier_ratio=args.min_inlier_ratio,
                               min_inliers=args.min_inliers, source_vessels_dark=SOURCE_VESSELS_DARK[spec.modality])
        matrix = result.matrix
        outcome.inlier_ratio, outcome.error_px = result.inlier_ratio, result.median_error_px
        outcome.inliers, outcome.matches = result.num_inliers, result.num_matches
        if not result.ok:
            outcome.rejected = f"registration failed: {result.reason}"
    registered = warp_to(target_gray, matrix, source.shape)
    if args.check_dir is not None and args.registration != "none":
        _save_check(args.check_dir, spec, outcome, source, registered)
    if outcome.rejected:
        return outcome
    source_image = source[..., 0] if is_grey(source) else source
    if args.resolution:
        source_image, registered = (_square(image, args.resolution) for image in (source_image, registered))
    outcome.row.update(
        eye_id=spec.eye_id,
        source_image={"bytes": _png(source_image), "path": None},
        target_image={"bytes": _png(registered), "path": None},
        modality=spec.modality,
        disease=spec.disease,
        phase=phase_to_seconds(spec.phase),
        phase_name=spec.phase if isinstance(spec.phase, str) and spec.phase in PHASES else "",
        registration_transform=(matrix / matrix[2, 2]).astype(np.float32).ravel().tolist(),
        registration_inliers=outcome.inlier_ratio,
        registration_error_px=outcome.error_px,
        source_path=_relative(spec.source_path, root),
        target_path=_relative(spec.target_path, root),
    )
    return outcome


def _square(image: np.ndarray, resolution: int) -> np.ndarray:
    """Pad to a centred square with black (keeps the aspect ratio), then resize."""
    height, width = image.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    padded = cv2.copyMakeBorder(image, top, side - height - top, left, side - width - left, cv2.BORDER_CONSTANT, 0)
    interpolation = cv2.INTER_AREA if side > resolution else cv2.INTER_CUBIC
    return cv2.resize(padded, (resolution, resolution), interpolation=interpolation)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _save_check(folder: Path, spec: PairSpec, outcome: PairOutcome, source: np.ndarray,
                registered: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    overlay = registration_overlay(source, registered, SOURCE_VESSELS_DARK[spec.modality])
    verdict = "rejected" if outcome.rejected else "accepted"
    caption = f"{spec.eye_id} {spec.phase} {verdict} inliers {outcome.inlier_ratio:.2f} err {outcome.error_px:.2f}px"
    cv2.putText(overlay, caption, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 0), 2)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{spec.eye_id}_{spec.phase}_{verdict}")
    cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))


# ------------------------------------------------------------------------------------------------ output


def write_dataset(outcomes: list[PairOutcome], output_dir: Path) -> dict[str, str]:
    """One parquet shard per split under `data/` (see `write_parquet_splits`); returns {split: relative file}."""
    splits: dict[str, list[dict]] = {}
    for outcome in outcomes:
        if not outcome.rejected:
            splits.setdefault(outcome.spec.split, []).append({k: outcome.row[k] for k in FEATURES})
    if not splits:
        raise RuntimeError("no pair was kept: nothing to write (see the rejected pairs above)")
    return write_parquet_splits(splits, FEATURES, output_dir)


def dataset_card(args: argparse.Namespace, outcomes: list[PairOutcome], files: dict[str, str],
                 naming: Counter) -> str:
    """README.md: YAML front matter (configs, license, task) and a body with source, command, counts, checks."""
    kept = [o for o in outcomes if not o.rejected]
    rejected = [o for o in outcomes if o.rejected]
    lines = ["---", f"license: {args.license}", "task_categories:", "- image-to-image", "configs:",
             "- config_name: default", "  data_files:"]
    for split, path in files.items():
        lines += [f"  - split: {split}", f"    path: {path}"]
    lines += ["---", "", f"# {args.output_dir.name}", "",
              "Paired retinal image -> fluorescein angiogram (FFA) data for `ffa-diffusion`, one row per pair; the "
              "FFA (`target_image`, grey) is registered onto the source frame.", "",
              f"- Source: `{args.input}` (layout `{args.layout}`)",
              f"- Command: `{shlex.join(['python', 'train/prepare_dataset.py', *sys.argv[1:]])}`",
              f"- Registration: `{args.registration}` on vessel maps (`ffa_pipeline/registration.py`); "
              f"`registration_transform` maps target pixels onto source pixels (row-major 3x3, original files); "
              f"kept when inlier ratio >= {args.min_inlier_ratio} and inliers >= {args.min_inliers}",
              f"- Pairs kept: {len(kept)} of {len(outcomes)}; per split: "
              + ", ".join(f"{s} {sum(o.spec.split == s for o in kept)}" for s in files),
              "- Per modality / disease / phase: "
              + "; ".join(f"{k} {v}" for k, v in sorted(Counter(
                  f"{o.spec.modality}/{o.spec.disease}/{o.spec.phase}" for o in kept).items()))]
    if naming:
        lines.append("- MISP naming found by content: " + "; ".join(f"{k}: {v}" for k, v in sorted(naming.items())))
    lines += ["", "## Registration", "",
              "| pair | split | kept | inlier ratio | inliers / matches | median error (px) |",
              "|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o.spec.label} | {o.spec.split} | {'no' if o.rejected else 'yes'} | {o.inlier_ratio:.2f} | "
                     f"{o.inliers} / {o.matches} | {o.error_px:.2f} |")
    lines += ["", "## Rejected pairs", ""]
    lines += [f"- {o.spec.label}: {o.rejected}" for o in rejected] or ["None."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pairs, outcomes = collect_pairs(args)
    root = args.input.parent if args.layout == "csv" else args.input
    print(f"{len(pairs)} pairs found in {args.input} ({args.layout})")
    for spec in pairs:
        outcome = process_pair(spec, args, root)
        outcomes.append(outcome)
        status = f"REJECTED: {outcome.rejected}" if outcome.rejected else "kept"
        print(f"  {spec.label}: inlier ratio {outcome.inlier_ratio:.2f} ({outcome.inliers}/{outcome.matches}), "
              f"median error {outcome.error_px:.2f} px -> {status}")
    naming = Counter(f"{o.spec.label.split('/')[0]} {o.row['naming']}" for o in outcomes if "naming" in o.row)
    files = write_dataset(outcomes, args.output_dir)
    card = dataset_card(args, outcomes, files, naming)
    (args.output_dir / "README.md").write_text(card, encoding="utf-8")
    rejected = [o for o in outcomes if o.rejected]
    print(f"kept {len(outcomes) - len(rejected)} of {len(outcomes)} pairs -> {args.output_dir}")
    for outcome in rejected:
        print(f"  left out {outcome.spec.label}: {outcome.rejected}")
    if args.push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(args.push_to_hub, repo_type="dataset", exist_ok=True)
        api.upload_folder(repo_id=args.push_to_hub, repo_type="dataset", folder_path=str(args.output_dir),
                          delete_patterns=["data/*.parquet"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
