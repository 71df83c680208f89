"""CrossModalConditionEncoder: maps the VAE latents of any input modality into one shared space.

This file is self-contained (torch + diffusers only) because `save_pretrained` copies it
into the checkpoint's `condition_encoder/` folder, from where `DiffusionPipeline.from_pretrained(
..., trust_remote_code=True)` imports it without the `ffa_pipeline` package installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn


@dataclass
class ConditionEncoderOutput(BaseOutput):
    """shared_latents: [B, C, h, w] concatenated to the noisy latents; context: [B, T, D] cross-attention tokens;
    pooled: [B, hidden] per-image summary used by the cross-modal alignment loss."""

    shared_latents: torch.Tensor
    context: torch.Tensor
    pooled: torch.Tensor


class ModalityStem(nn.Module):
    """A small residual conv block; the last conv starts at zero so an untrained stem is the identity."""

    def __init__(self, latent_channels: int, hidden_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(latent_channels, hidden_channels, 3, padding=1)
        self.norm = nn.GroupNorm(min(8, hidden_channels), hidden_channels)
        self.conv_mid = nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1)
        self.conv_out = nn.Conv2d(hidden_channels, latent_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = F.silu(self.conv_in(latents))
        hidden = F.silu(self.conv_mid(self.norm(hidden)))
        return latents + self.conv_out(hidden), hidden


def check_native_resolution_ridges(names: list[str], modalities: list[str]) -> None:
    """ValueError unless every name in `native_resolution_ridges` is one of the model's modalities."""
    unknown = [name for name in names if name not in modalities]
    if unknown:
        raise ValueError(f"native_resolution_ridges has unknown modalities {unknown}; allowed: {list(modalities)}")


class CrossModalConditionEncoder(ModelMixin, ConfigMixin):
    """One stem per input modality into a shared latent space, plus context tokens for cross-attention.

    The modality vocabulary is part of the config, so a checkpoint carries its own labels. So is
    `input_representation`: what the pipeline and the trainer make of a source image before the VAE encodes it
    ("rgb", the photo; "grey_ridges", a rendering-independent grey + vessel-ridge image, see the pipeline's
    image_processing module), and `native_resolution_ridges`: the modalities whose ridge maps come from the source
    at its own resolution (up to 3x the model's; for ultra-widefield images, whose vessels are too thin at 256 px).
    Dropped images (classifier-free guidance) get all-zero shared latents and learned null tokens,
    the same convention as InstructPix2Pix's zeroed image latents.
    """

    @register_to_config
    def __init__(
        self,
        modalities: list[str],
        latent_channels: int = 4,
        hidden_channels: int = 64,
        num_context_tokens: int = 4,
        cross_attention_dim: int = 768,
        input_representation: str = "rgb",
        native_resolution_ridges: list[str] | None = None,
    ):
        super().__init__()
        if not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities must be a non-empty list of unique names, got {modalities!r}")
        check_native_resolution_ridges(native_resolution_ridges or [], modalities)
        self.stems = nn.ModuleDict({name: ModalityStem(latent_channels, hidden_channels) for name in modalities})
        self.token_projection = nn.Linear(hidden_channels, num_context_tokens * cross_attention_dim)
        self.modality_tokens = nn.Embedding(len(modalities), cross_attention_dim)
        self.null_context = nn.Parameter(torch.zeros(num_context_tokens + 1, cross_attention_dim))

    def modality_index(self, name: str) -> int:
        """Index of a modality name in this model's vocabulary; ValueError names the allowed ones."""
        modalities = list(self.config.modalities)
        if name not in modalities:
            raise ValueError(f"Unknown modality {name!r}; this model knows {modalities}")
        return modalities.index(name)

    def set_native_resolution_ridges(self, names: list[str]) -> None:
        """Record the modalities whose ridge maps come from the source at its own resolution (checked first)."""
        check_native_resolution_ridges(names, list(self.config.modalities))
        self.register_to_config(native_resolution_ridges=list(names))

    def forward(
        self,
        source_latents: torch.Tensor,
        modality_ids: torch.Tensor,
        drop_image: torch.Tensor | None = None,
    ) -> ConditionEncoderOutput:
        """Encode source latents [B, C, h, w] of modalities `modality_ids` [B]; `drop_image` [B] masks images out."""
        batch_size = source_latents.shape[0]
        hidden_channels = self.config.hidden_channels
        shared = torch.empty_like(source_latents)
        hidden = source_latents.new_empty(batch_size, hidden_channels, *source_latents.shape[2:])
        for index, stem in enumerate(self.stems.values()):
            selected = modality_ids == index
            if selected.any():
                shared[selected], hidden[selected] = stem(source_latents[selected])
        pooled = hidden.mean(dim=(2, 3))
        tokens = self.token_projection(pooled).view(batch_size, self.config.num_context_tokens, -1)
        context = torch.cat([self.modality_tokens(modality_ids)[:, None], tokens], dim=1)
        if drop_image is not None:
            keep = (~drop_image).to(shared.dtype)
            shared = shared * keep[:, None, None, None]
            context = torch.where(drop_image[:, None, None], self.null_context.to(context.dtype), context)
        return ConditionEncoderOutput(shared_latents=shared, context=context, pooled=pooled)
