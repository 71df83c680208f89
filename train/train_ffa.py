#!/usr/bin/env python
"""Few-shot fine-tuning (or small from-scratch training) of FFADiffusionPipeline, diffusers-examples style.

Structure and flag names follow diffusers' `examples/instruct_pix2pix/train_instruct_pix2pix.py` and
`examples/text_to_image/train_text_to_image_lora.py`. Runs on one CPU, or under `accelerate launch` on many
GPUs / nodes.

The protocol (see README "Training"):
- the VAE is frozen (fine-tune its decoder separately with `train_vae.py`);
- the parts that are new to a converted Stable Diffusion model are trained in full: `conv_in` (widened for the
  source latents), the condition encoder (modality stems) and the disease/phase embedding;
- the UNet itself through LoRA (`--rank`, attention, plus resnet convs with `--lora_on_resnets`), or in full
  with `--train_full_unet` (implied by `--model_config`: a from-scratch model has nothing to adapt);
- image and labels are dropped independently (`--conditioning_dropout_prob`) for classifier-free guidance;
- `--alignment_loss_weight` pulls two modalities of the same eye together in the shared latent space;
- `--guidance_distillation_scale W` (guidance distillation, Meng et al. 2023, at one fixed scale): the target is the
  starting model's own image-guided prediction `labels_only + W (full - labels_only)` instead of the data's, so the
  trained model draws with one UNet pass per step what the starting model drew with two;
- `--step_distillation` (progressive distillation, Salimans & Ho 2022, one halving): the target is what two of the
  starting model's own DDIM steps (at its default settings) reach, so the trained model draws in half its default
  steps what the starting model drew in all of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, compute_snr
from diffusers.utils.hub_utils import MODEL_CARD_TEMPLATE_PATH, populate_model_card
from huggingface_hub import ModelCard, ModelCardData
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from tqdm.auto import tqdm

from ffa_pipeline import FFADiffusionPipeline
from ffa_pipeline.data import (
    ColumnSpec,
    PairedFFADataset,
    SideBatchSampler,
    check_columns,
    concatenate_columns,
    decode_image,
    load_dataset_fresh,
    resolve_labels,
    with_loss_mask_column,
)
from ffa_pipeline.image_processing import INPUT_REPRESENTATIONS
from ffa_pipeline.light_decoder_vae import load_vae
from ffa_pipeline.model_config import build_pipeline
from ffa_pipeline.training_utils import checkpoint_step, find_checkpoint, runs_on_cpu_only, save_checkpoint

logger = get_logger(__name__, log_level="INFO")

LORA_ATTENTION_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
LORA_RESNET_MODULES = ["conv1", "conv2", "conv_shortcut", "time_emb_proj"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    start = parser.add_argument_group("starting point (exactly one)")
    start.add_argument("--pretrained_model_name_or_path", help="Stable Diffusion 1.x/2.x folder or Hub id.")
    start.add_argument("--pretrained_ffa_model", help="An FFADiffusionPipeline folder or Hub id to fine-tune.")
    start.add_argument("--model_config", help="Train from scratch: a JSON config or 'tiny' / 'small'.")
    parser.add_argument("--pretrained_vae_model_name_or_path", default=None,
                        help="A VAE folder or Hub id (AutoencoderKL or LightDecoderAutoencoderKL, e.g. from "
                        "train_vae.py) replacing the start's VAE.")
    parser.add_argument("--unet_attention_heads", type=int, nargs="+", default=None,
                        help="Regroup the starting UNet's attention heads, one count per down block (e.g. 16 4 16): "
                        "the same weights split into other heads, written to diffusers' `attention_head_dim`, "
                        "which diffusers reads as the number of heads. Fewer, wider heads at 32x32 latents are "
                        "several times faster on a CPU; the model then needs fine-tuning to the new split.")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--variant", default=None)

    data = parser.add_argument_group("data")
    data.add_argument("--dataset_name", help="Hub dataset id or local dataset folder (datasets.load_dataset).")
    data.add_argument("--dataset_config_name", default=None)
    data.add_argument("--train_data_dir", nargs="+", help="Local folder(s) with the dataset's files (parquet / arrow"
                      " / csv); several folders with the same columns are concatenated (name one twice to weight it).")
    data.add_argument("--source_image_column", default="source_image")
    data.add_argument("--target_image_column", default="target_image", help="One column, or a comma list.")
    data.add_argument("--phase_column", default="phase", help="Names or seconds; one per target column.")
    data.add_argument("--modality_column", default="modality", help="Empty string: use --modality for all rows.")
    data.add_argument("--modality", default=None, help="The modality of every row when there is no column.")
    data.add_argument("--disease_column", default="disease", help="Empty string: every row is 'unknown'.")
    data.add_argument("--eye_id_column", default=None, help="Groups rows of one eye, for --alignment_loss_weight.")
    data.add_argument("--loss_mask_column", default=None,
                      help="An image column (white: the pixels whose loss counts), e.g. the loss_mask of "
                           "make_angiogram_pairs.py --real_slo_source; rows and folders without one count every "
                           "pixel.")
    data.add_argument("--max_train_samples", type=int, default=None, help="The first N rows of each folder.")
    data.add_argument("--resolution", type=int, default=None,
                      help="One side for every row. Default: each row at the side that the model draws its "
                      "modality at (its modality_resolutions, else its own resolution), in batches of one side.")
    data.add_argument("--random_flip", action="store_true")
    data.add_argument("--random_rotation", type=float, default=0.0, help="Max degrees, same for source and target.")
    data.add_argument("--random_scale", type=float, default=0.0, help="Max zoom-in fraction, e.g. 0.1.")
    data.add_argument("--color_jitter", type=float, default=0.0, help="Strength (e.g. 0.3) of random gain, gamma, "
                      "contrast, blur and noise on the source images only: learn anatomy, not one rendering.")
    data.add_argument("--input_representation", choices=INPUT_REPRESENTATIONS, default=None,
                      help="What the model sees of a source image; recorded in the condition encoder's config. "
                      "Default: the starting model's ('rgb' for a new one). 'grey_ridges' is the same for phantom "
                      "and real photos (see ffa_pipeline.image_processing).")
    data.add_argument("--native_resolution_ridges", nargs="*", metavar="MODALITY", default=None,
                      help="Modalities whose ridge maps come from the source at its own resolution (up to 3x the "
                      "model's; e.g. uwf_slo, whose vessels are too thin at 256 px); recorded in the condition "
                      "encoder's config. Default: the starting model's (none for a new one).")
    data.add_argument("--cache_latents", action="store_true",
                      help="Encode every pair once with the frozen VAE (augmentation is then drawn once).")
    data.add_argument("--dataloader_num_workers", type=int, default=0)

    protocol = parser.add_argument_group("fine-tuning protocol")
    protocol.add_argument("--rank", type=int, default=8, help="LoRA rank.")
    protocol.add_argument("--lora_on_resnets", action="store_true", help="Also wrap the resnet convs with LoRA.")
    protocol.add_argument("--train_full_unet", action="store_true", help="Train the whole UNet instead of LoRA.")
    protocol.add_argument("--conditioning_dropout_prob", type=float, default=0.1)
    protocol.add_argument("--alignment_loss_weight", type=float, default=0.0)
    protocol.add_argument("--guidance_distillation_scale", type=float, default=None,
                          help="Distil the starting model's image guidance at this scale into one pass (the teacher "
                               "is a frozen copy of the starting UNet, condition encoder and disease embedding).")
    protocol.add_argument("--step_distillation", action="store_true",
                          help="Distil two of the starting model's default DDIM steps into one (its default steps "
                               "halve; the teacher is a frozen copy of it, at its default guidance).")
    protocol.add_argument("--snr_gamma", type=float, default=None)
    protocol.add_argument("--noise_offset", type=float, default=0.0)
    protocol.add_argument("--prediction_type", choices=["epsilon", "v_prediction"], default=None)
    protocol.add_argument("--use_ema", action="store_true")
    protocol.add_argument("--ema_decay", type=float, default=0.999)

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--train_batch_size", type=int, default=4)
    optim.add_argument("--num_train_epochs", type=int, default=1)
    optim.add_argument("--max_train_steps", type=int, default=None)
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1)
    optim.add_argument("--gradient_checkpointing", action="store_true")
    optim.add_argument("--learning_rate", type=float, default=1e-4)
    optim.add_argument("--scale_lr", action="store_true")
    optim.add_argument("--lr_scheduler", default="constant")
    optim.add_argument("--lr_warmup_steps", type=int, default=0)
    optim.add_argument("--adam_beta1", type=float, default=0.9)
    optim.add_argument("--adam_beta2", type=float, default=0.999)
    optim.add_argument("--adam_weight_decay", type=float, default=1e-2)
    optim.add_argument("--adam_epsilon", type=float, default=1e-08)
    optim.add_argument("--max_grad_norm", type=float, default=1.0)
    optim.add_argument("--seed", type=int, default=0)
    optim.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)

    output = parser.add_argument_group("output, checkpoints, validation, Hub")
    output.add_argument("--output_dir", default="ffa-model")
    output.add_argument("--logging_dir", default="logs")
    output.add_argument("--report_to", default="none", help="tensorboard, wandb, ... (accelerate trackers).")
    output.add_argument("--checkpointing_steps", type=int, default=500)
    output.add_argument("--checkpoints_total_limit", type=int, default=None)
    output.add_argument("--resume_from_checkpoint", default=None, help="A checkpoint folder or 'latest'.")
    output.add_argument("--validation_steps", type=int, default=None)
    output.add_argument("--validation_image", nargs="*", default=None, help="Default: the first training sources.")
    output.add_argument("--num_validation_images", type=int, default=2)
    output.add_argument("--validation_inference_steps", type=int, default=20)
    output.add_argument("--push_to_hub", action="store_true")
    output.add_argument("--hub_model_id", default=None)
    output.add_argument("--hub_token", default=None)
    args = parser.parse_args(argv)

    starts = [args.pretrained_model_name_or_path, args.pretrained_ffa_model, args.model_config]
    if sum(s is not None for s in starts) != 1:
        parser.error("give exactly one of --pretrained_model_name_or_path, --pretrained_ffa_model, --model_config")
    if (args.dataset_name is None) == (args.train_data_dir is None):
        parser.error("give exactly one of --dataset_name or --train_data_dir")
    if args.model_config is not None:
        args.train_full_unet = True
    if not 0 <= args.conditioning_dropout_prob <= 1 / 3:
        parser.error(f"--conditioning_dropout_prob must be in [0, 1/3], got {args.conditioning_dropout_prob}")
    if args.guidance_distillation_scale is not None:
        if args.pretrained_ffa_model is None:
            parser.error("--guidance_distillation_scale distils a trained model: give --pretrained_ffa_model")
        if args.prediction_type is not None:
            parser.error("--guidance_distillation_scale learns the teacher's own prediction type: drop "
                         f"--prediction_type {args.prediction_type}")
        if args.guidance_distillation_scale < 1:
            parser.error(f"--guidance_distillation_scale must be >= 1, got {args.guidance_distillation_scale}")
    if args.step_distillation:
        if args.pretrained_ffa_model is None:
            parser.error("--step_distillation distils a trained model: give --pretrained_ffa_model")
        if args.prediction_type is not None:
            parser.error(f"--step_distillation learns the teacher's own prediction type: drop --prediction_type "
                         f"{args.prediction_type}")
        if args.guidance_distillation_scale is not None:
            parser.error("--step_distillation and --guidance_distillation_scale distil one thing at a time: distil "
                         "the guidance first, then the steps from that model")
    if not 0 <= args.color_jitter <= 1:
        parser.error(f"--color_jitter must be in [0, 1], got {args.color_jitter}")
    for flag in ("train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "rank"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    return args


def load_starting_pipeline(args: argparse.Namespace) -> FFADiffusionPipeline:
    hub = {"revision": args.revision, "variant": args.variant}
    if args.model_config is not None:
        pipe = build_pipeline(args.model_config, seed=args.seed)
    elif args.pretrained_ffa_model is not None:
        pipe = FFADiffusionPipeline.from_pretrained(args.pretrained_ffa_model, **hub)
    else:
        pipe = FFADiffusionPipeline.from_stable_diffusion(args.pretrained_model_name_or_path, **hub)
    if args.pretrained_vae_model_name_or_path is not None:
        vae = load_vae(args.pretrained_vae_model_name_or_path)
        if vae.config.latent_channels != pipe.vae.config.latent_channels:
            raise ValueError(f"--pretrained_vae_model_name_or_path has {vae.config.latent_channels} latent channels; "
                             f"the model needs {pipe.vae.config.latent_channels}")
        pipe.register_modules(vae=vae)
    if args.unet_attention_heads is not None:
        pipe.register_modules(unet=regroup_attention_heads(pipe.unet, args.unet_attention_heads))
    if args.input_representation is not None:
        pipe.condition_encoder.register_to_config(input_representation=args.input_representation)
    if args.native_resolution_ridges is not None:
        pipe.condition_encoder.set_native_resolution_ridges(args.native_resolution_ridges)
    return pipe


def load_data(args: argparse.Namespace, pipe: FFADiffusionPipeline) -> PairedFFADataset:
    """The HF dataset, its columns checked and its labels resolved against the model's own vocabulary, at
    `--resolution` or else each row at the side that the checkpoint draws its modality at (`pipe.resolution_for`):
    a model that draws ultra-widefield frames at 512 px is fine-tuned on them at 512 px, and on its photos at the
    side it draws those at."""
    spec = ColumnSpec.from_flags(args.source_image_column, args.target_image_column, args.phase_column,
                                 args.modality_column, args.disease_column, args.eye_id_column,
                                 args.loss_mask_column)
    sources = [args.dataset_name] if args.dataset_name is not None else args.train_data_dir
    parts = []
    for source in sources:
        splits = load_dataset_fresh(source, args.dataset_config_name if args.dataset_name else None)
        if "train" not in splits:
            raise ValueError(f"{source}: no 'train' split to train on; its splits: {list(splits)}")
        parts.append(splits["train"])
    if args.max_train_samples is not None:
        parts = [part.select(range(min(args.max_train_samples, len(part)))) for part in parts]
    parts = with_loss_mask_column(parts, spec)
    for source, part in zip(sources, parts):
        try:
            check_columns(part, spec)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None
    dataset = parts[0] if len(parts) == 1 else concatenate_columns(parts, spec)
    labels = resolve_labels(dataset, spec, pipe.modalities, pipe.diseases, pipe.phases, args.modality)
    if args.resolution is not None:
        resolution, modality_resolutions = pipe.check_resolution(args.resolution), {}
    else:
        resolution = pipe.default_resolution
        modality_resolutions = {int(i): pipe.resolution_for(pipe.modalities[i]) for i in set(labels["modality"])}
    return PairedFFADataset(dataset, spec, labels, resolution, seed=args.seed, random_flip=args.random_flip,
                            random_rotation=args.random_rotation, random_scale=args.random_scale,
                            color_jitter=args.color_jitter, input_representation=pipe.input_representation,
                            native_ridge_modality_ids=[pipe.modalities.index(name)
                                                       for name in pipe.native_resolution_ridges],
                            modality_resolutions=modality_resolutions)


def encode(vae, pixels: torch.Tensor, sample: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scaled VAE latents: a sample for targets (as diffusers trainers do), the mode for sources (as the pipeline)."""
    distribution = vae.encode(pixels.to(vae.dtype)).latent_dist
    latents = distribution.sample(generator=generator) if sample else distribution.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


