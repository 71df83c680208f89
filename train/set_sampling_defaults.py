"""Record a checkpoint's recommended sampling settings (scheduler, steps, guidance) in the checkpoint itself.

    python train/set_sampling_defaults.py --model runs/ffa-small --scheduler unipc --num_inference_steps 8 \\
        --image_guidance_scale 1.0 --label_guidance_scale 1.5 [--timestep_spacing trailing] \\
        [--guidance_interval 0 0.5] \\
        [--native_resolution_ridges uwf_slo] [--modality_resolutions uwf_slo=512]

Pick them from `train/evaluate.py --steps_sweep` (the fastest setting within noise of the best quality). The
pipeline, the app and the command line use them whenever a caller does not choose; callers still can. The
folder is rewritten through a temporary copy, so a failure leaves the old checkpoint as it was.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

from ffa_pipeline import FFADiffusionPipeline
from ffa_pipeline.pipeline_ffa import SCHEDULERS, make_scheduler

TIMESTEP_SPACINGS = ["leading", "trailing", "linspace"]  # diffusers' schedulers' `timestep_spacing` values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a pipeline folder written by save_pretrained")
    parser.add_argument("--like", metavar="MODEL", default=None, help="start from this checkpoint's scheduler and "
                        "settings (e.g. to compare a model trained from scratch with the default model fairly)")
    parser.add_argument("--scheduler", choices=list(SCHEDULERS), default=None, help="default: keep the current one")
    parser.add_argument("--timestep_spacing", choices=TIMESTEP_SPACINGS, default=None,
                        help="the scheduler's choice of timesteps; 'trailing' starts from the last training timestep, "
                        "which few steps need (Lin et al. 2024). Default: keep the current one")
    parser.add_argument("--num_inference_steps", type=int, default=None)
    parser.add_argument("--image_guidance_scale", type=float, default=None)
    parser.add_argument("--label_guidance_scale", type=float, default=None)
    parser.add_argument("--guidance_interval", type=float, nargs=2, metavar=("START", "END"), default=None,
                        help="the fraction of the steps that the guidance applies in (the pipeline's "
                        "`guidance_interval`; 0 0.5: the first half only). Default: keep the current one")
    parser.add_argument("--native_resolution_ridges", nargs="*", metavar="MODALITY", default=None,
                        help="input preprocessing: modalities whose ridge maps come from the source at its own "
                        "resolution (as train_ffa.py's flag; for a model trained on low-resolution sources of those "
                        "modalities, where both ways agree). Default: keep the current ones")
    parser.add_argument("--modality_resolutions", nargs="*", metavar="MODALITY=SIDE", default=None,
                        help="output side for a modality when a caller gives no height/width (e.g. uwf_slo=512 for a "
                        "model fine-tuned at 512 px on ultra-widefield frames); none given: every modality at the "
                        "model's own resolution. Default: keep the current ones")
    args = parser.parse_args(argv)
    if args.modality_resolutions is not None:
        args.modality_resolutions = dict(parse_side(parser, item) for item in args.modality_resolutions)
    if args.num_inference_steps is not None and args.num_inference_steps < 1:
        parser.error(f"--num_inference_steps must be >= 1, got {args.num_inference_steps}")
    for flag in ("image_guidance_scale", "label_guidance_scale"):
        if getattr(args, flag) is not None and not getattr(args, flag) >= 0:
            parser.error(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    for flag in ("model", "like"):
        folder = getattr(args, flag)
        if folder is not None and not Path(folder, "model_index.json").is_file():
            parser.error(f"--{flag} {folder!r} is not a pipeline folder (no model_index.json)")
    return args


def parse_side(parser: argparse.ArgumentParser, item: str) -> tuple[str, int]:
    """'uwf_slo=512' -> ('uwf_slo', 512); the pipeline checks the modality and the side."""
    name, _, side = item.partition("=")
    if not name or not side.isdigit():
        parser.error(f"--modality_resolutions takes MODALITY=SIDE items such as uwf_slo=512, got {item!r}")
    return name, int(side)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    model = Path(args.model)
    pipe = FFADiffusionPipeline.from_pretrained(model)
    if args.like is not None:
        reference = FFADiffusionPipeline.from_pretrained(args.like)
        pipe.scheduler = type(reference.scheduler).from_config(
            pipe.scheduler.config, timestep_spacing=reference.scheduler.config.timestep_spacing)
        pipe.register_to_config(**{key: reference.config[key] for key in (
            "default_num_inference_steps", "default_image_guidance_scale", "default_label_guidance_scale",
            "default_guidance_interval")})
        copied = {name: side for name, side in reference.config.modality_resolutions.items()
                  if name in pipe.modalities}
        pipe.check_modality_resolutions(copied)
        pipe.register_to_config(modality_resolutions=copied)
        pipe.condition_encoder.set_native_resolution_ridges(
            [name for name in reference.native_resolution_ridges if name in pipe.modalities])
    if args.native_resolution_ridges is not None:
        pipe.condition_encoder.set_native_resolution_ridges(args.native_resolution_ridges)
    if args.modality_resolutions is not None:
        pipe.check_modality_resolutions(args.modality_resolutions)
        pipe.register_to_config(modality_resolutions=args.modality_resolutions)
    if args.scheduler is not None:
        pipe.scheduler = make_scheduler(args.scheduler, pipe.scheduler.config)
    if args.timestep_spacing is not None:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config,
                                                          timestep_spacing=args.timestep_spacing)
    steps, image_guidance, label_guidance = pipe.sampling_settings(
        args.num_inference_steps, args.image_guidance_scale, args.label_guidance_scale
    )
    try:
        interval = pipe.guidance_interval_or_default(args.guidance_interval)
    except ValueError as error:
        raise SystemExit(f"--guidance_interval: {error}") from None
    pipe.register_to_config(default_num_inference_steps=steps, default_image_guidance_scale=image_guidance,
                            default_label_guidance_scale=label_guidance, default_guidance_interval=list(interval))
    staging, previous = model.with_name(model.name + ".tmp"), model.with_name(model.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    pipe.save_pretrained(staging)
    for extra in model.iterdir():  # keep what save_pretrained does not write (model card, lora/, logs)
        if not (staging / extra.name).exists():
            copy = shutil.copytree if extra.is_dir() else shutil.copy2
            copy(extra, staging / extra.name)
    model.rename(previous)
    staging.rename(model)
    shutil.rmtree(previous)
    print(f"{model}: {type(pipe.scheduler).__name__} ({pipe.scheduler.config.timestep_spacing} timesteps), "
          f"{steps} steps, image guidance {image_guidance:g}, label guidance {label_guidance:g} "
          f"(in steps {interval[0]:g}-{interval[1]:g} of the way), "
          f"native-resolution ridges for {pipe.native_resolution_ridges}, "
          f"output sides {pipe.config.modality_resolutions or 'all ' + str(pipe.default_resolution)}")


if __name__ == "__main__":
    main()
