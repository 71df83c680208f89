"""DiseaseEmbedding: disease label + FFA time after injection -> the UNet's class embedding.

Self-contained (torch + diffusers only): `save_pretrained` copies this file into the checkpoint's
`disease_embedding/` folder for loading with `trust_remote_code=True`.
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class DiseaseEmbedding(ModelMixin, ConfigMixin):
    """Embeds (disease, seconds after dye injection) into a vector added to the UNet's time embedding.

    The UNet is built with `class_embed_type="identity"`, so this module *is* its class embedding.
    Time is continuous (log-scaled Fourier features), so any moment of the dye transit can be asked for;
    named phases are stored in the config. The output layer starts at zero: a freshly converted
    Stable Diffusion UNet behaves exactly as before until training teaches it the labels.
    Dropped labels (classifier-free guidance) mean disease "unknown" and a learned null phase.
    """

    @register_to_config
    def __init__(
        self,
        diseases: list[str],
        phases: dict[str, float],
        embedding_dim: int,
        num_phase_frequencies: int = 8,
        max_phase_seconds: float = 1800.0,
    ):
        super().__init__()
        if "unknown" not in diseases:
            raise ValueError(f"diseases must include 'unknown' (the dropped-label class), got {diseases!r}")
        self.disease_embedding = nn.Embedding(len(diseases), embedding_dim)
        self.phase_mlp = nn.Sequential(
            nn.Linear(2 * num_phase_frequencies, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim)
        )
        self.null_phase = nn.Parameter(torch.zeros(embedding_dim))
        self.output = nn.Sequential(nn.SiLU(), nn.Linear(embedding_dim, embedding_dim))
        nn.init.zeros_(self.output[1].weight)
        nn.init.zeros_(self.output[1].bias)
        frequencies = math.pi * 2.0 ** torch.arange(num_phase_frequencies, dtype=torch.float32)
        self.register_buffer("phase_frequencies", frequencies, persistent=False)

    def disease_index(self, name: str) -> int:
        """Index of a disease name in this model's vocabulary; ValueError names the allowed ones."""
        diseases = list(self.config.diseases)
        if name not in diseases:
            raise ValueError(f"Unknown disease {name!r}; this model knows {diseases}")
        return diseases.index(name)

    def phase_features(self, phase_seconds: torch.Tensor) -> torch.Tensor:
        """Fourier features of log(1 + t) / log(1 + t_max): early seconds matter more than late minutes."""
        scaled = torch.log1p(phase_seconds.float()) / math.log1p(self.config.max_phase_seconds)
        angles = scaled[:, None] * self.phase_frequencies[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    def forward(
        self,
        disease_ids: torch.Tensor,
        phase_seconds: torch.Tensor,
        drop_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B] disease ids and [B] seconds -> [B, embedding_dim]; `drop_labels` [B] bool drops both labels."""
        dtype = self.disease_embedding.weight.dtype
        phase = self.phase_mlp(self.phase_features(phase_seconds).to(dtype))
        if drop_labels is not None:
            unknown = torch.full_like(disease_ids, self.disease_index("unknown"))
            disease_ids = torch.where(drop_labels, unknown, disease_ids)
            phase = torch.where(drop_labels[:, None], self.null_phase.to(dtype), phase)
        return self.output(self.disease_embedding(disease_ids) + phase)
