#!/usr/bin/env python
"""Train a small AutoencoderKL from scratch, fine-tune only the decoder of a given VAE, or distil a given VAE into a
smaller one that keeps its latent space, on retinal images.

The decoder fine-tune is the second stage of the few-shot protocol: a natural-image VAE blurs the fine vessels and
dots that an angiogram is made of, and its decoder can learn them back from FFA images alone (no pairs needed).
Loss: L1 + `--ssim_weight` x (1 - SSIM) + `--kl_weight` x KL. Reports reconstruction PSNR / SSIM on held-out images
before and after training (`metrics.json`).

Distillation (`--teacher_vae_model_name_or_path`): the VAE of `--model_config` (fewer channels, no attention: a
faster one) learns the teacher's latent space, its encoder the teacher's posterior (MSE of the latent means and
log-variances, `--latent_weight`: the trainer samples latents from it, the pipeline takes its mean) and its
decoder the teacher's decoding of the teacher's latent samples (L1 + SSIM against it), so that a diffusion model
trained on the teacher's latents runs unchanged with it. It keeps the teacher's `scaling_factor`, and
`metrics.json` adds how closely it follows the teacher on held-out images (`teacher_agreement`). Ours: diffusers
has no VAE distillation. With `--train_decoder_only` only the decoder is distilled: the new VAE is a
`LightDecoderAutoencoderKL` with the teacher's encoder (copied, frozen: its latents stay exactly the teacher's) and
the decoder that the `decoder_*` settings of `--model_config`'s "vae" describe.

Images come from a Hugging Face dataset (`--dataset_name` / `--train_data_dir`, any number of `--image_column`s)
and/or image folders (`--image_dir`, searched recursively), e.g. the real FFA of `../shared/data/ffa_real`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from datasets import Image as ImageFeature
from datasets import load_dataset
from diffusers import AutoencoderKL
from diffusers.optimization import get_scheduler
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from tqdm.auto import tqdm

from ffa_pipeline.data import decode_image
from ffa_pipeline.image_processing import FFAImageProcessor
from ffa_pipeline.light_decoder_vae import DECODER_SETTINGS, LightDecoderAutoencoderKL, load_vae, vae_class
from ffa_pipeline.model_config import load_model_config
from ffa_pipeline.training_utils import checkpoint_step, find_checkpoint, runs_on_cpu_only, save_checkpoint

logger = get_logger(__name__, log_level="INFO")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained_vae_model_name_or_path", help="Fine-tune this VAE's decoder (folder/Hub id).")
    parser.add_argument("--subfolder", default=None, help="e.g. 'vae' inside a pipeline folder.")
    parser.add_argument("--model_config", default="small", help="From scratch: the 'vae' part of this config (a "
                        "bundled name or a JSON path).")
    parser.add_argument("--teacher_vae_model_name_or_path", default=None, help="Distil this VAE (folder/Hub id) "
                        "into the one of --model_config, in its latent space.")
    parser.add_argument("--teacher_subfolder", default=None, help="e.g. 'vae' inside the teacher's pipeline folder.")
    parser.add_argument("--latent_weight", type=float, default=1.0, help="Distillation: weight of the latent MSE "
                        "(posterior mean and log-variance).")
    parser.add_argument("--train_decoder_only", action="store_true", help="Freeze the encoder (default with a "
                        "pretrained VAE: the UNet's latent space must not move). With a teacher: keep the teacher's "
                        "encoder and distil only a decoder (the decoder_* settings of --model_config).")
    parser.add_argument("--dataset_name", default=None)
    parser.add_argument("--train_data_dir", default=None)
    parser.add_argument("--image_column", nargs="*", default=[], help="Image columns of the dataset to learn from.")
    parser.add_argument("--image_dir", nargs="*", default=[], help="Folders of images (recursive).")
    parser.add_argument("--grey", action="store_true", help="Convert every image to grey (FFA).")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--crop_size", type=int, default=None, help="Train on random square crops of this side "
                        "from the framed image: the resolution's scale at a fraction of the cost (validation "
                        "always sees whole images).")
    parser.add_argument("--validation_fraction", type=float, default=0.1)
    parser.add_argument("--train_batch_size", type=int, default=8)
    parser.add_argument("--max_train_steps", type=int, default=1000)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--lr_scheduler", default="constant")
    parser.add_argument("--lr_warmup_steps", type=int, default=0)
    parser.add_argument("--ssim_weight", type=float, default=0.5)
    parser.add_argument("--kl_weight", type=float, default=1e-6)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument("--output_dir", default="ffa-vae")
    parser.add_argument("--report_to", default="none")
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=None)
    parser.add_argument("--resume_from_checkpoint", default=None)
    args = parser.parse_args(argv)
    if args.crop_size is not None and not 8 <= args.crop_size <= args.resolution:
        parser.error(f"--crop_size {args.crop_size} must be between 8 and --resolution {args.resolution}")
    if not args.image_dir and not (args.image_column and (args.dataset_name or args.train_data_dir)):
        parser.error("give --image_dir and/or --image_column with --dataset_name / --train_data_dir")
    if args.teacher_vae_model_name_or_path and args.pretrained_vae_model_name_or_path:
        parser.error("--teacher_vae_model_name_or_path trains a new VAE (from --model_config); it does not go with "
                     "--pretrained_vae_model_name_or_path")
    if args.pretrained_vae_model_name_or_path:
        args.train_decoder_only = True
    return args


class ImageSet(torch.utils.data.Dataset):
    """Dataset cells and image files, each squared around its field of view at the resolution, in [-1, 1]."""

    def __init__(self, sources: list, resolution: int, grey: bool, seed: int, crop_size: int | None = None):
        self.sources, self.resolution, self.grey, self.seed = sources, resolution, grey, seed
        self.crop_size = crop_size
        self.processor = FFAImageProcessor(resolution=resolution, min_size=8)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> torch.Tensor:
        source = self.sources[index]
        if isinstance(source, tuple):
            rgb = decode_image(*source)
        else:
            rgb = self.processor.to_float_rgb(PIL.Image.open(source))
        square = self.processor.apply_framing(rgb, self.processor.frame(rgb), self.resolution)
        if self.grey:
            square = np.repeat(square.mean(axis=2, keepdims=True), 3, axis=2)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if rng.random() < 0.5:
            square = square[:, ::-1]
        if self.crop_size:
            top, left = rng.integers(0, self.resolution - self.crop_size + 1, size=2)
            square = square[top:top + self.crop_size, left:left + self.crop_size]
        return torch.from_numpy(np.ascontiguousarray(square)).permute(2, 0, 1) * 2 - 1


def collect_sources(args: argparse.Namespace) -> list:
    """(cell, row, column) tuples from the dataset and file paths from the folders, in a fixed order."""
    sources = []
    if args.image_column:
        dataset = load_dataset(args.dataset_name or args.train_data_dir)["train"]
        for column in args.image_column:
            if column not in dataset.column_names:
                raise ValueError(f"--image_column {column!r} is not in the dataset; columns: {dataset.column_names}")
            cells = dataset.cast_column(column, ImageFeature(decode=False))[column]
            sources += [(cell, row, column) for row, cell in enumerate(cells)]
    for folder in args.image_dir:
        if not Path(folder).is_dir():
            raise ValueError(f"--image_dir {folder!r} is not a folder")
        sources += sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(sources) < 2:
        raise ValueError(f"found {len(sources)} images; need at least 2 (one to train, one to validate)")
    return sources


@torch.no_grad()
def reconstruction_metrics(vae: AutoencoderKL, loader: torch.utils.data.DataLoader) -> dict[str, float]:
    """Mean PSNR / SSIM of encode -> decode (posterior mode) on held-out images, in [0, 1]."""
    psnr, ssim, count = 0.0, 0.0, 0
    for images in loader:
        images = images.to(vae.device, vae.dtype)
        reconstruction = vae.decode(vae.encode(images).latent_dist.mode()).sample.clamp(-1, 1)
        original, reconstruction = (images.float() + 1) / 2, (reconstruction.float() + 1) / 2
        for a, b in zip(reconstruction, original):
            psnr += peak_signal_noise_ratio(a[None], b[None], data_range=1.0).item()
            ssim += structural_similarity_index_measure(a[None], b[None], data_range=1.0).item()
            count += 1
    return {"psnr": psnr / count, "ssim": ssim / count}


@torch.no_grad()
def teacher_agreement(vae: AutoencoderKL, teacher: AutoencoderKL,
                      loader: torch.utils.data.DataLoader) -> dict[str, float]:
    """How well a distilled VAE stands in for its teacher on held-out images: PSNR of its decoding of the teacher's
    latents (posterior mode) against the teacher's own, and the RMS error of its latent means against the
    teacher's, relative to the RMS of the teacher's."""
    psnr, count, error, scale = 0.0, 0, 0.0, 0.0
    for images in loader:
        images = images.to(vae.device, vae.dtype)
        target = teacher.encode(images).latent_dist.mode()
        ours, theirs = vae.decode(target).sample.clamp(-1, 1), teacher.decode(target).sample.clamp(-1, 1)
        for a, b in zip(ours, theirs):
            psnr += peak_signal_noise_ratio((a[None] + 1) / 2, (b[None] + 1) / 2, data_range=1.0).item()
            count += 1
        error += F.mse_loss(vae.encode(images).latent_dist.mode(), target, reduction="sum").item()
        scale += target.pow(2).sum().item()
    return {"decoder_psnr_vs_teacher": psnr / count, "relative_latent_rmse": math.sqrt(error / scale)}


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, loader: torch.utils.data.DataLoader) -> float:
    """1 / std of the latents (posterior mode): unit-variance latents for the diffusion model, the way Stable
    Diffusion's 0.18215 was chosen."""
    latents = torch.cat([vae.encode(images.to(vae.device, vae.dtype)).latent_dist.mode().float()
                         for images in loader])
    return float(1.0 / latents.std())