class CachedLatents(torch.utils.data.Dataset):
    """`--cache_latents`: every row encoded once with the frozen VAE, with *all* its target phases.

    Augmentation and the partner are drawn once, at caching time; which target phase a step sees is still drawn
    per epoch, so a wide dataset (early + late per row) keeps its phase variety.
    """

    def __init__(self, dataset: PairedFFADataset, vae):
        self.seed, self.epoch, self.rows = dataset.seed, 0, []
        with torch.no_grad():
            for row in tqdm(range(len(dataset)), desc="caching latents"):
                draw = [dataset.seed, 0, row]  # the same augmentation and partner for every target of the row
                items = [dataset.render(row, j, np.random.default_rng(draw)) for j in dataset.available_targets(row)]
                first = items[0]
                sources = torch.stack([first["source"], first["partner"]])
                source, partner = encode(vae, sources.to(vae.device, vae.dtype), sample=False)
                targets = encode(vae, torch.stack([item["target"] for item in items]).to(vae.device), sample=True)
                if "loss_mask" in first:  # kept at the latents' size, as training_loss uses it
                    first["loss_mask"] = F.interpolate(first["loss_mask"][None], size=targets.shape[-2:],
                                                       mode="area")[0]
                self.rows.append({**first, "source": source, "partner": partner, "targets": targets,
                                  "phases": torch.tensor([item["phase_seconds"] for item in items])})

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        j = int(np.random.default_rng([self.seed, self.epoch, index]).integers(len(row["phases"])))
        item = {k: v for k, v in row.items() if k not in ("targets", "phases")}
        return {**item, "target": row["targets"][j], "phase_seconds": float(row["phases"][j])}


