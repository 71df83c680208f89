"""Write phantom eyes as a Hugging Face dataset: parquet shards under ``data/`` plus a dataset card.

One row per (eye, modality); ``datasets.load_dataset(output_dir)`` returns the ``train`` split
with the features of ``phantom_features``. Eyes are rendered in a process pool; the same
arguments always give the same image bytes (eye ``i`` gets seed ``eye_seed(seed, i)``).
"""

from __future__ import annotations

import math
import multiprocessing
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import datasets
from datasets import Dataset, Features, Image, List, Value, load_dataset
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from huggingface_hub import DatasetCard, DatasetCardData, HfApi
from tqdm.auto import tqdm

from ..vocab import DISEASE_LABELS, MODALITIES, PHASES
from .contact_sheet import save_contact_sheet
from .geometry import PHANTOM_DISEASES
from .lesions import LESION_TYPES
from .rows import EyeTask, check_names, eye_rows
from .sample import MIN_RESOLUTION

CARD_FIGURE = "phantom_examples.png"


def phantom_features(phases: Sequence[str] = ("early", "late")) -> Features:
    """The fixed schema of a phantom dataset (every lesion mask is present, empty when absent)."""
    columns = {"eye_id": Value("string"), "modality": Value("string"), "source_image": Image()}
    for phase in phases:
        columns[f"ffa_{phase}"] = Image()
        columns[f"ffa_{phase}_seconds"] = Value("float32")
    columns["vessel_mask"] = Image()
    columns["artery_vein"] = Image()
    for name in LESION_TYPES:
        columns[f"mask_{name}"] = Image()
    columns.update(
        disease=Value("string"),
        severity=Value("float32"),
        seed=Value("int64"),
        eye=Value("string"),
        disc_x=Value("float32"),
        disc_y=Value("float32"),
        fovea_x=Value("float32"),
        fovea_y=Value("float32"),
        cup_disc_ratio=Value("float32"),
        source_to_ffa_affine=List(Value("float32"), length=6),
    )
    return Features(columns)


def check_settings(
    num_samples: int,
    resolution: int,
    diseases: Sequence[str],
    modalities: Sequence[str],
    phases: Sequence[str],
    severity: float | None,
    num_proc: int,
    samples_per_shard: int,
) -> None:
    """ValueError naming the bad value and the allowed ones."""
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if resolution < MIN_RESOLUTION:
        raise ValueError(f"resolution must be >= {MIN_RESOLUTION}, got {resolution}")
    check_names("disease", diseases, PHANTOM_DISEASES)
    check_names("modality", modalities, MODALITIES)
    check_names("phase", phases, list(PHASES))
    if severity is not None and not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    if num_proc < 1:
        raise ValueError(f"num_proc must be >= 1, got {num_proc}")
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")