def check_same_latent_shape(vae: AutoencoderKL, teacher: AutoencoderKL) -> None:
    """A distilled VAE must give latents of the teacher's channels and downsampling; ValueError naming both."""
    ours = (vae.config.latent_channels, len(vae.config.block_out_channels))
    theirs = (teacher.config.latent_channels, len(teacher.config.block_out_channels))
    if ours != theirs:
        raise ValueError(f"--model_config's VAE has {ours[0]} latent channels and {ours[1]} blocks, the teacher "
                         f"{theirs[0]} and {theirs[1]}: a distilled VAE needs the teacher's latent shape")


def decoder_student(teacher: AutoencoderKL, vae_config: dict) -> LightDecoderAutoencoderKL:
    """The teacher's encoder (weights copied) with the decoder that `vae_config`'s `decoder_*` settings describe;
    ValueError naming any other setting, since the encoder must stay the teacher's."""
    other = sorted(k for k in vae_config if k not in DECODER_SETTINGS and not k.startswith("_"))
    if other:
        raise ValueError(f"--train_decoder_only with a teacher keeps the teacher's encoder: --model_config's 'vae' "
                         f"may set only {list(DECODER_SETTINGS)}, not {other}")
    student = LightDecoderAutoencoderKL.from_config(
        teacher.config, **{k: v for k, v in vae_config.items() if k in DECODER_SETTINGS})
    student.encoder.load_state_dict(teacher.encoder.state_dict())
    if teacher.quant_conv is not None:
        student.quant_conv.load_state_dict(teacher.quant_conv.state_dict())
    return student


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    accelerator = Accelerator(
        cpu=runs_on_cpu_only(),
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    teacher = None
    if args.teacher_vae_model_name_or_path:
        teacher = load_vae(args.teacher_vae_model_name_or_path, subfolder=args.teacher_subfolder)
        teacher.requires_grad_(False).eval().to(accelerator.device)
    vae_config = load_model_config(args.model_config)["vae"]
    if args.pretrained_vae_model_name_or_path:
        vae = load_vae(args.pretrained_vae_model_name_or_path, subfolder=args.subfolder)
    elif teacher is not None and args.train_decoder_only:
        vae = decoder_student(teacher, vae_config)
    else:
        vae = vae_class(vae_config)(**vae_config)
    if teacher is not None:
        check_same_latent_shape(vae, teacher)
    vae.requires_grad_(True)
    if args.train_decoder_only:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    parameters = [p for p in vae.parameters() if p.requires_grad]

    sources = collect_sources(args)
    order = np.random.default_rng(args.seed).permutation(len(sources))
    held_out = max(1, int(len(sources) * args.validation_fraction))
    train_set = ImageSet([sources[i] for i in order[held_out:]], args.resolution, args.grey, args.seed,
                         args.crop_size)
    validation_set = ImageSet([sources[i] for i in order[:held_out]], args.resolution, args.grey, args.seed)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=args.train_batch_size, shuffle=True)
    validation_loader = torch.utils.data.DataLoader(validation_set, batch_size=args.train_batch_size)
    before = reconstruction_metrics(vae, validation_loader)
    if teacher is not None:
        before["teacher_agreement"] = teacher_agreement(vae, teacher, validation_loader)
    logger.info(f"held-out reconstruction before: {before}")

    optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer, num_warmup_steps=args.lr_warmup_steps,
                                 num_training_steps=args.max_train_steps)
    vae, optimizer, train_loader, lr_scheduler = accelerator.prepare(vae, optimizer, train_loader, lr_scheduler)
    global_step = 0
    if args.resume_from_checkpoint:
        checkpoint = find_checkpoint(output_dir, args.resume_from_checkpoint)
        if checkpoint is not None:
            accelerator.load_state(str(checkpoint))
            global_step = checkpoint_step(checkpoint)
    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    progress = tqdm(range(args.max_train_steps), initial=global_step, disable=not accelerator.is_local_main_process)
    model = accelerator.unwrap_model(vae)
    while global_step < args.max_train_steps:
        epoch = global_step // steps_per_epoch
        train_set.epoch = epoch
        train_loader.set_epoch(epoch)
        skip = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
        for images in accelerator.skip_first_batches(train_loader, skip) if skip else train_loader:
            with accelerator.accumulate(vae):
                if teacher is None:
                    posterior = model.encode(images).latent_dist
                    latents, target = posterior.sample(), images
                    term, weight, latent_loss = "kl", args.kl_weight, posterior.kl().mean()
                else:
                    with torch.no_grad():
                        taught = teacher.encode(images).latent_dist
                        latents = taught.sample()
                        target = teacher.decode(latents).sample
                    term, weight = "latent_mse", args.latent_weight
                    latent_loss = torch.zeros((), device=images.device)
                    if not args.train_decoder_only:  # else the encoder is the teacher's own
                        posterior = model.encode(images).latent_dist  # match its mean and log-variance
                        latent_loss = (F.mse_loss(posterior.mean.float(), taught.mean.float())
                                       + F.mse_loss(posterior.logvar.float(), taught.logvar.float()))
                reconstruction = model.decode(latents).sample
                l1 = F.l1_loss(reconstruction.float(), target.float())
                ssim = structural_similarity_index_measure((reconstruction.float().clamp(-1, 1) + 1) / 2,
                                                           (target.float().clamp(-1, 1) + 1) / 2, data_range=1.0)
                loss = l1 + args.ssim_weight * (1 - ssim) + weight * latent_loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(parameters, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            progress.update(1)
            progress.set_postfix(l1=f"{l1.item():.4f}", ssim=f"{ssim.item():.3f}")
            accelerator.log({"l1": l1.item(), "ssim": ssim.item(), term: latent_loss.item()}, step=global_step)
            if global_step % args.checkpointing_steps == 0 and accelerator.is_main_process:
                save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
            if global_step >= args.max_train_steps:
                break

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        model.eval()
        after = reconstruction_metrics(model, validation_loader)
        if teacher is not None:
            after["teacher_agreement"] = teacher_agreement(model, teacher, validation_loader)
        logger.info(f"held-out reconstruction after: {after}")
        if teacher is not None:
            model.register_to_config(scaling_factor=teacher.config.scaling_factor)  # the teacher's latent space
        elif not args.train_decoder_only:
            model.register_to_config(scaling_factor=latent_scaling_factor(model, validation_loader))
            logger.info(f"latent scaling factor: {model.config.scaling_factor:.5f}")
        model.save_pretrained(output_dir / "vae")
        metrics = {"before": before, "after": after, "steps": global_step, "train_images": len(train_set),
                   "held_out_images": len(validation_set)}
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    # As in train_ffa.py: release the DDP wrapper on every process before the process group goes.
    vae, optimizer = accelerator.free_memory(vae, optimizer)
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main()
