"""Paired (source image -> FFA) training data from a Hugging Face dataset, for the trainers and evaluate.py.

Two layouts are read with the same code, chosen by column flags:
- long: one row per pair, e.g. `train/prepare_dataset.py` output (`source_image`, `target_image`, `modality`,
  `disease`, `phase`);
- wide: one row per (eye, modality) with several FFA phases, e.g. the phantom (`source_image`, `ffa_early`,
  `ffa_late`, ...): pass comma lists `--target_image_column ffa_early,ffa_late
  --phase_column ffa_early_seconds,ffa_late_seconds`, and each sample picks one target at random.
With `eye_id_column`, a sample also gets a *partner*: the source of another modality of the same eye (in the
same framing), which the cross-modal alignment loss pulls together with it. With `loss_mask`, a sample also gets
the row's loss mask (white: the pixels whose loss counts), framed and augmented as its target; a row without one
(an empty cell, or a folder without the column: `with_loss_mask_column`) counts every pixel.

Randomness (which target, which augmentation) is a pure function of (seed, epoch, index), so a resumed run sees
exactly the data an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import torch
from datasets import Dataset, DatasetDict, Features, concatenate_datasets, load_dataset
from datasets import Image as ImageFeature

from .image_processing import (
    FFAImageProcessor,
    check_input_representation,
    native_ridge_side,
    to_input_representation,
)


def load_dataset_fresh(path_or_id: str, config_name: str | None = None) -> DatasetDict:
    """`datasets.load_dataset`, but a local folder is always read from the files it holds now.

    datasets' cache can go on serving an earlier version of a folder that was written again in place (seen with
    datasets 5.2: a regenerated phantom was read back as the old one, and models were trained on it unnoticed).
    Converting a local folder again costs seconds; Hub ids keep their usual cache.
    """
    if os.path.isdir(path_or_id):
        return load_dataset(path_or_id, config_name, download_mode="force_redownload")
    return load_dataset(path_or_id, config_name)


def write_parquet_splits(splits: dict[str, list[dict]], features: Features, output_dir: Path) -> dict[str, str]:
    """One parquet shard per split under `output_dir/data/`; returns {split: file name relative to `output_dir`}.

    The file name carries a hash of its content and the dataset card should name that exact file: `datasets` keys
    its cache on the folder name and the card's data_files patterns, so two different datasets in folders of the
    same name with a generic `data/train-*` pattern would otherwise load each other's cached copy. Each shard is
    written under a temporary name and renamed, so an interrupted run leaves no half-written shard.
    """
    data_dir = Path(output_dir) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob("*.parquet"):
        stale.unlink()
    files = {}
    for name in sorted(splits, key=lambda split: (split != "train", split)):
        staging = data_dir / f"{name}.parquet.tmp"
        Dataset.from_list(splits[name], features=features).to_parquet(str(staging))
        digest = hashlib.sha256(staging.read_bytes()).hexdigest()[:12]
        files[name] = f"data/{name}-00000-of-00001-{digest}.parquet"
        staging.rename(Path(output_dir) / files[name])
    return files


@dataclass
class ColumnSpec:
    """Which dataset columns hold what (the trainer's `--*_column` flags)."""

    source: str = "source_image"
    targets: tuple[str, ...] = ("target_image",)
    phases: tuple[str, ...] = ("phase",)
    modality: str | None = "modality"
    disease: str | None = "disease"
    eye_id: str | None = None
    loss_mask: str | None = None

    @classmethod
    def from_flags(cls, source: str, target: str, phase: str, modality: str | None, disease: str | None,
                   eye_id: str | None, loss_mask: str | None = None) -> ColumnSpec:
        targets = tuple(c.strip() for c in target.split(",") if c.strip())
        phases = tuple(c.strip() for c in phase.split(",") if c.strip())
        if len(targets) != len(phases):
            raise ValueError(
                f"--target_image_column has {len(targets)} columns {list(targets)} but --phase_column has "
                f"{len(phases)} {list(phases)}: give one phase column per target column"
            )
        return cls(source, targets, phases, modality or None, disease or None, eye_id or None, loss_mask or None)


def with_loss_mask_column(parts: list[Dataset], spec: ColumnSpec) -> list[Dataset]:
    """The parts, those without the loss-mask column given an empty one (every pixel counts there); at least one
    part must have it, or the flag names nothing."""
    if spec.loss_mask is None:
        return parts
    if not any(spec.loss_mask in part.column_names for part in parts):
        raise ValueError(f"--loss_mask_column {spec.loss_mask!r} is not a column of any dataset; columns: "
                         f"{sorted({c for part in parts for c in part.column_names})}")
    return [part if spec.loss_mask in part.column_names else
            part.add_column(spec.loss_mask, [None] * len(part), feature=ImageFeature()) for part in parts]


def check_columns(dataset: Dataset, spec: ColumnSpec) -> None:
    """Every named column must exist; the error names the flag, the column and the available columns."""
    flags = [("--source_image_column", spec.source), ("--modality_column", spec.modality),
             ("--disease_column", spec.disease), ("--eye_id_column", spec.eye_id),
             ("--loss_mask_column", spec.loss_mask)]
    flags += [("--target_image_column", c) for c in spec.targets] + [("--phase_column", c) for c in spec.phases]
    for flag, column in flags:
        if column is not None and column not in dataset.column_names:
            raise ValueError(f"{flag} {column!r} is not a column of the dataset; columns: {dataset.column_names}")


def concatenate_columns(parts: list[Dataset], spec: ColumnSpec) -> Dataset:
    """Datasets that all have the columns of `spec` -> one dataset of those columns (features of the first)."""
    columns = [c for c in (spec.source, *spec.targets, *spec.phases, spec.modality, spec.disease, spec.eye_id,
                           spec.loss_mask) if c]
    kept = [part.select_columns(columns) for part in parts]
    return concatenate_datasets([kept[0], *(part.cast(kept[0].features) for part in kept[1:])])


def resolve_labels(dataset: Dataset, spec: ColumnSpec, modalities: list[str], diseases: list[str],
                   phases: dict[str, float], default_modality: str | None = None) -> dict[str, np.ndarray]:
    """Vocabulary ids for every row, checked up front: an unknown value names its row and the allowed values."""
    rows = len(dataset)
    if spec.modality is None:
        if default_modality not in modalities:
            raise ValueError(f"no --modality_column: --modality must be one of {modalities}, got {default_modality!r}")
        modality_values = [default_modality] * rows
    else:
        modality_values = dataset[spec.modality]
    disease_values = dataset[spec.disease] if spec.disease else ["unknown"] * rows
    labels = {
        "modality": _ids(modality_values, modalities, "--modality_column", spec.modality),
        "disease": _ids([d or "unknown" for d in disease_values], diseases, "--disease_column", spec.disease),
    }
    seconds = np.full((rows, len(spec.phases)), np.nan, dtype=np.float32)
    for j, column in enumerate(spec.phases):
        for row, value in enumerate(dataset[column]):
            seconds[row, j] = _phase_seconds(value, phases, row, column)
    labels["phase_seconds"] = seconds
    return labels


def _ids(values: list, vocabulary: list[str], flag: str, column: str | None) -> np.ndarray:
    index = {name: i for i, name in enumerate(vocabulary)}
    ids = np.empty(len(values), dtype=np.int64)
    for row, value in enumerate(values):
        if value not in index:
            raise ValueError(f"row {row}: {flag} {column!r} has {value!r}; the model knows {vocabulary}")
        ids[row] = index[value]
    return ids


def _phase_seconds(value, phases: dict[str, float], row: int, column: str) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, str) and value in phases:
        return float(phases[value])
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"row {row}: --phase_column {column!r} has {value!r}; allowed: {sorted(phases)} or seconds"
        ) from None
    if not 0 <= seconds <= 1800:
        raise ValueError(f"row {row}: --phase_column {column!r} has {value!r} s; allowed 0..1800 s or {sorted(phases)}")
    return seconds


