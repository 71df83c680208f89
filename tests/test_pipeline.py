"""FFADiffusionPipeline: call contract, schedulers, batching, determinism and bad input."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import seeded
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

from ffa_pipeline import FFADiffusionPipeline

FAST = {"num_inference_steps": 2}


def test_vocabulary_comes_from_the_config(tiny_pipe):
    assert tiny_pipe.modalities == list(tiny_pipe.condition_encoder.config.modalities)
    assert {"cfp", "oct", "uwf_slo"} <= set(tiny_pipe.modalities)
    assert {"normal", "diabetic_retinopathy", "amd", "vein_occlusion", "glaucoma", "unknown"} <= set(tiny_pipe.diseases)
    assert tiny_pipe.phases["late"] > tiny_pipe.phases["early"]


@pytest.mark.parametrize("output_type", ["pil", "np", "pt"])
def test_output_types(tiny_pipe, fundus_like, output_type):
    out = tiny_pipe(fundus_like, output_type=output_type, generator=seeded(), **FAST)
    image = out.images[0]
    if output_type == "pil":
        assert isinstance(image, PIL.Image.Image) and image.mode == "L" and image.size == (32, 32)
    elif output_type == "np":
        assert out.images.shape == (1, 32, 32, 1) and 0 <= out.images.min() <= out.images.max() <= 1
    else:
        assert out.images.shape == (1, 1, 32, 32)
    assert out.phase_seconds == [tiny_pipe.phases["late"]]


def test_same_seed_same_output_and_other_seed_differs(tiny_pipe, fundus_like):
    first = tiny_pipe(fundus_like, output_type="np", generator=seeded(3), **FAST).images
    again = tiny_pipe(fundus_like, output_type="np", generator=seeded(3), **FAST).images
    other = tiny_pipe(fundus_like, output_type="np", generator=seeded(4), **FAST).images
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0


@pytest.mark.parametrize(
    "scheduler_class", [DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler]
)
def test_schedulers_are_swappable(tiny_pipe, fundus_like, scheduler_class):
    original = tiny_pipe.scheduler
    tiny_pipe.scheduler = scheduler_class.from_config(original.config)
    try:
        out = tiny_pipe(fundus_like, output_type="np", generator=seeded(), num_inference_steps=3)
    finally:
        tiny_pipe.scheduler = original
    assert out.images.shape == (1, 32, 32, 1) and np.isfinite(out.images).all()


@pytest.mark.parametrize(
    "scheduler_class", [DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler]
)
def test_an_angiogram_is_redrawn_larger_from_its_last_steps(tiny_pipe, fundus_like, scheduler_class):
    """A two-pass draw: the output at the model's side, then noised to `strength` and its last steps run at twice
    the side, with any scheduler."""
    original = tiny_pipe.scheduler
    tiny_pipe.scheduler = scheduler_class.from_config(original.config)
    steps = []
    try:
        low = tiny_pipe(fundus_like, output_type="np", generator=seeded(), num_inference_steps=4).images
        high = tiny_pipe(fundus_like, angiogram=low, strength=0.5, num_inference_steps=4, height=64, width=64,
                         output_type="np", generator=seeded(),
                         callback_on_step_end=lambda pipe, i, t, kw: steps.append(int(t)) or {}).images
        tiny_pipe.scheduler.set_timesteps(4)
        schedule = [int(t) for t in tiny_pipe.scheduler.timesteps]
    finally:
        tiny_pipe.scheduler = original
    assert high.shape == (1, 64, 64, 1) and np.isfinite(high).all()
    assert steps == schedule[-2:]


def test_an_angiogram_per_image_or_per_output(tiny_pipe, fundus_like):
    pil = tiny_pipe(fundus_like, generator=seeded(), **FAST).images
    per_image = tiny_pipe(fundus_like, angiogram=pil, strength=0.5, num_images_per_prompt=2, output_type="np",
                          generator=seeded(), **FAST).images
    per_output = tiny_pipe(fundus_like, angiogram=pil * 2, strength=0.5, num_images_per_prompt=2, output_type="np",
                           generator=seeded(), **FAST).images
    # The same draw; float32 kernels round differently for a batch of 1 and of 2 (seen: 2e-6 on one CPU).
    np.testing.assert_allclose(per_image, per_output, atol=1e-5)
    assert not np.allclose(per_image[0], per_image[1])  # each sample its own noise


def test_batched_input_with_per_image_labels(tiny_pipe, fundus_like):
    images = [fundus_like, PIL.Image.fromarray(fundus_like).convert("L"), torch.rand(3, 40, 40)]
    out = tiny_pipe(
        images,
        modality=["cfp", "oct", "uwf_slo"],
        disease=["normal", "amd", "unknown"],
        phase=["early", 120.0, "late"],
        num_images_per_prompt=2,
        output_type="pt",
        generator=[seeded(i) for i in range(6)],
        **FAST,
    )
    assert out.images.shape == (6, 1, 32, 32)
    assert out.phase_seconds == [30.0, 30.0, 120.0, 120.0, 600.0, 600.0]


def test_batch_element_does_not_depend_on_its_neighbours(tiny_pipe, fundus_like):
    alone = tiny_pipe(fundus_like, output_type="np", generator=[seeded(7)], **FAST).images[0]
    batched = tiny_pipe(
        [fundus_like, np.zeros_like(fundus_like) + 90], output_type="np", generator=[seeded(7), seeded(8)], **FAST
    ).images[0]
    np.testing.assert_allclose(alone, batched, atol=1e-5)


@pytest.mark.parametrize(("image_scale", "label_scale", "unet_batch"),
                         [(1.0, 1.0, 1), (1.0, 2.0, 2), (2.0, 1.0, 2), (2.0, 3.0, 3)])
def test_guidance_runs_only_the_branches_it_needs(tiny_pipe, fundus_like, image_scale, label_scale, unet_batch):
    batches = []
    hook = tiny_pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        out = tiny_pipe(fundus_like, image_guidance_scale=image_scale, label_guidance_scale=label_scale,
                        output_type="np", generator=seeded(), **FAST)
    finally:
        hook.remove()
    assert np.isfinite(out.images).all()
    assert set(batches) == {unet_batch}


@pytest.mark.parametrize(("interval", "unet_batches"), [((0, 1), [2, 2]), ((0, 0.5), [2, 1]), ((0.5, 1), [1, 2])])
def test_guidance_interval_guides_only_its_steps(tiny_pipe, fundus_like, interval, unet_batches):
    batches = []
    hook = tiny_pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        outputs = {name: tiny_pipe(fundus_like, image_guidance_scale=3.0, label_guidance_scale=1.0, output_type="np",
                                   generator=seeded(), guidance_interval=chosen, **FAST).images
                   for name, chosen in (("interval", interval), ("every step", None))}
    finally:
        hook.remove()
    assert batches[:2] == unet_batches and batches[2:] == [2, 2]  # the tiny checkpoint guides every step
    assert (np.abs(outputs["interval"] - outputs["every step"]).max() > 1e-4) == (interval != (0, 1))


def test_image_guidance_alone_changes_the_output(tiny_pipe, fundus_like):
    plain, guided = (tiny_pipe(fundus_like, image_guidance_scale=scale, label_guidance_scale=1.0, output_type="np",
                               generator=seeded(), **FAST).images for scale in (1.0, 3.0))
    assert np.abs(plain - guided).max() > 1e-4


def test_output_size_input_restores_size_and_explicit_size(tiny_pipe, fundus_like):
    restored = tiny_pipe(fundus_like, output_size="input", generator=seeded(), **FAST).images[0]
    assert restored.size == (80, 60)
    resized = tiny_pipe(fundus_like, output_size=(48, 40), generator=seeded(), **FAST).images[0]
    assert resized.size == (40, 48)


def test_callback_on_step_end_sees_and_can_replace_latents(tiny_pipe, fundus_like):
    seen = []

    def zero_latents(pipe, step, timestep, kwargs):
        seen.append((step, tuple(kwargs["latents"].shape)))
        return {"latents": torch.zeros_like(kwargs["latents"])}

    out = tiny_pipe(fundus_like, callback_on_step_end=zero_latents, output_type="np", num_inference_steps=3)
    assert [s for s, _ in seen] == [0, 1, 2]
    with torch.no_grad():
        reference = tiny_pipe.decode_latents(torch.zeros(1, 4, 16, 16))
    np.testing.assert_allclose(out.images[0, ..., 0], (reference[0, 0].numpy() + 1) / 2, atol=1e-5)


def test_return_dict_false(tiny_pipe, fundus_like):
    images, seconds = tiny_pipe(fundus_like, return_dict=False, phase=45, **FAST)
    assert len(images) == 1 and seconds == [45.0]


BAD_CALLS = [
    ({"modality": "xray"}, ValueError, "xray"),
    ({"disease": "flu"}, ValueError, "flu"),
    ({"phase": "dawn"}, ValueError, "dawn"),
    ({"phase": 99999}, ValueError, "99999"),
    ({"phase": None}, TypeError, "None"),
    ({"modality": 3}, TypeError, "3"),
    ({"modality": ["cfp", "oct"]}, ValueError, "2 entries"),
    ({"num_inference_steps": 0}, ValueError, "num_inference_steps"),
    ({"num_inference_steps": 2.5}, TypeError, "2.5"),
    ({"num_images_per_prompt": 0}, ValueError, "num_images_per_prompt"),
    ({"output_type": "jpeg"}, ValueError, "jpeg"),
    ({"image_guidance_scale": float("nan")}, ValueError, "nan"),
    ({"height": 18}, ValueError, "18"),
    ({"guidance_interval": (0.5, 0.5)}, ValueError, r"0 <= start < end <= 1, got \(0.5, 0.5\)"),
    ({"guidance_interval": (0, 2)}, ValueError, r"got \(0, 2\)"),
    ({"guidance_interval": "late"}, ValueError, "two numbers .* got 'late'"),
    ({"strength": 0.5}, ValueError, "needs an `angiogram`"),
    ({"strength": 1.5, "angiogram": np.zeros((32, 32))}, ValueError, "1.5"),
    ({"strength": 0.25, "angiogram": np.zeros((32, 32))}, ValueError, r"0.25 of 2 steps runs no step.*0\.5"),
    ({"angiogram": [np.zeros((32, 32))] * 3}, ValueError, "3 images; give one per input image"),
    ({"angiogram": np.zeros((32, 32)), "latents": torch.zeros(1, 4, 16, 16)}, ValueError, "not both"),
    ({"angiogram": np.zeros((32, 48)), "strength": 0.5}, ValueError, "0 is 48x32, not square"),
]


@pytest.mark.parametrize(("kwargs", "error", "names"), BAD_CALLS)
def test_bad_arguments_name_the_value(tiny_pipe, fundus_like, kwargs, error, names):
    with pytest.raises(error, match=names):
        tiny_pipe(fundus_like, **{**FAST, **kwargs})


def test_bad_images_name_the_problem(tiny_pipe):
    with pytest.raises(ValueError, match="empty"):
        tiny_pipe([], **FAST)
    with pytest.raises(ValueError, match="16"):
        tiny_pipe(np.zeros((16, 16, 3), np.uint8), **FAST)
    with pytest.raises(ValueError, match="[Nn]a[Nn]"):
        tiny_pipe(torch.full((3, 40, 40), float("nan")), **FAST)
    with pytest.raises(TypeError, match="int"):
        tiny_pipe(5, **FAST)


def test_pixel_limit_blocks_decompression_bombs(tiny_pipe):
    limited = FFADiffusionPipeline(**tiny_pipe.components, max_input_pixels=10_000)
    with pytest.raises(ValueError, match="10,000"):
        limited(np.zeros((200, 200, 3), np.uint8), **FAST)
