"""An AutoencoderKL whose decoder is lighter than its encoder.

Why: on the slower 2-core CPUs the default model's VAE decoder (64 channels at 256 px, attention over 4096 latent
positions) took a third of a call. A lighter decoder distilled from it (`train/train_vae.py
--teacher_vae_model_name_or_path ... --train_decoder_only`) draws the same angiograms from the same latents in a third
of the time, while the encoder, and with it the latent space that the UNet learned, stays the teacher's own.
Ours: diffusers' AutoencoderKL gives its encoder and decoder one `block_out_channels`, `layers_per_block`,
`norm_num_groups` and `mid_block_add_attention`; here the `decoder_*` settings override them for the decoder.
"""

from __future__ import annotations

import os

from diffusers import AutoencoderKL
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import Decoder

DECODER_SETTINGS = ("decoder_block_out_channels", "decoder_layers_per_block", "decoder_norm_num_groups",
                    "decoder_mid_block_add_attention")


class LightDecoderAutoencoderKL(AutoencoderKL):
    """AutoencoderKL (same encode / decode API and latent convention) with its own decoder width, depth, norm
    groups and middle-block attention; a `decoder_*` setting left at None takes the encoder's."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        shift_factor: float | None = None,
        latents_mean: tuple[float, ...] | None = None,
        latents_std: tuple[float, ...] | None = None,
        force_upcast: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
        decoder_block_out_channels: tuple[int, ...] | None = None,
        decoder_layers_per_block: int | None = None,
        decoder_norm_num_groups: int | None = None,
        decoder_mid_block_add_attention: bool | None = None,
    ):
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, down_block_types=down_block_types,
            up_block_types=up_block_types, block_out_channels=block_out_channels, layers_per_block=layers_per_block,
            act_fn=act_fn, latent_channels=latent_channels, norm_num_groups=norm_num_groups, sample_size=sample_size,
            scaling_factor=scaling_factor, shift_factor=shift_factor, latents_mean=latents_mean,
            latents_std=latents_std, force_upcast=force_upcast, use_quant_conv=use_quant_conv,
            use_post_quant_conv=use_post_quant_conv, mid_block_add_attention=mid_block_add_attention,
        )
        decoder_channels = tuple(decoder_block_out_channels or block_out_channels)
        if len(decoder_channels) != len(up_block_types):
            raise ValueError(f"decoder_block_out_channels {list(decoder_channels)} must give one width per up block "
                             f"({len(up_block_types)}: {list(up_block_types)}), as the latents' downsampling needs")
        self.decoder = Decoder(
            in_channels=latent_channels,
            out_channels=out_channels,
            up_block_types=up_block_types,
            block_out_channels=decoder_channels,
            layers_per_block=layers_per_block if decoder_layers_per_block is None else decoder_layers_per_block,
            norm_num_groups=norm_num_groups if decoder_norm_num_groups is None else decoder_norm_num_groups,
            act_fn=act_fn,
            mid_block_add_attention=(mid_block_add_attention if decoder_mid_block_add_attention is None
                                     else decoder_mid_block_add_attention),
        )


def vae_class(config: dict) -> type[AutoencoderKL]:
    """The VAE class for a config: ours when it sets any `decoder_*` setting (or names our class), else diffusers'."""
    if config.get("_class_name") == LightDecoderAutoencoderKL.__name__ or any(
            config.get(key) is not None for key in DECODER_SETTINGS):
        return LightDecoderAutoencoderKL
    return AutoencoderKL


def load_vae(pretrained_model_name_or_path: str | os.PathLike, subfolder: str | None = None,
             **kwargs) -> AutoencoderKL:
    """`from_pretrained` with the class that the saved config names (AutoencoderKL or LightDecoderAutoencoderKL)."""
    config = AutoencoderKL.load_config(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
    return vae_class(config).from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
