"""FFADiffusionPipeline: a retinal image (fundus photo, OCT en-face, UWF-SLO) -> a synthetic fluorescein angiogram.

Structured like diffusers' `StableDiffusionInstructPix2PixPipeline`: the source image is VAE-encoded and its
latents (passed through the modality's stem of the `CrossModalConditionEncoder`) are concatenated to the noisy
latents; disease and time after injection enter as the UNet's class embedding; two guidance scales steer image
and labels separately. Any diffusers scheduler can be swapped in.

This file is saved as the checkpoint's root `pipeline.py` (with its relative imports beside it), so it only
imports torch, diffusers, numpy, PIL and its sibling modules.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
)
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.schedulers import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.dynamic_modules_utils import get_relative_import_files
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import load_file, save_file

from .condition_encoder import CrossModalConditionEncoder
from .disease_embedding import DiseaseEmbedding
from .image_processing import FFAImageProcessor, check_input_representation
from .light_decoder_vae import LightDecoderAutoencoderKL

PIPELINE_FILE_NAME = "pipeline.py"
CONV_IN_WEIGHT_NAME = "unet_conv_in.safetensors"
CUSTOM_COMPONENTS = ("condition_encoder", "disease_embedding")  # always ours; the VAE is ours when it is not diffusers'
OUTPUT_TYPES = ("pil", "np", "pt")
PIPELINE_SETTINGS = (
    "max_input_pixels", "default_num_inference_steps", "default_image_guidance_scale", "default_label_guidance_scale",
    "default_guidance_interval", "modality_resolutions",
)  # non-component entries of model_index.json
SCHEDULERS = {  # short names for the command lines and the evaluation tables
    "ddim": DDIMScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
    "euler": EulerDiscreteScheduler,
}

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor | str | os.PathLike


@dataclass
class FFAPipelineOutput(BaseOutput):
    """images: the synthetic angiograms (grey); phase_seconds: the time after injection each one shows."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor | list[np.ndarray] | list[torch.Tensor]
    phase_seconds: list[float]


def check_guidance_interval(interval: Any) -> tuple[float, float]:
    """`(start, end)` with 0 <= start < end <= 1 as floats; ValueError naming the bad value otherwise."""
    try:
        start, end = (float(bound) for bound in interval)
    except (TypeError, ValueError):
        raise ValueError(f"`guidance_interval` must be two numbers (start, end), got {interval!r}") from None
    if not 0.0 <= start < end <= 1.0:
        raise ValueError(f"`guidance_interval` must have 0 <= start < end <= 1, got {interval!r}")
    return start, end


def _as_list(value: Any, batch_size: int, name: str) -> list:
    """Broadcast a single value to the batch, or check a per-image list has the batch's length."""
    if isinstance(value, (list, tuple)):
        if len(value) != batch_size:
            raise ValueError(f"`{name}` has {len(value)} entries but {batch_size} images were given")
        return list(value)
    return [value] * batch_size


def _angiogram_list(angiogram: Any) -> list:
    """`angiogram` as a list of images: a batch array or tensor (as `output_type="np"` / `"pt"` return) is split."""
    if isinstance(angiogram, (list, tuple)):
        return list(angiogram)
    if isinstance(angiogram, (np.ndarray, torch.Tensor)) and angiogram.ndim == 4:
        return list(angiogram)
    return [angiogram]


def make_scheduler(name: str, config) -> SchedulerMixin:
    """A scheduler name from `SCHEDULERS` -> that scheduler with a checkpoint's noise schedule (`config`)."""
    if name not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler {name!r}; allowed: {list(SCHEDULERS)}")
    return SCHEDULERS[name].from_config(config)