def write_phantom_dataset(
    output_dir: str | Path,
    num_samples: int,
    resolution: int = 256,
    diseases: Sequence[str] = PHANTOM_DISEASES,
    modalities: Sequence[str] = MODALITIES,
    phases: Sequence[str] = ("early", "late"),
    severity: float | None = None,
    seed: int = 0,
    misregister: bool = False,
    num_proc: int = 2,
    samples_per_shard: int = 1000,
    scarce_modalities: Mapping[str, int] | None = None,
    progress: bool = True,
) -> Path:
    """Render ``num_samples`` eyes (diseases cycled evenly) and write them to ``output_dir``; returns it.

    ``scarce_modalities`` (e.g. ``{"oct": 60}``) renders a modality for only the first N eyes, the way
    real paired data is scarce for some modalities; the other rows are the same pixels as without it.
    Everything is written to a hidden sibling folder first and moved into ``output_dir`` at the end, so an
    interrupted run leaves ``output_dir`` as it was: never some shards of a larger set that load as if whole, nor
    an empty folder that scripts take for a built one.
    """
    check_settings(num_samples, resolution, diseases, modalities, phases, severity, num_proc, samples_per_shard)
    scarce_modalities = dict(scarce_modalities or {})
    if scarce_modalities:
        check_names("scarce modality", list(scarce_modalities), list(modalities))
    for name, eyes in scarce_modalities.items():
        if eyes < 0:
            raise ValueError(f"scarce modality {name!r} needs a number of eyes >= 0, got {eyes}")
    output = Path(output_dir)
    staging = output.resolve().with_name(f".{output.resolve().name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "data").mkdir(parents=True)
    features = phantom_features(phases)
    modalities, phases = tuple(modalities), tuple(phases)
    tasks = [
        EyeTask(i, seed, diseases[i % len(diseases)], severity, resolution,
                tuple(m for m in modalities if i < scarce_modalities.get(m, num_samples)), phases, misregister)
        for i in range(num_samples)
    ]
    shards = max(1, math.ceil(num_samples / samples_per_shard))
    rows: list[dict] = []
    shard = 0

    def flush() -> None:
        nonlocal rows, shard
        path = staging / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet"
        with _quiet_datasets():
            Dataset.from_list(rows, features=features).to_parquet(str(path))
        rows, shard = [], shard + 1

    with _process_pool(num_proc) as pool:
        results = pool.imap(eye_rows, tasks, chunksize=4) if pool else map(eye_rows, tasks)
        for index, eye in enumerate(tqdm(results, total=num_samples, desc="phantom eyes", disable=not progress)):
            rows.extend(eye)
            if (index + 1) % samples_per_shard == 0:
                flush()
    if rows or shard == 0:
        flush()

    settings = {
        "num_samples": num_samples,
        "resolution": resolution,
        "diseases": list(diseases),
        "modalities": list(modalities),
        "phases": list(phases),
        "severity": "random per eye" if severity is None else severity,
        "seed": seed,
        "misregister": misregister,
        "samples_per_shard": samples_per_shard,
        "scarce_modalities": scarce_modalities,
    }
    save_contact_sheet(staging / CARD_FIGURE, diseases=diseases, resolution=min(resolution, 256), seed=seed)
    write_card(staging, features, settings, num_rows=sum(len(task.modalities) for task in tasks))
    _move_into(staging, output)
    return output


def _move_into(staging: Path, output: Path) -> None:
    """Replace the dataset in ``output`` (its shards, card and figure) by the one written to ``staging``; other
    files a user keeps in ``output`` stay."""
    (output / "data").mkdir(parents=True, exist_ok=True)
    for old in (output / "data").glob("train-*.parquet"):
        old.unlink()
    written = [path for path in staging.rglob("*") if path.is_file()]
    for path in sorted(written, key=lambda path: path.name == "README.md"):  # the card last: a finished dataset
        path.replace(output / path.relative_to(staging))
    shutil.rmtree(staging)


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hide the per-shard progress bars of ``datasets`` (ours counts eyes)."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


@contextmanager
def _process_pool(num_proc: int) -> Iterator[multiprocessing.pool.Pool | None]:
    """A process pool when more than one process is asked for, else None (render in this process)."""
    if num_proc == 1:
        yield None
        return
    with multiprocessing.Pool(num_proc) as pool:
        yield pool


def write_card(output: Path, features: Features, settings: dict, num_rows: int) -> None:
    """README.md with YAML front matter (configs, features, licence, task, tags) and the generation settings."""
    data = DatasetCardData(
        license="cc0-1.0",
        task_categories=["image-to-image"],
        tags=["synthetic", "medical", "ophthalmology", "fluorescein-angiography", "retina", "phantom"],
        pretty_name="FFA retina phantom",
        size_categories=[_size_category(num_rows)],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
    )
    info = DatasetInfo(features=features, splits=SplitDict({"train": SplitInfo("train", num_examples=num_rows)}))
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    settings_table = "\n".join(f"| `{key}` | `{value}` |" for key, value in settings.items())
    diseases = ", ".join(f"`{name}` ({DISEASE_LABELS.get(name, name)})" for name in settings["diseases"])
    lesions = ", ".join(f"`mask_{name}`" for name in LESION_TYPES)
    body = f"""
# FFA retina phantom

Synthetic, procedurally generated retinal images with exact ground truth, made by
`train/make_phantom_dataset.py` of the ffa-diffusion project (`ffa_pipeline.phantom`).

**Synthetic data, not for diagnosis.** No patient is depicted; the images only imitate the
look of real colour fundus photos, OCT en-face images, ultra-widefield SLO and fluorescein
angiograms, for pretraining, testing and teaching.

![one row per disease: CFP, OCT, SLO, FFA early, FFA late]({CARD_FIGURE})

## Structure

One row per (eye, modality). `source_image` is the colour fundus photo (`cfp`, RGB), OCT
en-face (`oct`, L) or ultra-widefield SLO (`uwf_slo`, RGB); `ffa_<phase>` are fluorescein
angiograms of the same eye rendered in the frame of that source (pixel-aligned unless
`misregister`, then `source_to_ffa_affine` is the true 2x3 map from source to FFA pixels);
`ffa_<phase>_seconds` is the time after injection actually rendered. Labels: `vessel_mask`
(0/255), `artery_vein` (0 background, 1 artery, 2 vein), lesion masks {lesions} (0/255,
empty when absent), `disc_x/y`, `fovea_x/y` (pixels), `cup_disc_ratio`, `disease`
({diseases}), `severity` in [0, 1], `seed` (re-renders the eye with
`ffa_pipeline.phantom.sample_eye(seed, disease, severity)`), `eye` (OD/OS). {num_rows} rows.

## How it is made, and how it differs from real images

Each eye is a seeded geometry in degrees from the fovea: disc and cup, fovea and avascular zone,
artery and vein trees grown from the disc (Murray's-law branching, arcades around the macula),
and the lesions of its disease. The FFA is a function of time after injection: patchy
choroidal flush, arterial filling, laminar venous filling, recirculation, then late leakage
(growing), staining and pooling, with blocked fluorescence, window defects and non-perfusion.
Domain randomisation varies framing, exposure, colour, blur, noise and JPEG. Known gaps: vessel
trees are simpler and more regular than real ones, there are no nerve-fibre striations, light
reflexes or floaters, lesion shapes are blobs and ellipses, and the OCT image is a stylised
OCTA of one slab. Use it to pretrain, test and teach, and check results on real data.

## Generation settings

| setting | value |
|---|---|
{settings_table}

```python
from datasets import load_dataset
dataset = load_dataset("path/or/repo")["train"]
```
"""
    DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}").save(output / "README.md")


def _size_category(rows: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return name
    return "n>1M"


def push_to_hub(output_dir: str | Path, repo_id: str) -> None:
    """Upload a written phantom dataset (data, card and its figure) to the Hub."""
    output = Path(output_dir)
    load_dataset(str(output))["train"].push_to_hub(repo_id)
    HfApi().upload_file(
        path_or_fileobj=str(output / CARD_FIGURE), path_in_repo=CARD_FIGURE, repo_id=repo_id, repo_type="dataset"
    )
    DatasetCard.load(output / "README.md").push_to_hub(repo_id)
