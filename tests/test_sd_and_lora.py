"""from_stable_diffusion on a tiny SD checkpoint built here, and LoRA load / fuse / unload with the trained parts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import seeded
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from ffa_pipeline import FFADiffusionPipeline
from ffa_pipeline.model_config import build_pipeline


@pytest.fixture(scope="module")
def tiny_sd_checkpoint(tmp_path_factory):
    """A random Stable-Diffusion-shaped checkpoint folder (vae / unet / scheduler), as SD 1.x lays it out."""
    path = tmp_path_factory.mktemp("tiny-sd")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=24, attention_head_dim=4, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), up_block_types=("UpDecoderBlock2D",) * 2,
    )
    unet.save_pretrained(path / "unet")
    vae.save_pretrained(path / "vae")
    PNDMScheduler(skip_prk_steps=True).save_pretrained(path / "scheduler")
    return path, unet


def test_converted_unet_reproduces_the_base_unet(tiny_sd_checkpoint):
    path, base_unet = tiny_sd_checkpoint
    pipe = FFADiffusionPipeline.from_stable_diffusion(path)
    assert pipe.unet.config.in_channels == 8 and pipe.unet.config.class_embed_type == "identity"
    assert pipe.condition_encoder.config.cross_attention_dim == 24
    noisy = torch.randn(3, 4, 16, 16, generator=seeded(0))
    hidden = torch.randn(3, 5, 24, generator=seeded(1))
    timestep = torch.tensor([10, 500, 990])
    with torch.no_grad():
        expected = base_unet(noisy, timestep, encoder_hidden_states=hidden).sample
        for seed, disease in ((2, "normal"), (3, "glaucoma")):
            condition = torch.randn(3, 4, 16, 16, generator=seeded(seed)) * 5
            ids = torch.full((3,), pipe.disease_embedding.disease_index(disease))
            labels = pipe.disease_embedding(ids, torch.tensor([10.0, 30.0, 600.0]))
            actual = pipe.unet(torch.cat([noisy, condition], 1), timestep, encoder_hidden_states=hidden,
                               class_labels=labels).sample
            torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_converted_pipeline_generates_and_saves(tiny_sd_checkpoint, tmp_path):
    pipe = FFADiffusionPipeline.from_stable_diffusion(tiny_sd_checkpoint[0])
    pipe.set_progress_bar_config(disable=True)
    out = pipe(np.full((40, 40, 3), 120, np.uint8), num_inference_steps=2, output_type="np", generator=seeded())
    assert out.images.shape == (1, 32, 32, 1)
    pipe.save_pretrained(tmp_path / "converted")
    assert FFADiffusionPipeline.from_pretrained(tmp_path / "converted").unet.config.in_channels == 8


def _perturb(module: torch.nn.Module, seed: int) -> None:
    generator = seeded(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)


def test_lora_with_trained_modules_load_fuse_unload(tmp_path):
    image = np.full((40, 40, 3), 150, np.uint8)
    call = {"num_inference_steps": 2, "output_type": "np", "disease": "amd"}

    def run(pipe):
        return pipe(image, generator=seeded(5), **call).images

    base = build_pipeline("tiny", seed=0)
    base.set_progress_bar_config(disable=True)
    base_output = run(base)

    trained = build_pipeline("tiny", seed=0)
    trained.set_progress_bar_config(disable=True)
    trained.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                        init_lora_weights=False))
    for module in (trained.condition_encoder, trained.disease_embedding, trained.unet.conv_in):
        _perturb(module, seed=1)
    trained_output = run(trained)
    assert np.abs(trained_output - base_output).max() > 1e-3
    FFADiffusionPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=get_peft_model_state_dict(trained.unet),
        condition_encoder=trained.condition_encoder, disease_embedding=trained.disease_embedding,
        unet_conv_in=trained.unet.conv_in,
    )

    base.load_lora_weights(tmp_path)
    np.testing.assert_allclose(run(base), trained_output, atol=1e-5)
    base.unload_lora_weights()
    np.testing.assert_allclose(run(base), base_output, atol=1e-6)

    base.load_lora_weights(tmp_path)
    base.fuse_lora()
    base.unload_lora_weights()
    np.testing.assert_allclose(run(base), trained_output, atol=1e-4)