def add_lora(unet, args: argparse.Namespace) -> None:
    targets = LORA_ATTENTION_MODULES + (LORA_RESNET_MODULES if args.lora_on_resnets else [])
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                target_modules=targets))


def trainable_modules(pipe: FFADiffusionPipeline, args: argparse.Namespace) -> list[torch.nn.Parameter]:
    """Freeze everything, then unfreeze what the protocol trains; returns the trained parameters."""
    for module in (pipe.vae, pipe.unet, pipe.condition_encoder, pipe.disease_embedding):
        module.requires_grad_(False)
    if args.train_full_unet:
        pipe.unet.requires_grad_(True)
    else:
        add_lora(pipe.unet, args)
        pipe.unet.conv_in.requires_grad_(True)
    pipe.condition_encoder.requires_grad_(True)
    pipe.disease_embedding.requires_grad_(True)
    modules = (pipe.unet, pipe.condition_encoder, pipe.disease_embedding)
    return [p for module in modules for p in module.parameters() if p.requires_grad]


def regroup_attention_heads(unet: UNet2DConditionModel, heads: list[int]) -> UNet2DConditionModel:
    """The same UNet weights with another number of attention heads per block (a different function until tuned)."""
    blocks = len(unet.config.down_block_types)
    if len(heads) != blocks:
        raise ValueError(f"--unet_attention_heads needs one count per down block ({blocks}), got {heads}")
    for channels, count in zip(unet.config.block_out_channels, heads):
        if count < 1 or channels % count:
            raise ValueError(f"--unet_attention_heads {heads}: a block of {channels} channels cannot be split into "
                             f"{count} heads (block channels: {list(unet.config.block_out_channels)})")
    regrouped = UNet2DConditionModel.from_config({**unet.config, "attention_head_dim": list(heads)})
    regrouped.load_state_dict(unet.state_dict())
    return regrouped.to(unet.device, unet.dtype)