class FFADiffusionPipeline(DiffusionPipeline, StableDiffusionLoraLoaderMixin):
    r"""Pipeline for retinal image -> fluorescein angiogram translation.

    Components:
        vae ([`AutoencoderKL`] or [`LightDecoderAutoencoderKL`], the same with a lighter decoder): encodes the
            source image and decodes the angiogram latents.
        unet ([`UNet2DConditionModel`]): `in_channels = 2 * latent_channels` (noisy + source latents),
            `class_embed_type="identity"` (fed by `disease_embedding`).
        condition_encoder ([`CrossModalConditionEncoder`]): modality stems and cross-attention context.
        disease_embedding ([`DiseaseEmbedding`]): disease + time after injection -> class embedding.
        scheduler ([`SchedulerMixin`]): any diffusers scheduler (DDIM, DPMSolverMultistep, UniPC, Euler, ...).

    The vocabularies (modalities, diseases, named phases) live in the components' configs; see `modalities`,
    `diseases` and `phases`. The checkpoint's recommended settings live in `model_index.json`: sampling
    (`default_num_inference_steps`, `default_*_guidance_scale`) and `modality_resolutions`, the output side of a
    modality drawn at other than `default_resolution` (see `resolution_for`).
    """

    model_cpu_offload_seq = "condition_encoder->unet->vae"
    _optional_components = []
    _callback_tensor_inputs = ["latents"]
    _lora_loadable_modules = ["unet"]
    text_encoder = None

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        condition_encoder: CrossModalConditionEncoder,
        disease_embedding: DiseaseEmbedding,
        scheduler: KarrasDiffusionSchedulers | SchedulerMixin,
        max_input_pixels: int = 40_000_000,
        default_num_inference_steps: int = 20,
        default_image_guidance_scale: float = 1.5,
        default_label_guidance_scale: float = 1.5,
        default_guidance_interval: tuple[float, float] = (0.0, 1.0),
        modality_resolutions: dict[str, int] | None = None,
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            unet=unet,
            condition_encoder=condition_encoder,
            disease_embedding=disease_embedding,
            scheduler=scheduler,
        )
        # The checkpoint's recommended sampling settings (the trainer records the steps-vs-quality choice here);
        # `__call__` arguments left at None take them.
        self.register_to_config(
            max_input_pixels=max_input_pixels,
            default_num_inference_steps=default_num_inference_steps,
            default_image_guidance_scale=default_image_guidance_scale,
            default_label_guidance_scale=default_label_guidance_scale,
            default_guidance_interval=list(check_guidance_interval(default_guidance_interval)),
            modality_resolutions=dict(modality_resolutions or {}),
        )
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.check_modality_resolutions(self.config.modality_resolutions)
        self.image_processor = FFAImageProcessor(
            resolution=self.default_resolution, max_pixels=max_input_pixels
        )
        check_input_representation(self.input_representation)

    def guidance_interval_or_default(self, guidance_interval: tuple[float, float] | None) -> tuple[float, float]:
        """The given guidance interval (checked), or the checkpoint's `default_guidance_interval` for None."""
        return check_guidance_interval(self.config.default_guidance_interval if guidance_interval is None
                                       else guidance_interval)

    def sampling_settings(
        self,
        num_inference_steps: int | None = None,
        image_guidance_scale: float | None = None,
        label_guidance_scale: float | None = None,
    ) -> tuple[int, float, float]:
        """The given sampling settings, each None replaced by the checkpoint's recommended default."""
        return (
            self.config.default_num_inference_steps if num_inference_steps is None else num_inference_steps,
            self.config.default_image_guidance_scale if image_guidance_scale is None else image_guidance_scale,
            self.config.default_label_guidance_scale if label_guidance_scale is None else label_guidance_scale,
        )

    # ----------------------------------------------------------------------------------------------- vocabulary
    @property
    def modalities(self) -> list[str]:
        """Input modalities this checkpoint was built for (from its config)."""
        return list(self.condition_encoder.config.modalities)

    @property
    def diseases(self) -> list[str]:
        """Disease labels this checkpoint was built for (from its config); "unknown" is always one."""
        return list(self.disease_embedding.config.diseases)

    @property
    def phases(self) -> dict[str, float]:
        """Named FFA phases -> seconds after injection (from its config)."""
        return dict(self.disease_embedding.config.phases)

    @property
    def input_representation(self) -> str:
        """What the condition encoder sees of a source image ("rgb" or "grey_ridges"), from its config."""
        return self.condition_encoder.config.input_representation

    @property
    def native_resolution_ridges(self) -> list[str]:
        """Modalities whose ridge maps come from the source at its own resolution (from the config; see
        `image_processing.NATIVE_RIDGE_MAX_FACTOR`)."""
        return list(self.condition_encoder.config.get("native_resolution_ridges") or [])

    @property
    def default_resolution(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def size_multiple(self) -> int:
        """Output sides must be multiples of this (VAE x UNet downsampling)."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def check_resolution(self, resolution: int) -> int:
        """A training or evaluation `--resolution`, checked against `size_multiple`; ValueError naming it."""
        if resolution % self.size_multiple:
            raise ValueError(f"--resolution must be divisible by {self.size_multiple} (VAE x UNet downsampling), "
                             f"got {resolution}")
        return resolution

    def resolution_for(self, modality: str | list[str]) -> int:
        """The output side when `height`/`width` are not given: the checkpoint's `modality_resolutions` entry for
        the modality (the largest of a batch's), else `default_resolution`. A checkpoint records a larger side for a
        modality whose images show more than the model can draw at its own (a 200-degree UWF frame at 256 px)."""
        names = modality if isinstance(modality, (list, tuple)) else [modality]
        resolutions = self.config.get("modality_resolutions") or {}
        return max(int(resolutions.get(name, self.default_resolution)) for name in names)

    def check_modality_resolutions(self, resolutions: dict[str, int]) -> None:
        """Each entry a known modality and a positive multiple of `size_multiple`; errors name the bad one."""
        for name, size in resolutions.items():
            if name not in self.modalities:
                raise ValueError(f"Unknown modality {name!r} in modality_resolutions; this model knows "
                                 f"{self.modalities}")
            multiple = self.size_multiple
            if isinstance(size, bool) or not isinstance(size, int) or size < multiple or size % multiple:
                raise ValueError(f"modality_resolutions[{name!r}] must be a multiple of {multiple} (>= {multiple}), "
                                 f"got {size!r}")

    # ------------------------------------------------------------------------------------------------- inputs
    def phase_to_seconds(self, phase: str | float | int) -> float:
        """A phase name of this model, or seconds in [0, max_phase_seconds]; ValueError/TypeError otherwise."""
        max_seconds = float(self.disease_embedding.config.max_phase_seconds)
        allowed = f"{sorted(self.phases)} or seconds in [0, {max_seconds:g}]"
        if isinstance(phase, bool) or not isinstance(phase, (str, int, float)):
            raise TypeError(f"`phase` must be a phase name or a number of seconds, got {phase!r}; allowed: {allowed}")
        if isinstance(phase, str):
            if phase in self.phases:
                return float(self.phases[phase])
            raise ValueError(f"Unknown FFA phase {phase!r}; allowed: {allowed}")
        if not 0.0 <= float(phase) <= max_seconds:
            raise ValueError(f"FFA phase {phase!r} s is out of range; allowed: {allowed}")
        return float(phase)

    def check_inputs(
        self,
        image: ImageInput | list[ImageInput],
        modality: str | list[str],
        disease: str | list[str],
        phase: str | float | list[str | float],
        num_inference_steps: int,
        image_guidance_scale: float,
        label_guidance_scale: float,
        num_images_per_prompt: int,
        output_type: str,
        height: int | None,
        width: int | None,
        callback_on_step_end_tensor_inputs: list[str] | None,
        angiogram: Any = None,
        strength: float = 1.0,
        latents: torch.Tensor | None = None,
    ) -> None:
        """Validate everything before any work; errors name the bad value and the allowed ones."""
        if image is None or (isinstance(image, (list, tuple)) and len(image) == 0):
            raise ValueError("`image` must be an image or a non-empty list of images, got an empty input")
        batch_size = len(image) if isinstance(image, (list, tuple)) else 1
        for name, values, allowed in (("modality", modality, self.modalities), ("disease", disease, self.diseases)):
            for value in _as_list(values, batch_size, name):
                if not isinstance(value, str):
                    raise TypeError(f"`{name}` must be a string from {allowed}, got {value!r}")
                if value not in allowed:
                    raise ValueError(f"Unknown {name} {value!r}; this model knows {allowed}")
        for value in _as_list(phase, batch_size, "phase"):
            self.phase_to_seconds(value)
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
            raise TypeError(f"`num_inference_steps` must be an int >= 1, got {num_inference_steps!r}")
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
        if isinstance(num_images_per_prompt, bool) or not isinstance(num_images_per_prompt, int):
            raise TypeError(f"`num_images_per_prompt` must be an int >= 1, got {num_images_per_prompt!r}")
        if num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` must be >= 1, got {num_images_per_prompt}")
        scales = {"image_guidance_scale": image_guidance_scale, "label_guidance_scale": label_guidance_scale}
        for name, scale in scales.items():
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not np.isfinite(scale) or scale < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {scale!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"Unknown output_type {output_type!r}; allowed: {list(OUTPUT_TYPES)}")
        multiple = self.size_multiple
        for name, size in (("height", height), ("width", width)):
            if size is not None and (not isinstance(size, int) or size < multiple or size % multiple):
                raise ValueError(f"`{name}` must be a multiple of {multiple} (>= {multiple}), got {size!r}")
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(f"Unknown callback tensor inputs {unknown}; allowed: {self._callback_tensor_inputs}")
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
            raise ValueError(f"`strength` must be a number in (0, 1], got {strength!r}")
        if angiogram is None:
            if strength != 1:
                raise ValueError(f"`strength` {strength} needs an `angiogram` to start from; without one it must be 1")
            return
        if latents is not None:
            raise ValueError("Give `angiogram` or `latents`, not both: the noise of an angiogram's start is drawn")
        if int(num_inference_steps * strength) < 1:
            raise ValueError(f"`strength` {strength} of {num_inference_steps} steps runs no step; "
                             f"it must be >= 1 / num_inference_steps = {1 / num_inference_steps:.3g}")
        count = len(_angiogram_list(angiogram))
        if count not in (batch_size, batch_size * num_images_per_prompt):
            raise ValueError(f"`angiogram` has {count} images; give one per input image ({batch_size}) or one per "
                             f"output ({batch_size * num_images_per_prompt})")

    # -------------------------------------------------------------------------------------------- latents
    def _vae_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> scaled latents (the same convention as the trainer)."""
        posterior = self.vae.encode(images.to(self.vae.device, self.vae.dtype)).latent_dist
        latents = posterior.mode()
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * self.vae.config.scaling_factor

    def prepare_image_latents(self, images: torch.Tensor, num_images_per_prompt: int) -> torch.Tensor:
        """Encode the preprocessed source images once and repeat them for each sample."""
        latents = self._vae_latents(images)
        return latents.repeat_interleave(num_images_per_prompt, dim=0)

    def prepare_angiogram_latents(
        self,
        angiogram: Any,
        num_outputs: int,
        height: int,
        width: int,
        timestep: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> torch.Tensor:
        """The angiograms to start from, resized to `height` x `width`, encoded and noised to `timestep` (as
        diffusers' img2img pipelines start from an image): one per input image, repeated for its samples, or one per
        output."""
        greys = [self.image_processor.to_float_rgb(item).mean(axis=2) for item in _angiogram_list(angiogram)]
        for index, grey in enumerate(greys):
            if grey.shape[0] != grey.shape[1]:
                raise ValueError(f"`angiogram` {index} is {grey.shape[1]}x{grey.shape[0]}, not square: give it in the "
                                 "pipeline's frame (its own output with `output_size=None`)")
        pixels = torch.cat([
            torch.nn.functional.interpolate(torch.from_numpy(grey)[None, None], size=(height, width), mode="bicubic",
                                            antialias=True)
            for grey in greys
        ]).clamp(0, 1)
        latents = self._vae_latents((pixels * 2 - 1).repeat(1, 3, 1, 1).to(self._execution_device))
        latents = latents.repeat_interleave(num_outputs // len(greys), dim=0).to(self.unet.dtype)
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        return self.scheduler.add_noise(latents, noise, timestep.repeat(num_outputs))

    def get_timesteps(self, num_inference_steps: int, strength: float) -> torch.Tensor:
        """The last `strength` of the schedule (diffusers' img2img rule): the steps from an angiogram noised that
        far."""
        steps = min(int(num_inference_steps * strength), num_inference_steps)
        start = (num_inference_steps - steps) * self.scheduler.order
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start)
        return self.scheduler.timesteps[start:]

    def prepare_latents(
        self,
        batch_size: int,
        num_channels_latents: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        shape = (batch_size, num_channels_latents, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(
                f"You passed {len(generator)} generators but the effective batch size is {batch_size}"
                " (images x num_images_per_prompt)"
            )
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"`latents` has shape {tuple(latents.shape)}, expected {shape}")
        else:
            latents = latents.to(device=device, dtype=dtype)
        return latents * self.scheduler.init_noise_sigma

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> grey angiograms [B, 1, H, W] in [-1, 1]."""
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        latents = latents / self.vae.config.scaling_factor + shift
        decoded = self.vae.decode(latents.to(self.vae.dtype)).sample.float()
        return decoded.mean(dim=1, keepdim=True).clamp(-1, 1)

    # ---------------------------------------------------------------------------------------------- guidance
    @property
    def image_guidance_scale(self) -> float:
        return self._image_guidance_scale

    @property
    def label_guidance_scale(self) -> float:
        return self._label_guidance_scale

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    def _guidance_branches(self) -> tuple[str, ...]:
        """The UNet passes that the guidance scales need, run as one batch: the cost of a step grows with their number.

        Both scales: InstructPix2Pix's three passes (full, image-only, unconditional). One scale alone needs only the
        pass without that condition: image guidance with the labels kept ("labels_only", the image dropped), or
        label guidance with the image kept ("image_only"); the trainer drops image and labels independently, so the
        model knows every branch.
        """
        if self.image_guidance_scale == 1.0 and self.label_guidance_scale == 1.0:
            return ("full",)
        if self.image_guidance_scale == 1.0:
            return ("full", "image_only")
        if self.label_guidance_scale == 1.0:
            return ("full", "labels_only")
        return ("full", "image_only", "unconditional")

    def _conditioning(
        self,
        image_latents: torch.Tensor,
        modality_ids: torch.Tensor,
        disease_ids: torch.Tensor,
        phase_seconds: torch.Tensor,
        branches: tuple[str, ...],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stack the guidance branches along the batch once per call."""
        batch, device = image_latents.shape[0], image_latents.device
        drop_image = torch.tensor([b in ("labels_only", "unconditional") for b in branches], device=device)
        drop_labels = torch.tensor([b in ("image_only", "unconditional") for b in branches], device=device)
        encoded = self.condition_encoder(
            image_latents.repeat(len(branches), 1, 1, 1),
            modality_ids.repeat(len(branches)),
            drop_image=drop_image.repeat_interleave(batch),
        )
        class_labels = self.disease_embedding(
            disease_ids.repeat(len(branches)),
            phase_seconds.repeat(len(branches)),
            drop_labels=drop_labels.repeat_interleave(batch),
        )
        dtype = self.unet.dtype
        return encoded.shared_latents.to(dtype), encoded.context.to(dtype), class_labels.to(dtype)

    def _combine_guidance(self, noise_pred: torch.Tensor, branches: tuple[str, ...]) -> torch.Tensor:
        predictions = dict(zip(branches, noise_pred.chunk(len(branches))))
        full = predictions["full"]
        if "unconditional" in predictions:
            uncond, image_only = predictions["unconditional"], predictions["image_only"]
            return (
                uncond
                + self.image_guidance_scale * (image_only - uncond)
                + self.label_guidance_scale * (full - image_only)
            )
        if "image_only" in predictions:
            return predictions["image_only"] + self.label_guidance_scale * (full - predictions["image_only"])
        if "labels_only" in predictions:
            return predictions["labels_only"] + self.image_guidance_scale * (full - predictions["labels_only"])
        return full

    # ------------------------------------------------------------------------------------------------- call
    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput | list[ImageInput],
        modality: str | list[str] = "cfp",
        disease: str | list[str] = "unknown",
        phase: str | float | list[str | float] = "late",
        num_inference_steps: int | None = None,
        image_guidance_scale: float | None = None,
        label_guidance_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        angiogram: Any = None,
        strength: float = 1.0,
        height: int | None = None,
        width: int | None = None,
        output_type: str = "pil",
        output_size: str | tuple[int, int] | None = None,
        return_dict: bool = True,
        callback_on_step_end: Callable[[Any, int, Any, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> FFAPipelineOutput | tuple:
        r"""Generate the angiogram(s) that the eye(s) in `image` would show.

        Args:
            image: one retinal image or a list (PIL, numpy uint8/uint16/float in [0, 1], torch CHW in [0, 1], or a
                path). Any size and aspect; the circular field of view is found and cropped to a square.
            modality: input modality, one for all images or one per image (see `pipe.modalities`).
            disease: disease label, one or one per image (see `pipe.diseases`; "unknown" when not known).
            phase: FFA phase name (see `pipe.phases`) or seconds after dye injection, one or one per image.
            num_inference_steps: denoising steps (None: the checkpoint's `default_num_inference_steps`).
            image_guidance_scale: how strongly to follow the input image (1 = no image guidance; None: the
                checkpoint's `default_image_guidance_scale`).
            label_guidance_scale: how strongly to follow disease and phase (1 = no label guidance; None: the
                checkpoint's `default_label_guidance_scale`). Each step runs the UNet on 1 branch with neither
                guidance, 2 with one of them and 3 with both, so the cost of a step grows with them.
            guidance_interval: `(start, end)`, the fraction of the steps in which the guidance applies (as
                ControlNet's `control_guidance_start` / `_end` and diffusers' guiders' `start` / `stop`): step `i`
                of `n` is guided when `start <= i / n < end`, the others run the UNet on one branch (a
                limited guidance interval: Kynkäänniemi et al. 2024). None: the checkpoint's
                `default_guidance_interval`; `(0, 1)` guides every step.
            num_images_per_prompt: samples per input image (e.g. for uncertainty maps).
            generator: torch generator(s) for reproducibility; same seed, same output.
            latents: pre-generated initial noise `[B * num_images_per_prompt, C, H/8, W/8]`.
            angiogram: an angiogram to start from instead of pure noise, one per input image or one per output, in
                this pipeline's square frame at any side (e.g. its own output with `output_size=None`, as PIL, or
                the batch that `output_type="np"` or `"pt"` returns). It is resized to `height` x `width`,
                encoded and noised to `strength`, and only the last `strength` of the steps run: drawn at a small
                side and redrawn at a larger one with `strength` 0.5, a frame keeps its layout and gains detail.
            strength: how much of the schedule to run from `angiogram` (0 < strength <= 1; 1 without one).
            height, width: model resolution (default: `pipe.resolution_for(modality)`, the checkpoint's side for the
                modality, else the UNet's sample size x the VAE scale factor).
            output_type: "pil" (grey `PIL.Image`), "np" (`[B, H, W, 1]` float in [0, 1]) or "pt" (`[B, 1, H, W]`).
            output_size: None (model resolution), "input" (each output mapped back onto its input's size and
                framing) or an explicit `(height, width)`.
            return_dict: return an [`FFAPipelineOutput`] rather than a tuple.
            callback_on_step_end: `fn(pipe, step, timestep, callback_kwargs) -> dict` called after every step; may
                replace tensors named in `callback_on_step_end_tensor_inputs` (default `["latents"]`).

        Returns:
            [`FFAPipelineOutput`] (or `(images, phase_seconds)`), images in the order image x sample.
        """
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        num_inference_steps, image_guidance_scale, label_guidance_scale = self.sampling_settings(
            num_inference_steps, image_guidance_scale, label_guidance_scale
        )
        self.check_inputs(
            image, modality, disease, phase, num_inference_steps, image_guidance_scale, label_guidance_scale,
            num_images_per_prompt, output_type, height, width, callback_on_step_end_tensor_inputs, angiogram,
            strength, latents,
        )
        guidance_start, guidance_end = self.guidance_interval_or_default(guidance_interval)
        self._image_guidance_scale = float(image_guidance_scale)
        self._label_guidance_scale = float(label_guidance_scale)
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        batch_size = len(images)
        modalities = _as_list(modality, batch_size, "modality")
        height = height or self.resolution_for(modalities)
        width = width or self.resolution_for(modalities)
        device = self._execution_device

        # 1. Preprocess: field of view -> square -> model resolution, in [-1, 1].
        rgbs, framings = self.image_processor.decode_and_frame(images)
        pixels = self.image_processor.framed_pixels(rgbs, framings, resolution=max(height, width))
        if pixels.shape[-2:] != (height, width):
            pixels = torch.nn.functional.interpolate(pixels, size=(height, width), mode="bilinear", antialias=True)
        details = [
            self.image_processor.ridge_detail(rgb, framing, max(height, width))
            if name in self.native_resolution_ridges else None
            for rgb, framing, name in zip(rgbs, framings, modalities)
        ]
        pixels = self.image_processor.to_model_input(pixels, self.input_representation, details)

        # 2. Labels, repeated per sample.
        def per_sample(values: list) -> list:
            return [value for value in values for _ in range(num_images_per_prompt)]

        modality_ids = torch.tensor(
            per_sample([self.condition_encoder.modality_index(m) for m in modalities]),
            device=device,
        )
        disease_ids = torch.tensor(
            per_sample([self.disease_embedding.disease_index(d) for d in _as_list(disease, batch_size, "disease")]),
            device=device,
        )
        seconds = [self.phase_to_seconds(p) for p in _as_list(phase, batch_size, "phase")]
        phase_seconds = torch.tensor(per_sample(seconds), device=device, dtype=torch.float32)

        # 3. Source latents and the conditioning for every guidance branch.
        image_latents = self.prepare_image_latents(pixels.to(device), num_images_per_prompt)
        branches = self._guidance_branches()
        shared_latents, context, class_labels = self._conditioning(
            image_latents, modality_ids, disease_ids, phase_seconds, branches
        )

        # 4. Timesteps and initial noise (or the given angiogram, noised to `strength`).
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps if angiogram is None else self.get_timesteps(num_inference_steps, strength)
        self._num_timesteps = len(timesteps)
        if angiogram is None:
            latents = self.prepare_latents(
                batch_size * num_images_per_prompt,
                self.vae.config.latent_channels,
                height,
                width,
                self.unet.dtype,
                device,
                generator,
                latents,
            )
        else:
            latents = self.prepare_angiogram_latents(
                angiogram, batch_size * num_images_per_prompt, height, width, timesteps[:1], generator
            )
        accepts_generator = "generator" in inspect.signature(self.scheduler.step).parameters
        step_kwargs = {"generator": generator} if accepts_generator and not isinstance(generator, list) else {}

        # 5. Denoising loop.
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                guided = guidance_start <= i / len(timesteps) < guidance_end
                step_branches = branches if guided else branches[:1]  # "full" comes first in the stacked batch
                rows = len(step_branches) * latents.shape[0]
                model_input = self.scheduler.scale_model_input(torch.cat([latents] * len(step_branches)), t)
                model_input = torch.cat([model_input, shared_latents[:rows]], dim=1)
                noise_pred = self.unet(
                    model_input, t, encoder_hidden_states=context[:rows], class_labels=class_labels[:rows],
                    return_dict=False,
                )[0]
                noise_pred = self._combine_guidance(noise_pred, step_branches)
                latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
                if callback_on_step_end is not None:
                    step_tensors = {"latents": latents}
                    callback_kwargs = {k: step_tensors[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                progress_bar.update()

        # 6. Decode and map back.
        angiograms = self.decode_latents(latents)
        if angiograms.shape[-2] != angiograms.shape[-1]:
            side = max(angiograms.shape[-2:])
            angiograms = torch.nn.functional.interpolate(angiograms, size=(side, side), mode="bilinear")
        output = self.image_processor.postprocess(
            angiograms.cpu(), output_type=output_type, framings=per_sample(framings), output_size=output_size
        )
        self.maybe_free_model_hooks()
        phase_per_image = per_sample(seconds)
        if not return_dict:
            return output, phase_per_image
        return FFAPipelineOutput(images=output, phase_seconds=phase_per_image)

    # ------------------------------------------------------------------------------------ save / load
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        push_to_hub: bool = False,
        **kwargs,
    ) -> None:
        """Save in the Hub layout that loads with or without the `ffa_pipeline` package.

        Writes the weights (safetensors only), then the code: the pipeline as a root `pipeline.py` with the files it
        imports, and each custom component's module in its own folder, with `model_index.json` pointing at them.
        Saving a pipeline that was itself loaded with `trust_remote_code=True` writes the same layout again.
        """
        if not safe_serialization:
            raise ValueError("FFADiffusionPipeline saves safetensors only (safe_serialization=False is not allowed)")
        save_directory = Path(save_directory)
        super().save_pretrained(save_directory, safe_serialization=True, variant=variant)
        index_path = save_directory / "model_index.json"
        index = json.loads(index_path.read_text())
        index["_class_name"] = ["pipeline", type(self).__name__]
        index.pop("_name_or_path", None)  # where it was loaded from is not part of the checkpoint
        _copy_module_with_imports(inspect.getsourcefile(type(self)), save_directory, PIPELINE_FILE_NAME)
        own_vae = not type(self.vae).__module__.startswith("diffusers.")
        for name in (*CUSTOM_COMPONENTS, "vae") if own_vae else CUSTOM_COMPONENTS:
            module_file = inspect.getsourcefile(type(getattr(self, name)))
            module_name = Path(module_file).stem
            _copy_module_with_imports(module_file, save_directory / name, f"{module_name}.py")
            index[name] = [module_name, type(getattr(self, name)).__name__]
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        if push_to_hub:
            from huggingface_hub import create_repo, upload_folder

            repo_id = kwargs.pop("repo_id", save_directory.name)
            repo_id = create_repo(repo_id, exist_ok=True, private=kwargs.pop("private", None),
                                  token=kwargs.get("token")).repo_id
            upload_folder(repo_id=repo_id, folder_path=save_directory, token=kwargs.get("token"),
                          commit_message=kwargs.pop("commit_message", "Upload FFADiffusionPipeline"))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> FFADiffusionPipeline:
        """Load a saved pipeline (local folder or Hub id) with this package's classes.

        diffusers would run the checkpoint's own `pipeline.py` (needing `trust_remote_code=True`); with the package
        installed we load each component ourselves instead. Loading kwargs (`dtype`, `revision`, `variant`,
        `cache_dir`, `token`, `local_files_only`, `subfolder`-free) are passed to every component; components passed
        as kwargs are used as they are.
        """
        loading_keys = ("dtype", "torch_dtype", "revision", "variant", "cache_dir", "token", "local_files_only",
                        "force_download", "proxies")
        loading = {k: kwargs.pop(k) for k in loading_keys if k in kwargs}
        if "torch_dtype" in loading:
            loading["dtype"] = loading.pop("torch_dtype")
        index = _read_model_index(pretrained_model_name_or_path, loading)
        own_classes = {cls.__name__: cls for cls in (CrossModalConditionEncoder, DiseaseEmbedding,
                                                      LightDecoderAutoencoderKL)}
        components = {}
        for name in ("vae", "unet", "condition_encoder", "disease_embedding", "scheduler"):
            if name in kwargs:
                components[name] = kwargs.pop(name)
                continue
            if name not in index:
                raise ValueError(f"{pretrained_model_name_or_path} has no `{name}` in model_index.json")
            if index[name][1] in own_classes:
                component_class = own_classes[index[name][1]]
            else:
                import diffusers

                component_class = getattr(diffusers, index[name][1])
            component_kwargs = dict(loading)
            if name == "scheduler":
                component_kwargs = {k: v for k, v in loading.items() if k not in ("dtype", "variant")}
            components[name] = component_class.from_pretrained(
                pretrained_model_name_or_path, subfolder=name, **component_kwargs
            )
        if kwargs:
            unknown = sorted(set(kwargs) - set(PIPELINE_SETTINGS))
            if unknown:
                raise TypeError(f"Unexpected keyword arguments for from_pretrained: {unknown}")
        config = {k: index[k] for k in PIPELINE_SETTINGS if k in index}
        config.update(kwargs)
        pipe = cls(**components, **config)
        pipe.register_to_config(_name_or_path=str(pretrained_model_name_or_path))  # as diffusers: `pipe.name_or_path`
        return pipe

    @classmethod
    def from_stable_diffusion(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        modalities: list[str] | None = None,
        diseases: list[str] | None = None,
        phases: dict[str, float] | None = None,
        condition_hidden_channels: int = 64,
        num_context_tokens: int = 4,
        **kwargs,
    ) -> FFADiffusionPipeline:
        """Build an FFA pipeline (condition untrained) from a Stable Diffusion 1.x/2.x checkpoint or Hub id.

        The UNet's `conv_in` is widened to take the source latents too, with the new input channels zero-initialised
        and `class_embed_type="identity"` fed by a zero-initialised `DiseaseEmbedding`: before any training the
        converted UNet reproduces the base UNet exactly, whatever the condition latents and labels. Loading kwargs
        (`dtype`, `revision`, `variant`, `cache_dir`, `token`, ...) go to each `from_pretrained`.
        """
        from diffusers import DDIMScheduler

        from .vocab import DISEASES, MODALITIES, PHASES

        vae = AutoencoderKL.from_pretrained(pretrained_model_name_or_path, subfolder="vae", **kwargs)
        base_unet = UNet2DConditionModel.from_pretrained(pretrained_model_name_or_path, subfolder="unet", **kwargs)
        scheduler_kwargs = {k: v for k, v in kwargs.items() if k not in ("dtype", "torch_dtype", "variant")}
        scheduler = DDIMScheduler.from_pretrained(pretrained_model_name_or_path, subfolder="scheduler",
                                                  **scheduler_kwargs)
        unet = widen_unet_for_condition(base_unet)
        latent_channels = vae.config.latent_channels
        condition_encoder = CrossModalConditionEncoder(
            modalities=list(modalities or MODALITIES),
            latent_channels=latent_channels,
            hidden_channels=condition_hidden_channels,
            num_context_tokens=num_context_tokens,
            cross_attention_dim=unet.config.cross_attention_dim,
        ).to(unet.dtype)
        disease_embedding = DiseaseEmbedding(
            diseases=list(diseases or DISEASES),
            phases=dict(phases or PHASES),
            embedding_dim=unet.time_embedding.linear_2.out_features,
        ).to(unet.dtype)
        return cls(vae=vae, unet=unet, condition_encoder=condition_encoder, disease_embedding=disease_embedding,
                   scheduler=scheduler)

    # ----------------------------------------------------------------------------------------------- LoRA
    @classmethod
    def save_lora_weights(
        cls,
        save_directory: str | os.PathLike,
        unet_lora_layers: dict[str, torch.Tensor] | None = None,
        condition_encoder: CrossModalConditionEncoder | None = None,
        disease_embedding: DiseaseEmbedding | None = None,
        unet_conv_in: torch.nn.Conv2d | None = None,
        **kwargs,
    ) -> None:
        """Save a UNet LoRA adapter plus the parts that LoRA does not cover (trained in full beside it).

        LoRA wraps attention (and optionally resnet) layers only; the widened `conv_in`, the condition encoder and
        the disease embedding are trained in full in the few-shot protocol, so they are saved here too and
        `load_lora_weights` puts them back.
        """
        super().save_lora_weights(save_directory, unet_lora_layers=unet_lora_layers, **kwargs)
        if kwargs.get("is_main_process", True) is False:
            return
        save_directory = Path(save_directory)
        for name, module in (("condition_encoder", condition_encoder), ("disease_embedding", disease_embedding)):
            if module is not None:
                module.save_pretrained(save_directory / name)
        if unet_conv_in is not None:
            state = {f"conv_in.{k}": v.detach().contiguous().cpu() for k, v in unet_conv_in.state_dict().items()}
            save_file(state, save_directory / CONV_IN_WEIGHT_NAME)

    def load_lora_weights(
        self, pretrained_model_name_or_path_or_dict: str | os.PathLike | dict, adapter_name: str | None = None,
        **kwargs,
    ) -> None:
        """Load a UNet LoRA adapter, and the fully trained conv_in / encoder / disease embedding saved beside it."""
        super().load_lora_weights(pretrained_model_name_or_path_or_dict, adapter_name=adapter_name, **kwargs)
        if isinstance(pretrained_model_name_or_path_or_dict, dict):
            return
        source = str(pretrained_model_name_or_path_or_dict)
        if not hasattr(self, "_pre_lora_modules"):
            self._pre_lora_modules = {
                "condition_encoder": self.condition_encoder,
                "disease_embedding": self.disease_embedding,
                "conv_in": {k: v.clone() for k, v in self.unet.conv_in.state_dict().items()},
            }
        hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        for name, component_class in (("condition_encoder", type(self.condition_encoder)),
                                      ("disease_embedding", type(self.disease_embedding))):
            config_file = _resolve_file(source, f"{name}/config.json", hub_kwargs)
            if config_file is not None:
                module = component_class.from_pretrained(source, subfolder=name, **hub_kwargs)
                setattr(self, name, module.to(self.device, self.unet.dtype))
                self.register_modules(**{name: getattr(self, name)})
        conv_in_file = _resolve_file(source, CONV_IN_WEIGHT_NAME, hub_kwargs)
        if conv_in_file is not None:
            state = {k.removeprefix("conv_in."): v for k, v in load_file(conv_in_file).items()}
            self.unet.conv_in.load_state_dict(state)

    def fuse_lora(self, components: list[str] | None = None, lora_scale: float = 1.0, **kwargs) -> None:
        """Fuse the UNet LoRA; the fully trained parts loaded with it become the pipeline's own."""
        super().fuse_lora(components=components or ["unet"], lora_scale=lora_scale, **kwargs)
        self.__dict__.pop("_pre_lora_modules", None)

    def unload_lora_weights(self) -> None:
        """Remove LoRA layers and, unless fused, restore the conv_in / encoder / disease embedding from before."""
        super().unload_lora_weights()
        previous = self.__dict__.pop("_pre_lora_modules", None)
        if previous is not None:
            self.register_modules(
                condition_encoder=previous["condition_encoder"], disease_embedding=previous["disease_embedding"]
            )
            self.unet.conv_in.load_state_dict(previous["conv_in"])


def widen_unet_for_condition(base_unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """A copy of `base_unet` taking `2 x in_channels` inputs and an identity class embedding.

    Built from the config (not `from_pretrained(..., num_class_embeds=...)`, which leaves new weights uninitialised)
    and loaded with the base state dict; the new `conv_in` channels are zero, so the output is unchanged at first.
    """
    in_channels = base_unet.config.in_channels
    config = {**base_unet.config, "in_channels": 2 * in_channels, "class_embed_type": "identity",
              "num_class_embeds": None}
    unet = UNet2DConditionModel.from_config(config).to(base_unet.dtype)
    state = base_unet.state_dict()
    weight = state["conv_in.weight"]
    widened = torch.zeros(weight.shape[0], 2 * in_channels, *weight.shape[2:], dtype=weight.dtype)
    widened[:, :in_channels] = weight
    state["conv_in.weight"] = widened
    for key in [k for k in state if k.startswith("class_embedding.")]:
        state.pop(key)
    unet.load_state_dict(state, strict=True)
    return unet


def _copy_module_with_imports(module_file: str, target_dir: Path, target_name: str) -> None:
    """Copy a module and, recursively, the sibling files it imports relatively, as diffusers' dynamic loader wants."""
    target_dir.mkdir(parents=True, exist_ok=True)
    source = Path(module_file)
    if (target_dir / target_name).resolve() != source.resolve():
        shutil.copyfile(source, target_dir / target_name)
    for dependency in get_relative_import_files(str(source)):
        dependency = Path(dependency)
        if (target_dir / dependency.name).resolve() != dependency.resolve():
            shutil.copyfile(dependency, target_dir / dependency.name)


def _resolve_file(source: str, filename: str, hub_kwargs: dict) -> str | None:
    """A file of a local folder or a Hub repo, or None when it does not exist there."""
    if os.path.isdir(source):
        path = os.path.join(source, filename)
        return path if os.path.isfile(path) else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return hf_hub_download(source, filename, **hub_kwargs)
    except EntryNotFoundError:
        return None


def _read_model_index(source: str | os.PathLike, loading: dict) -> dict:
    hub_kwargs = {k: loading[k] for k in ("cache_dir", "revision", "token", "local_files_only", "force_download",
                                          "proxies") if k in loading}
    path = _resolve_file(str(source), "model_index.json", hub_kwargs)
    if path is None:
        raise ValueError(f"{source} has no model_index.json: not a saved FFADiffusionPipeline")
    return json.loads(Path(path).read_text())
