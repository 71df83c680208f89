"""Build a fresh (randomly initialised) FFADiffusionPipeline from a small JSON model config.

Used by the trainer's `--model_config` (training from scratch on a CPU), the tests (tiny configs) and
`load_default_pipeline`'s untrained fallback. Configs live in `ffa_pipeline/configs/`: `tiny.json`, `small.json`.
The vocabularies come from `vocab.py` unless the config names its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from .condition_encoder import CrossModalConditionEncoder
from .disease_embedding import DiseaseEmbedding
from .pipeline_ffa import FFADiffusionPipeline
from .vocab import DISEASES, MODALITIES, PHASES

CONFIG_DIR = Path(__file__).parent / "configs"


def load_model_config(config: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A config dict, a JSON path, or the name of a bundled config ("tiny", "small")."""
    if isinstance(config, dict):
        return config
    path = Path(config)
    if not path.suffix and (CONFIG_DIR / f"{config}.json").is_file():
        path = CONFIG_DIR / f"{config}.json"
    if not path.is_file():
        bundled = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise ValueError(f"Model config {str(config)!r} not found; give a JSON path or one of {bundled}")
    return json.loads(path.read_text())


def build_pipeline(config: str | Path | dict[str, Any], seed: int = 0) -> FFADiffusionPipeline:
    """Randomly initialised pipeline of the given config (deterministic for a seed)."""
    config = load_model_config(config)
    torch.manual_seed(seed)
    vae = AutoencoderKL(**config["vae"])
    latent_channels = vae.config.latent_channels
    vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    resolution = int(config["resolution"])
    if resolution % vae_scale_factor:
        raise ValueError(f"resolution {resolution} must be a multiple of the VAE scale factor {vae_scale_factor}")
    unet = UNet2DConditionModel(
        **config["unet"],
        sample_size=resolution // vae_scale_factor,
        in_channels=2 * latent_channels,
        out_channels=latent_channels,
        class_embed_type="identity",
    )
    condition_encoder = CrossModalConditionEncoder(
        modalities=list(config.get("modalities", MODALITIES)),
        latent_channels=latent_channels,
        cross_attention_dim=unet.config.cross_attention_dim,
        **config.get("condition_encoder", {}),
    )
    disease_embedding = DiseaseEmbedding(
        diseases=list(config.get("diseases", DISEASES)),
        phases=dict(config.get("phases", PHASES)),
        embedding_dim=unet.time_embedding.linear_2.out_features,
        **config.get("disease_embedding", {}),
    )
    scheduler = DDIMScheduler(**config.get("scheduler", {}), clip_sample=False)
    return FFADiffusionPipeline(
        vae=vae, unet=unet, condition_encoder=condition_encoder, disease_embedding=disease_embedding,
        scheduler=scheduler,
    )