_IMAGE_READER = FFAImageProcessor(min_size=8)  # validation and float conversion only; no resolution involved


def decode_image(cell, row: int, column: str) -> np.ndarray:
    """An undecoded `datasets.Image` cell -> HxWx3 float32 in [0, 1]; a corrupt image names its row and column."""
    try:
        if cell is None:
            raise ValueError("empty cell")
        if cell.get("bytes") is not None:
            image = PIL.Image.open(io.BytesIO(cell["bytes"]))
        else:
            image = PIL.Image.open(cell["path"])
        image.load()
        return _IMAGE_READER.to_float_rgb(image)
    except Exception as error:
        raise ValueError(f"row {row}: column {column!r}: cannot read the image ({error})") from error


class PairedFFADataset(torch.utils.data.Dataset):
    """Items: source / target / partner pixels in [-1, 1] at the row's side, with vocabulary ids and seconds.

    Sources are cropped around their field of view exactly as the pipeline does; the target (registered to the
    source) gets the same crop. Augmentation (flip, small rotation, scale) is applied identically to source,
    target and partner so that they stay aligned. `color_jitter` changes the look of the inputs only (source and
    partner: per-channel gain, gamma, contrast, blur, noise), so that a model trained on one rendering (the phantom)
    learns the anatomy rather than the rendering. The inputs are then turned into the condition encoder's
    `input_representation` (after augmentation, exactly as the pipeline does after framing); inputs of the modality
    ids in `native_ridge_modality_ids` are framed, augmented and jittered at their own resolution
    (`native_ridge_side`) and their ridge maps computed there, as the pipeline does for the checkpoint's
    `native_resolution_ridges`. A row is drawn at its modality's side in `modality_resolutions` (modality id ->
    side, as the checkpoint's `modality_resolutions` says the pipeline draws it), else at `resolution`; its partner
    at the row's side. Rows of several sides need batches of one side each (`SideBatchSampler`).
    """

    def __init__(self, dataset: Dataset, spec: ColumnSpec, labels: dict[str, np.ndarray], resolution: int,
                 seed: int = 0, random_flip: bool = False, random_rotation: float = 0.0,
                 random_scale: float = 0.0, color_jitter: float = 0.0, input_representation: str = "rgb",
                 native_ridge_modality_ids: Collection[int] = (),
                 modality_resolutions: Mapping[int, int] | None = None):
        check_input_representation(input_representation)
        image_columns = {spec.source, *spec.targets, *([spec.loss_mask] if spec.loss_mask else [])}
        for column in image_columns:
            if isinstance(dataset.features[column], ImageFeature):
                dataset = dataset.cast_column(column, ImageFeature(decode=False))
        self.dataset, self.spec, self.labels = dataset, spec, labels
        self.resolution, self.seed, self.epoch = resolution, seed, 0
        self.random_flip, self.random_rotation, self.random_scale = random_flip, random_rotation, random_scale
        self.color_jitter, self.input_representation = color_jitter, input_representation
        self.native_ridge_modality_ids = frozenset(native_ridge_modality_ids)
        self.processor = FFAImageProcessor(resolution=resolution, min_size=8)
        self.sides = np.array([(modality_resolutions or {}).get(int(m), resolution) for m in labels["modality"]])
        self.partners = self._find_partners() if spec.eye_id else [[] for _ in range(len(dataset))]

    def _find_partners(self) -> list[list[int]]:
        """Rows of the same eye with another modality."""
        eyes = self.dataset[self.spec.eye_id]
        rows_by_eye = defaultdict(list)
        for row, eye in enumerate(eyes):
            rows_by_eye[eye].append(row)
        modality = self.labels["modality"]
        return [[other for other in rows_by_eye[eye] if modality[other] != modality[row]]
                for row, eye in enumerate(eyes)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def _pixels(self, row: int, column: str) -> np.ndarray:
        return decode_image(self.dataset[row][column], row, column)

    def _augmentation(self, rng: np.random.Generator, size: int) -> np.ndarray | None:
        """One random 2x3 affine in the model's square of `size` px (None when augmentation is off)."""
        if not (self.random_flip or self.random_rotation or self.random_scale):
            return None
        angle = rng.uniform(-self.random_rotation, self.random_rotation)
        scale = 1.0 + rng.uniform(0.0, self.random_scale)
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
        if self.random_flip and rng.random() < 0.5:
            matrix = np.array([[-1, 0, size], [0, 1, 0]]) @ np.vstack([matrix, [0, 0, 1]])
        return matrix

    def _square(self, image: np.ndarray, framing, matrix: np.ndarray | None, size: int,
                input_rng: np.random.Generator | None = None, native_ridges: bool = False) -> torch.Tensor:
        """Frame and augment an image at `size` px; with `input_rng` it is a model input (jittered, then
        represented).

        With `native_ridges` an input is framed, augmented and jittered at its own resolution (capped), then shrunk,
        and that larger square gives its ridge maps (`to_input_representation`'s `detail`).
        """
        side = size
        if input_rng is not None and native_ridges:
            side = native_ridge_side(framing, size)
        square = self.processor.apply_framing(image, framing, side)
        if matrix is not None:
            matrix = matrix * np.array([[1.0, 1.0, side / size]])  # the same warp, its shift in this side's pixels
            square = cv2.warpAffine(square, matrix, (side, side), flags=cv2.INTER_LINEAR)
        if input_rng is not None:
            if self.color_jitter > 0:
                square = self._jitter_colors(square, input_rng, pixel_scale=side / size)
            detail = None
            if side > size:
                shrunk = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
                detail, square = square, np.clip(shrunk, 0.0, 1.0)
            square = to_input_representation(square, self.input_representation, detail)
        return torch.from_numpy(square).permute(2, 0, 1) * 2 - 1

    def _jitter_colors(self, square: np.ndarray, rng: np.random.Generator, pixel_scale: float = 1.0) -> np.ndarray:
        """A random photometric look for an input image in [0, 1] (ours: no library draws these for numpy)."""
        strength, field = self.color_jitter, square.max(axis=2, keepdims=True) > 0.02
        image = square ** np.exp(rng.uniform(-strength, strength))
        image = image * (1 + rng.uniform(-strength, strength, size=3)).astype(np.float32)
        mean = image[field[..., 0]].mean(axis=0) if field.any() else image.mean(axis=(0, 1))
        image = mean + (image - mean) * (1 + rng.uniform(-strength, strength))
        sigma = rng.uniform(0, 1.5 * strength)
        if sigma > 0.3:
            image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma * pixel_scale)
        image = image + rng.normal(0, rng.uniform(0, 0.03 * strength), size=image.shape)
        return np.where(field, np.clip(image, 0, 1), 0).astype(np.float32)

    def _loss_mask(self, row: int, framing, matrix: np.ndarray | None, size: int) -> torch.Tensor:
        """1xHxW in [0, 1]: the row's loss mask, framed and augmented as its target; all ones when it has none.

        What framing and augmentation bring in from outside the stored image counts, as in a row without a mask
        (the mask is inverted around them, so that their black padding becomes white).
        """
        cell = self.dataset[row][self.spec.loss_mask]
        if cell is None:
            return torch.ones(1, size, size)
        ignored = 1.0 - decode_image(cell, row, self.spec.loss_mask)
        return (1 - self._square(ignored, framing, matrix, size)[:1]) / 2

    def _native_ridges(self, row: int) -> bool:
        return int(self.labels["modality"][row]) in self.native_ridge_modality_ids

    def available_targets(self, row: int) -> list[int]:
        """Indices of the target columns that this row has (a phase given)."""
        available = [j for j, s in enumerate(self.labels["phase_seconds"][row]) if np.isfinite(s)]
        if not available:
            raise ValueError(f"row {row}: no phase for any target column {list(self.spec.phases)}")
        return available

    def __getitem__(self, row: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, row])
        return self.render(row, int(rng.choice(self.available_targets(row))), rng)

    def render(self, row: int, target_index: int, rng: np.random.Generator) -> dict:
        """The sample of `row` with target column `target_index`; `rng` draws augmentation and partner."""
        source = self._pixels(row, self.spec.source)
        target = self._pixels(row, self.spec.targets[target_index])
        framing, size = self.processor.frame(source), int(self.sides[row])
        matrix = self._augmentation(rng, size)
        item = {
            "source": self._square(source, framing, matrix, size, rng, self._native_ridges(row)),
            "target": self._square(target, framing, matrix, size).mean(dim=0, keepdim=True).expand(3, -1, -1),
            "modality": int(self.labels["modality"][row]),
            "disease": int(self.labels["disease"][row]),
            "phase_seconds": float(self.labels["phase_seconds"][row, target_index]),
            "partner": torch.zeros(3, size, size),
            "partner_modality": 0,
            "has_partner": False,
        }
        if self.spec.loss_mask is not None:
            item["loss_mask"] = self._loss_mask(row, framing, matrix, size)
        if self.partners[row]:
            other = int(rng.choice(self.partners[row]))
            partner = self._pixels(other, self.spec.source)
            item.update(partner=self._square(partner, self.processor.frame(partner), matrix, size, rng,
                                             self._native_ridges(other)),
                        partner_modality=int(self.labels["modality"][other]), has_partner=True)
        return item


class SideBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Shuffled batches of rows that share a side (`PairedFFADataset.sides`), so that rows drawn at several sides
    never meet in one batch: every row once per epoch, the last batch of each side filled up with rows of that side
    drawn again, the batches of all sides in a random order. Ours (torch has no sampler that groups by a key); the
    order is a pure function of (seed, epoch), like the rows' randomness, so a resumed run sees the same batches.
    """

    def __init__(self, sides: np.ndarray, batch_size: int, seed: int = 0):
        self.rows_by_side = {int(side): np.flatnonzero(sides == side) for side in np.unique(sides)}
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(-(-len(rows) // self.batch_size) for rows in self.rows_by_side.values())

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for rows in self.rows_by_side.values():
            order = rng.permutation(rows)
            order = np.resize(order, -(-len(order) // self.batch_size) * self.batch_size)  # wraps round to fill
            batches += [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        for index in rng.permutation(len(batches)):
            yield batches[index]
