"""One eye -> dataset rows with PNG-encoded images (light: worker processes import only this)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .geometry import sample_eye
from .sample import render_sample

# Fast PNG settings (about 3x faster than OpenCV's defaults at the same size for these images):
# zlib level 1, run-length strategy, and the "sub" row filter where this OpenCV offers a choice.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):
    PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]


@dataclass(frozen=True)
class EyeTask:
    """Everything a worker needs to render eye number ``index`` of a dataset."""

    index: int
    base_seed: int
    disease: str
    severity: float | None
    resolution: int
    modalities: tuple[str, ...]
    phases: tuple[str, ...]
    misregister: bool


def eye_seed(base_seed: int, index: int) -> int:
    """Seed of eye ``index`` in a dataset made with ``base_seed``: independent streams, stable across runs."""
    return int(np.random.SeedSequence([base_seed, index]).generate_state(1)[0])


def encode_png(image: np.ndarray) -> dict:
    """Image feature value: PNG bytes (RGB images are stored as RGB, grey as L)."""
    if image.ndim == 2 and not image.any():
        return {"bytes": _blank_png(image.shape), "path": None}  # most lesion masks are empty
    pixels = image[..., ::-1] if image.ndim == 3 else image
    ok, data = cv2.imencode(".png", np.ascontiguousarray(pixels), PNG_PARAMS)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return {"bytes": data.tobytes(), "path": None}


@lru_cache(maxsize=4)
def _blank_png(shape: tuple[int, int]) -> bytes:
    return cv2.imencode(".png", np.zeros(shape, np.uint8), PNG_PARAMS)[1].tobytes()


def eye_rows(task: EyeTask) -> list[dict]:
    """Render one eye and return one row per modality, images as PNG bytes."""
    cv2.setNumThreads(1)
    eye = sample_eye(eye_seed(task.base_seed, task.index), task.disease, task.severity)
    rendered = render_sample(eye, task.resolution, task.modalities, task.phases, misregister=task.misregister)
    rows = []
    for modality in task.modalities:
        row = {"eye_id": f"eye-{task.index:06d}"}
        for key, value in rendered[modality].items():
            if key == "source_to_ffa_affine":
                value = [float(v) for v in np.asarray(value, np.float32).ravel()]
            elif isinstance(value, np.ndarray):
                value = encode_png(value)
            row[key] = value
        rows.append(row)
    return rows


def check_names(kind: str, names: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """Names as a tuple, or ValueError naming the bad one and the allowed ones."""
    for name in names:
        if name not in allowed:
            raise ValueError(f"Unknown {kind} {name!r}; allowed: {list(allowed)}")
    if not names:
        raise ValueError(f"No {kind} given; allowed: {list(allowed)}")
    return tuple(names)