def dropout_masks(batch_size: int, probability: float, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """InstructPix2Pix's scheme: labels dropped for u < 2p, image for p <= u < 3p (so both for p <= u < 2p)."""
    u = torch.rand(batch_size, generator=generator)
    return (u >= probability) & (u < 3 * probability), u < 2 * probability


def frozen_teacher(pipe: FFADiffusionPipeline) -> dict[str, torch.nn.Module]:
    """Frozen copies of the starting UNet, condition encoder and disease embedding: guidance distillation's teacher."""
    teacher = {name: deepcopy(getattr(pipe, name)) for name in ("unet", "condition_encoder", "disease_embedding")}
    for module in teacher.values():
        module.requires_grad_(False).eval()
    return teacher


@torch.no_grad()
def guided_teacher_prediction(teacher: dict[str, torch.nn.Module], noisy_latents: torch.Tensor,
                              timesteps: torch.Tensor, source_latents: torch.Tensor, batch: dict,
                              drop_image: torch.Tensor, drop_labels: torch.Tensor, scale: float) -> torch.Tensor:
    """The teacher's image-guided prediction, as the pipeline combines it: `labels_only + scale (full - labels_only)`,
    both branches with the student's label dropout; where the student's image is dropped, both branches are the
    same and the target is the teacher's unguided prediction, so the student keeps its image-dropped branch. At
    scale 1 the guided prediction is the full branch alone, which is all that is run."""
    if scale == 1:
        encoded = teacher["condition_encoder"](source_latents, batch["modality"], drop_image=drop_image)
        class_labels = teacher["disease_embedding"](batch["disease"], batch["phase_seconds"], drop_labels=drop_labels)
        model_input = torch.cat([noisy_latents, encoded.shared_latents], dim=1)
        return teacher["unet"](model_input, timesteps, encoder_hidden_states=encoded.context,
                               class_labels=class_labels, return_dict=False)[0]
    drop_both = torch.cat([drop_image, torch.ones_like(drop_image)])
    encoded = teacher["condition_encoder"](source_latents.repeat(2, 1, 1, 1), batch["modality"].repeat(2),
                                           drop_image=drop_both)
    class_labels = teacher["disease_embedding"](batch["disease"].repeat(2), batch["phase_seconds"].repeat(2),
                                                drop_labels=drop_labels.repeat(2))
    model_input = torch.cat([noisy_latents.repeat(2, 1, 1, 1), encoded.shared_latents], dim=1)
    full, labels_only = teacher["unet"](model_input, timesteps.repeat(2), encoder_hidden_states=encoded.context,
                                        class_labels=class_labels, return_dict=False)[0].chunk(2)
    return labels_only + scale * (full - labels_only)


@dataclass(frozen=True)
class StepSchedule:
    """The teacher's DDIM sampling schedule for step distillation: its timesteps (descending) and the cumulative
    alphas at each of them, plus the final one (the sample the last step lands on)."""

    timesteps: torch.Tensor
    alphas_cumprod: torch.Tensor
    prediction_type: str
    guidance_scale: float


def teacher_step_schedule(pipe: FFADiffusionPipeline) -> StepSchedule:
    """The starting model's default sampling (DDIM, its default steps and image guidance), which the student learns
    to match in half the steps; ValueError for what the distillation cannot follow (another scheduler, an odd number
    of steps, label guidance, image guidance on only part of the steps)."""
    steps, guidance, label_guidance = pipe.sampling_settings()
    if label_guidance != 1:
        raise ValueError(f"--step_distillation follows the teacher's image guidance only; its default label guidance "
                         f"is {label_guidance} (allowed: 1)")
    if guidance != 1 and pipe.guidance_interval_or_default(None) != (0.0, 1.0):
        raise ValueError(f"--step_distillation guides every teacher step; the model's default guidance interval is "
                         f"{pipe.config.default_guidance_interval} (allowed with image guidance {guidance}: [0, 1])")
    if not isinstance(pipe.scheduler, DDIMScheduler):
        raise ValueError(f"--step_distillation distils DDIM sampling; the model's scheduler is "
                         f"{type(pipe.scheduler).__name__}")
    if steps % 2:
        raise ValueError(f"--step_distillation halves the model's default steps; it has {steps}, an odd number")
    scheduler = deepcopy(pipe.scheduler)  # not from_config, which drops settings registered over a default
    scheduler.set_timesteps(steps)
    alphas = scheduler.alphas_cumprod[scheduler.timesteps]
    return StepSchedule(timesteps=scheduler.timesteps.clone(),
                        alphas_cumprod=torch.cat([alphas, torch.tensor([scheduler.final_alpha_cumprod])]).float(),
                        prediction_type=scheduler.config.prediction_type, guidance_scale=guidance)


def _clean_and_noise(sample: torch.Tensor, prediction: torch.Tensor, alpha_cumprod: torch.Tensor,
                     prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, noise) that a prediction of `prediction_type` implies for `sample` (DDIM's own arithmetic)."""
    alpha, sigma = alpha_cumprod.sqrt(), (1 - alpha_cumprod).sqrt()
    if prediction_type == "v_prediction":
        return alpha * sample - sigma * prediction, sigma * sample + alpha * prediction
    clean = (sample - sigma * prediction) / alpha
    return clean, prediction


@torch.no_grad()
def two_step_teacher_target(teacher: dict[str, torch.nn.Module], schedule: StepSchedule, first: torch.Tensor,
                            noisy_latents: torch.Tensor, source_latents: torch.Tensor, batch: dict,
                            drop_image: torch.Tensor, drop_labels: torch.Tensor) -> torch.Tensor:
    """Progressive distillation's target (Salimans & Ho 2022, eq. 8, ours for this pipeline's conditioning): the
    teacher takes two DDIM steps from `noisy_latents` at its timesteps `first` and `first + 1` (indices into the
    schedule); the target is the prediction with which one DDIM step from the same sample lands where the teacher's
    two did."""
    def alpha_at(index: torch.Tensor) -> torch.Tensor:
        return schedule.alphas_cumprod.to(noisy_latents.device)[index].view(-1, 1, 1, 1)

    sample = noisy_latents
    for index in (first, first + 1):
        timesteps = schedule.timesteps.to(noisy_latents.device)[index]
        prediction = guided_teacher_prediction(teacher, sample, timesteps, source_latents, batch, drop_image,
                                               drop_labels, schedule.guidance_scale)
        clean, noise = _clean_and_noise(sample, prediction, alpha_at(index), schedule.prediction_type)
        sample = alpha_at(index + 1).sqrt() * clean + (1 - alpha_at(index + 1)).sqrt() * noise
    start, end = alpha_at(first), alpha_at(first + 2)
    ratio = ((1 - end) / (1 - start)).sqrt()
    clean = (sample - ratio * noisy_latents) / (end.sqrt() - ratio * start.sqrt())
    noise = (noisy_latents - start.sqrt() * clean) / (1 - start).sqrt()
    if schedule.prediction_type == "v_prediction":
        return start.sqrt() * noise - (1 - start).sqrt() * clean
    return noise


def training_loss(batch: dict, pipe: FFADiffusionPipeline, models: dict, noise_scheduler: DDPMScheduler,
                  args: argparse.Namespace, generator: torch.Generator, cached: bool) -> tuple[torch.Tensor, dict]:
    """Diffusion loss (+ alignment loss) for one batch; `models` are the accelerate-wrapped trainables and, under
    `--guidance_distillation_scale`, the frozen "teacher", whose guided prediction replaces the data's target, and
    under `--step_distillation` also the teacher's "step_schedule": each sample then starts at one of the student's
    timesteps, and the target is where two of the teacher's steps go from there."""
    unet, encoder, disease_embedding = models["unet"], models["condition_encoder"], models["disease_embedding"]
    device = batch["modality"].device
    with torch.no_grad():
        if cached:
            target_latents, source_latents, partner_latents = batch["target"], batch["source"], batch["partner"]
        else:
            target_latents = encode(pipe.vae, batch["target"], sample=True, generator=generator)
            source_latents = encode(pipe.vae, batch["source"], sample=False)
            partner_latents = (encode(pipe.vae, batch["partner"], sample=False)
                               if bool(batch["has_partner"].any()) else None)
    batch_size = target_latents.shape[0]
    noise = torch.randn(target_latents.shape, generator=generator).to(device, target_latents.dtype)
    if args.noise_offset:
        offset = torch.randn(batch_size, target_latents.shape[1], 1, 1, generator=generator).to(device)
        noise = noise + args.noise_offset * offset
    schedule = models.get("step_schedule")
    if schedule is None:
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
    else:  # the student's steps are every other one of the teacher's
        first = 2 * torch.randint(0, len(schedule.timesteps) // 2, (batch_size,), generator=generator)
        timesteps = schedule.timesteps[first]
    timesteps = timesteps.to(device)
    noisy_latents = noise_scheduler.add_noise(target_latents, noise, timesteps)
    drop_image, drop_labels = (m.to(device) for m in dropout_masks(batch_size, args.conditioning_dropout_prob,
                                                                  generator))

    # One encoder call for the sources and the alignment partners (DDP allows one forward per step and module).
    pairs = batch["has_partner"].bool() & ~drop_image
    align = args.alignment_loss_weight > 0 and partner_latents is not None and bool(pairs.any())
    latents_in, modality_in, drop_in = source_latents, batch["modality"], drop_image
    if align:
        latents_in = torch.cat([source_latents, partner_latents[pairs]])
        modality_in = torch.cat([batch["modality"], batch["partner_modality"][pairs]])
        drop_in = torch.cat([drop_image, torch.zeros_like(drop_image[pairs])])
    encoded = encoder(latents_in, modality_in, drop_image=drop_in)
    shared_latents, context = encoded.shared_latents[:batch_size], encoded.context[:batch_size]
    class_labels = disease_embedding(batch["disease"], batch["phase_seconds"], drop_labels=drop_labels)
    model_input = torch.cat([noisy_latents, shared_latents], dim=1)
    prediction = unet(model_input, timesteps, encoder_hidden_states=context, class_labels=class_labels,
                      return_dict=False)[0]
    if schedule is not None:
        target = two_step_teacher_target(models["teacher"], schedule, first.to(device), noisy_latents,
                                         source_latents, batch, drop_image, drop_labels)
    elif "teacher" in models:
        target = guided_teacher_prediction(models["teacher"], noisy_latents, timesteps, source_latents, batch,
                                           drop_image, drop_labels, args.guidance_distillation_scale)
    elif noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(target_latents, noise, timesteps)
    else:
        target = noise
    errors = F.mse_loss(prediction.float(), target.float(), reduction="none")
    if "loss_mask" in batch:  # each sample's mean error over its masked latent pixels
        mask = F.interpolate(batch["loss_mask"].float(), size=errors.shape[-2:], mode="area").expand_as(errors)
        per_sample = (errors * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp_min(1e-6)
    else:
        per_sample = errors.mean(dim=(1, 2, 3))
    if args.snr_gamma is None:
        loss = per_sample.mean()
    else:
        snr = compute_snr(noise_scheduler, timesteps)
        weights = torch.stack([snr, args.snr_gamma * torch.ones_like(snr)], dim=1).min(dim=1)[0]
        weights = weights / snr if noise_scheduler.config.prediction_type == "epsilon" else weights / (snr + 1)
        loss = (per_sample * weights).mean()
    logs = {"diffusion_loss": loss.detach().item()}

    if align:
        anchor, partner = shared_latents[pairs], encoded.shared_latents[batch_size:]
        alignment = (1 - F.cosine_similarity(anchor.float(), partner.float(), dim=1)).mean()
        loss = loss + args.alignment_loss_weight * alignment
        logs["alignment_loss"] = alignment.detach().item()
    logs["loss"] = loss.detach().item()
    return loss, logs


def collate(items: list[dict]) -> dict:
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else torch.tensor(values)
    return batch


def validation_sources(args: argparse.Namespace, dataset: PairedFFADataset) -> list[tuple[np.ndarray, str, str]]:
    """(image, modality, disease) triples to render at each validation: the given files, or the first rows."""
    if args.validation_image:
        return [(path, args.modality or "cfp", "unknown") for path in args.validation_image]
    rows = range(min(args.num_validation_images, len(dataset)))
    modalities, diseases = dataset.labels["modality"], dataset.labels["disease"]
    return [(decode_image(dataset.dataset[r][dataset.spec.source], r, dataset.spec.source), int(modalities[r]),
             int(diseases[r])) for r in rows]


def run_validation(pipe: FFADiffusionPipeline, sources: list, args: argparse.Namespace, step: int,
                   accelerator: Accelerator) -> None:
    """Save early- and late-phase samples of the validation sources, and log them to the trackers."""
    folder = Path(args.output_dir) / "validation" / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for i, (image, modality, disease) in enumerate(sources):
        modality = pipe.modalities[modality] if isinstance(modality, int) else modality
        disease = pipe.diseases[disease] if isinstance(disease, int) else disease
        for phase in ("early", "late"):
            generator = torch.Generator().manual_seed(args.seed)
            output = pipe(image, modality=modality, disease=disease, phase=phase, generator=generator,
                          num_inference_steps=args.validation_inference_steps).images[0]
            name = f"{i:02d}_{modality}_{disease}_{phase}"
            output.save(folder / f"{name}.png")
            images[name] = np.asarray(output)
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":  # one by one: modalities may be drawn at different sides
            for name, image in images.items():
                tracker.writer.add_image(f"validation/{name}", image, step, dataformats="HW")
        elif tracker.name == "wandb":
            import wandb

            tracker.log({"validation": [wandb.Image(image, caption=name) for name, image in images.items()]},
                        step=step)


def save_model_card(args: argparse.Namespace, output_dir: Path, pipe: FFADiffusionPipeline, summary: dict) -> None:
    base = args.pretrained_model_name_or_path or args.pretrained_ffa_model or f"from scratch ({args.model_config})"
    dataset = args.dataset_name or ", ".join(args.train_data_dir)
    settings = {k: v for k, v in vars(args).items() if k not in ("hub_token",)}
    distilled = "" if args.guidance_distillation_scale is None else f"""
- Guidance-distilled: one UNet pass draws what {base} drew with image guidance
  {args.guidance_distillation_scale}; the default image guidance is 1 (a scale g on top acts about as g x
  {args.guidance_distillation_scale} on the teacher)."""
    if args.step_distillation:
        distilled += f"""
- Step-distilled: its default {pipe.config.default_num_inference_steps} DDIM step(s) draw what {base} drew in
  twice as many."""
    description = f"""
# FFADiffusionPipeline: synthetic fluorescein angiograms

**Synthetic images, not for diagnosis.** This model makes a plausible-looking fluorescein angiogram from a
non-invasive retinal image; it has not been validated clinically and must not be used to diagnose or treat.

- Base model: {base}
- Training data: {dataset}
- Modalities: {pipe.modalities}; diseases: {pipe.diseases}; phases: {pipe.phases}
- Protocol: {"full UNet" if args.train_full_unet else f"LoRA rank {args.rank}"}, condition encoder, disease
  embedding and conv_in trained in full; conditioning dropout {args.conditioning_dropout_prob}; alignment loss
  weight {args.alignment_loss_weight}.{distilled}
- Result: {json.dumps(summary)}

## Use
```python
from ffa_pipeline import FFADiffusionPipeline  # or DiffusionPipeline.from_pretrained(..., trust_remote_code=True)
pipe = FFADiffusionPipeline.from_pretrained("{args.hub_model_id or output_dir}")
angiogram = pipe(image, modality="cfp", disease="unknown", phase="late").images[0]
```

## Limitations
Trained on few pairs (and/or procedural phantom data): lesions it has not seen may be missed or invented, and
the output can look convincing while being wrong. Every output is synthetic.

## Training settings
```json
{json.dumps(settings, indent=2, default=str)}
```
"""
    # diffusers' load_or_create_model_card looks the card up on the Hub first (a local run has no Hub and no repo
    # yet), so the card is made from the same diffusers template directly.
    card = ModelCard.from_template(
        card_data=ModelCardData(license="apache-2.0", library_name="diffusers", inference=False,
                                base_model=None if args.model_config else base,
                                datasets=[dataset] if args.dataset_name else None),
        template_path=MODEL_CARD_TEMPLATE_PATH, model_description=description,
    )
    card = populate_model_card(card, tags=["diffusers", "image-to-image", "medical-imaging", "ophthalmology",
                                           "fluorescein-angiography", "synthetic"])
    card.save(output_dir / "README.md")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    accelerator = Accelerator(
        cpu=runs_on_cpu_only(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir,
                                            logging_dir=os.path.join(args.output_dir, args.logging_dir)),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        # a batch may hold only some modalities, so some stems get no gradient in a step
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    set_seed(args.seed)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)

    pipe = load_starting_pipeline(args)
    pipe.set_progress_bar_config(disable=True)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    if args.prediction_type is not None:
        noise_scheduler.register_to_config(prediction_type=args.prediction_type)
        pipe.scheduler.register_to_config(prediction_type=args.prediction_type)

    dataset = load_data(args, pipe)
    sides = {pipe.modalities[m]: int(side) for m, side in zip(dataset.labels["modality"], dataset.sides)}
    logger.info("Training at %s", ", ".join(f"{side} px ({name})" for name, side in sorted(sides.items())))
    validation = validation_sources(args, dataset) if args.validation_steps else []
    teacher = None
    if args.guidance_distillation_scale is not None:
        teacher = frozen_teacher(pipe)
        # the guidance is now in the weights: the model's default (and validation) draws one branch per step
        pipe.register_to_config(default_image_guidance_scale=1.0)
    step_schedule = None
    if args.step_distillation:
        step_schedule = teacher_step_schedule(pipe)
        teacher = frozen_teacher(pipe)
        pipe.register_to_config(default_num_inference_steps=len(step_schedule.timesteps) // 2)
    parameters = trainable_modules(pipe, args)
    if args.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
    ema = EMAModel(parameters, decay=args.ema_decay) if args.use_ema else None

    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    pipe.vae.to(accelerator.device, dtype=weight_dtype)
    train_data = CachedLatents(dataset, pipe.vae) if args.cache_latents else dataset
    # rows drawn at several sides go in batches of one side; otherwise the plain shuffled loader
    side_batches = SideBatchSampler(dataset.sides, args.train_batch_size, args.seed) \
        if len(set(dataset.sides)) > 1 else None
    batching = {"batch_sampler": side_batches} if side_batches else {"batch_size": args.train_batch_size,
                                                                      "shuffle": True}
    dataloader = torch.utils.data.DataLoader(train_data, collate_fn=collate,
                                             num_workers=args.dataloader_num_workers, **batching)
    if args.scale_lr:
        args.learning_rate *= args.gradient_accumulation_steps * args.train_batch_size * accelerator.num_processes
    optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    steps_per_epoch = math.ceil(len(dataloader) / accelerator.num_processes / args.gradient_accumulation_steps)
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * steps_per_epoch
    args.num_train_epochs = math.ceil(args.max_train_steps / steps_per_epoch)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=args.max_train_steps * accelerator.num_processes)
    unet, encoder, disease_embedding, optimizer, dataloader, lr_scheduler = accelerator.prepare(
        pipe.unet, pipe.condition_encoder, pipe.disease_embedding, optimizer, dataloader, lr_scheduler
    )
    models = {"unet": unet, "condition_encoder": encoder, "disease_embedding": disease_embedding}
    if teacher is not None:
        models["teacher"] = {name: module.to(accelerator.device, weight_dtype) for name, module in teacher.items()}
    if step_schedule is not None:
        models["step_schedule"] = step_schedule
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    generator = torch.Generator().manual_seed(args.seed + accelerator.process_index)
    accelerator.register_for_checkpointing(_GeneratorState(generator))
    if accelerator.is_main_process:
        accelerator.init_trackers("train_ffa", config={k: v for k, v in vars(args).items()
                                                       if isinstance(v, (int, float, str, bool))})

    global_step, first_epoch, resume_batches, logs = 0, 0, 0, {}
    if args.resume_from_checkpoint:
        checkpoint = find_checkpoint(args.output_dir, args.resume_from_checkpoint)
        if checkpoint is None:
            logger.info("No checkpoint to resume from: starting a new run.")
        else:
            accelerator.load_state(str(checkpoint))
            global_step = checkpoint_step(checkpoint)
            first_epoch = global_step // steps_per_epoch
            resume_batches = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
            logger.info(f"Resumed from {checkpoint} at step {global_step}")

    log_path = Path(args.output_dir) / "train_log.jsonl"
    logger.info(f"{len(train_data)} samples, {args.max_train_steps} steps, {accelerator.num_processes} processes")
    progress = tqdm(range(args.max_train_steps), initial=global_step, desc="steps",
                    disable=not accelerator.is_local_main_process)
    for epoch in range(first_epoch, args.num_train_epochs):
        train_data.set_epoch(epoch)
        dataloader.set_epoch(epoch)
        if side_batches is not None:  # under several processes accelerate's shard does not pass the epoch on
            side_batches.set_epoch(epoch)
        batches = accelerator.skip_first_batches(dataloader, resume_batches) if resume_batches else dataloader
        resume_batches = 0
        for batch in batches:
            with accelerator.accumulate(unet, encoder, disease_embedding):
                loss, logs = training_loss(batch, pipe, models, noise_scheduler, args, generator,
                                           cached=args.cache_latents)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(parameters, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            if ema is not None:
                ema.step(parameters)
            global_step += 1
            progress.update(1)
            logs = {k: accelerator.reduce(torch.tensor(v, device=accelerator.device), "mean").item()
                    for k, v in logs.items()}
            logs["lr"] = lr_scheduler.get_last_lr()[0]
            progress.set_postfix(loss=f"{logs['loss']:.4f}")
            accelerator.log(logs, step=global_step)
            if accelerator.is_main_process:
                with log_path.open("a") as log:
                    log.write(json.dumps({"step": global_step, **logs, "time": time.time()}) + "\n")
            if global_step % args.checkpointing_steps == 0:
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    saved = save_checkpoint(accelerator, args.output_dir, global_step, args.checkpoints_total_limit)
                    logger.info(f"Saved state to {saved}")
            if args.validation_steps and global_step % args.validation_steps == 0 and accelerator.is_main_process:
                with _ema_weights(ema, parameters):
                    run_validation(pipe, validation, args, global_step, accelerator)
            if global_step >= args.max_train_steps:
                break
        if global_step >= args.max_train_steps:
            break

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if ema is not None:
            ema.copy_to(parameters)
        save_final(args, pipe, accelerator, {"steps": global_step, "final_loss": logs.get("loss")})
    # Drop the DDP wrappers (and their gloo reducers) on every process while all are alive: left to interpreter exit,
    # a rank once hung joining gloo threads after its peer had gone (2 processes on a loaded 2-core CPU).
    unet, encoder, disease_embedding, optimizer = accelerator.free_memory(unet, encoder, disease_embedding, optimizer)
    accelerator.wait_for_everyone()
    accelerator.end_training()


class _GeneratorState:
    """Makes the noise/timestep/dropout generator part of `save_state`, so a resumed run draws the same numbers."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["state"])


class _ema_weights:
    """Context manager: validate with the EMA weights, then put the training weights back."""

    def __init__(self, ema: EMAModel | None, parameters: list[torch.nn.Parameter]):
        self.ema, self.parameters = ema, parameters

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.parameters)
            self.ema.copy_to(self.parameters)

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.parameters)


def save_final(args: argparse.Namespace, pipe: FFADiffusionPipeline, accelerator: Accelerator, summary: dict) -> None:
    """The LoRA adapter (with its fully trained parts) in `lora/`, and the whole pipeline (LoRA fused) at the root."""
    output_dir = Path(args.output_dir)
    unet = accelerator.unwrap_model(pipe.unet)
    if not args.train_full_unet:
        FFADiffusionPipeline.save_lora_weights(
            output_dir / "lora", unet_lora_layers=get_peft_model_state_dict(unet),
            condition_encoder=pipe.condition_encoder, disease_embedding=pipe.disease_embedding,
            unet_conv_in=unet.conv_in,
        )
        unet.fuse_lora()
        unet.unload_lora()
    pipe.register_modules(unet=unet)
    if pipe.vae.dtype != torch.float32:
        pipe.vae.to(dtype=torch.float32)
    pipe.save_pretrained(output_dir)
    save_model_card(args, output_dir, pipe, summary)
    logger.info(f"Saved the pipeline to {output_dir}")
    if args.push_to_hub:
        from huggingface_hub import create_repo, upload_folder

        repo_id = create_repo(args.hub_model_id or output_dir.name, exist_ok=True, token=args.hub_token).repo_id
        upload_folder(repo_id=repo_id, folder_path=output_dir, token=args.hub_token,
                      ignore_patterns=["checkpoint-*", ".partial-*", "validation/*", "logs/*"])


if __name__ == "__main__":
    main()
