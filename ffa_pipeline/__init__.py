"""ffa-diffusion: synthetic fluorescein angiograms from non-invasive retinal images.

Public API: `FFADiffusionPipeline`, `CrossModalConditionEncoder`, `DiseaseEmbedding`, `load_default_pipeline`.
They are imported lazily, so that `ffa_pipeline.phantom` and `ffa_pipeline.vocab` (numpy / OpenCV only) start
without importing torch and diffusers.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .condition_encoder import CrossModalConditionEncoder
    from .disease_embedding import DiseaseEmbedding
    from .light_decoder_vae import LightDecoderAutoencoderKL
    from .pipeline_ffa import FFADiffusionPipeline, FFAPipelineOutput

__all__ = [
    "CrossModalConditionEncoder",
    "DEFAULT_MODEL_DIR",
    "DiseaseEmbedding",
    "FFADiffusionPipeline",
    "FFAPipelineOutput",
    "LightDecoderAutoencoderKL",
    "load_default_pipeline",
]

_LAZY = {
    "CrossModalConditionEncoder": ".condition_encoder",
    "DiseaseEmbedding": ".disease_embedding",
    "FFADiffusionPipeline": ".pipeline_ffa",
    "FFAPipelineOutput": ".pipeline_ffa",
    "LightDecoderAutoencoderKL": ".light_decoder_vae",
}

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "ffa-default"
logger = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_default_pipeline(model_id: str | os.PathLike | None = None, **kwargs) -> FFADiffusionPipeline:
    """The embedded default model `assets/ffa-default` (or `model_id` / `$FFA_MODEL_ID`: a local folder or Hub id).

    Where `assets/` is not there (e.g. the package installed without the repository), this returns an *untrained*
    tiny pipeline (random weights, marked `pipe.is_untrained = True`) so that the app still starts, with a banner.
    """
    from .pipeline_ffa import FFADiffusionPipeline

    model_id = model_id or os.environ.get("FFA_MODEL_ID") or (DEFAULT_MODEL_DIR if DEFAULT_MODEL_DIR.is_dir() else None)
    if model_id is not None:
        pipe = FFADiffusionPipeline.from_pretrained(model_id, **kwargs)
        pipe.is_untrained = False
        pipe.is_embedded_default = model_id == DEFAULT_MODEL_DIR  # small and CPU-trained: the app says what it can do
        return pipe
    from .model_config import build_pipeline

    logger.warning("No default model in %s: using an UNTRAINED tiny pipeline (random output).", DEFAULT_MODEL_DIR)
    pipe = build_pipeline("tiny")
    pipe.is_untrained = True
    return pipe
