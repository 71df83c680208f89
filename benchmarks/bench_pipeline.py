"""Per-image latency and peak memory of `FFADiffusionPipeline` against a bare loop and diffusers' InstructPix2Pix.

A benchmark, not a test: it prints a markdown table and writes JSON; nothing asserts. What is measured, all in one
process, on the same randomly initialised weights (`build_pipeline(--config)`), the same scheduler object, the same
initial noise and the same number of steps:

* **FFA pipeline** - `pipe(image, ...)` with a 256x256 RGB PIL image in and a PIL angiogram out, so its time includes
  the pipeline's own preprocessing (field-of-view detection, crop, resize, [-1, 1]) and postprocessing (PIL).
* **Bare loop + same pre/post** - the same computation written by hand with the pipeline's modules (VAE encode,
  condition encoder, disease embedding, `scheduler.set_timesteps`, per step `scale_model_input` / cat / UNet /
  guidance combine / `scheduler.step`, VAE decode, grey) wrapped in the same `image_processor.preprocess` and
  `postprocess` calls. `pipeline / this` is the pipeline's overhead ratio (target <= 1.05).
* **Bare loop (tensor in/out)** - the bare loop alone, on an already preprocessed tensor, returning a tensor.
  Preprocessing and postprocessing are also timed on their own and listed.
* **diffusers InstructPix2Pix** - `StableDiffusionInstructPix2PixPipeline` on the identical VAE and a UNet built
  from the same config without the class embedding (`class_embed_type=None`; the identity class embedding has no
  weights, so the state dict loads strictly). No text encoder runs: `prompt_embeds` / `negative_prompt_embeds` of
  the same shape as the FFA context (so cross-attention costs the same) are passed in, which if anything favours
  InstructPix2Pix. `FFA / this` is the second ratio (target <= 1.0). It has no 2-branch mode.

Guidance settings: 3 branches (image and label guidance 1.5, InstructPix2Pix's three passes; pix2pix uses
guidance_scale = label scale) and 1 branch (both scales 1.0). Progress bars are disabled everywhere.

Timing: `--warmup` untimed rounds, then `--repeats` rounds; in each round every variant runs once, in a rotated
order, so that load from other processes spreads over all variants alike. Latency is wall time
(`time.perf_counter`), reported as median and min; process CPU time is listed beside it. Ratios are given from the
medians (the headline), the mins, and as the median of per-round paired ratios. `torch` threads are left at their
default unless `--threads` is given (reported either way): on a CPU that other busy processes share, two OpenMP
threads stall on each other and times swing 5-30x, while `--threads 1` stays stable. Peak RSS: the process peak
(`ru_maxrss`) and, where Linux allows resetting the high-water mark (`/proc/self/clear_refs`), the peak while each
variant ran (all models stay loaded throughout).

    .venv/bin/python benchmarks/bench_pipeline.py                   # small config, 20 DDIM steps, 5 repeats
    .venv/bin/python benchmarks/bench_pipeline.py --config tiny --repeats 3 --scheduler dpm
    .venv/bin/python benchmarks/bench_pipeline.py --profile          # also cProfile the pipeline vs the bare loop
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionInstructPix2PixPipeline,
    UNet2DConditionModel,
)
from diffusers import __version__ as diffusers_version

from ffa_pipeline.model_config import build_pipeline

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "bench_pipeline.json"
OVERHEAD_TARGET = 1.05
PIX2PIX_TARGET = 1.0
SETTINGS = {"3 branches": (1.5, 1.5), "1 branch": (1.0, 1.0)}  # name -> (image_guidance_scale, label_guidance_scale)
MODALITY, DISEASE, PHASE = "cfp", "unknown", "late"
MIB = 1024 * 1024


# --------------------------------------------------------------------------------------------------- memory
def _status_bytes(field: str) -> int | None:
    """A `/proc/self/status` memory field (VmRSS, VmHWM) in bytes, or None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _process_peak_rss(*peaks: int | None) -> int:
    """Peak RSS of the whole run in bytes: `ru_maxrss` (KiB on Linux, bytes on macOS), or a larger high-water mark
    read before a reset (resetting VmHWM can lower what `ru_maxrss` reports afterwards)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak if sys.platform == "darwin" else peak * 1024
    return max([peak, *(p for p in peaks if p is not None)])


STANDALONE_SCRIPT = """
import resource, sys, numpy as np, torch
if {threads} is not None:
    torch.set_num_threads({threads})
from ffa_pipeline.model_config import build_pipeline
def peak():  # VmHWM: ru_maxrss of a child spawned by a big parent can report the parent's peak
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return value if sys.platform == "darwin" else value * 1024
after_import = peak()
pipe = build_pipeline({config!r})
pipe.set_progress_bar_config(disable=True)
after_build = peak()
size = pipe.default_resolution
image = np.zeros((size, size, 3), np.uint8)
image[size // 8 : -size // 8, size // 8 : -size // 8] = (190, 90, 40)
pipe(image, num_inference_steps={steps}, image_guidance_scale=1.5, label_guidance_scale=1.5)
print(after_import, after_build, peak())
"""


def standalone_peak_rss(config: str, steps: int, threads: int | None) -> dict[str, int] | None:
    """Peak RSS of a fresh process that only imports ffa_pipeline, builds the pipeline and runs one 3-branch call
    (no InstructPix2Pix pipeline, no second UNet): the number for the pipeline on its own."""
    code = STANDALONE_SCRIPT.format(config=config, steps=steps, threads=threads)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"standalone RSS measurement failed:\n{result.stderr[-2000:]}", file=sys.stderr)
        return None
    after_import, after_build, after_call = (int(v) for v in result.stdout.split()[-3:])
    return {"after_import_bytes": after_import, "after_build_bytes": after_build, "after_one_call_bytes": after_call}


# --------------------------------------------------------------------------------------------------- inputs
def synthetic_fundus(size: int, seed: int = 0) -> PIL.Image.Image:
    """A colour-fundus-like RGB image: a textured orange disc on black, so field-of-view detection does real work."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    radius = 0.46 * size
    inside = (xx - size / 2 + 0.5) ** 2 + (yy - size / 2 + 0.5) ** 2 < radius**2
    base = np.array([0.75, 0.35, 0.15]) * (0.8 + 0.2 * rng.random((size, size, 1)))
    return PIL.Image.fromarray((base * inside[..., None] * 255).astype(np.uint8), "RGB")


def build_pix2pix(pipe, scheduler) -> StableDiffusionInstructPix2PixPipeline:
    """diffusers' InstructPix2Pix on the FFA pipeline's VAE and UNet weights (no class embedding, no text encoder)."""
    config = {**pipe.unet.config, "class_embed_type": None}
    unet = UNet2DConditionModel.from_config(config)
    if pipe.unet.dtype != unet.dtype:
        unet = unet.to(pipe.unet.dtype)
    unet.load_state_dict(pipe.unet.state_dict(), strict=True)
    pix2pix = StableDiffusionInstructPix2PixPipeline(
        vae=pipe.vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pix2pix.set_progress_bar_config(disable=True)
    return pix2pix


def check_same_unet(pipe, pix2pix) -> float:
    """Max |difference| of the two UNets on one input with zero class labels (the identity embedding adds nothing)."""
    unet = pipe.unet
    generator = torch.Generator().manual_seed(1)
    size = unet.config.sample_size
    sample = torch.randn(1, unet.config.in_channels, size, size, generator=generator)
    context = torch.randn(1, 5, unet.config.cross_attention_dim, generator=generator)
    zeros = torch.zeros(1, unet.time_embedding.linear_2.out_features)
    with torch.no_grad():
        ours = unet(sample, 500, encoder_hidden_states=context, class_labels=zeros).sample
        theirs = pix2pix.unet(sample, 500, encoder_hidden_states=context).sample
    return float((ours - theirs).abs().max())


# ----------------------------------------------------------------------------------------------- bare loop
@torch.no_grad()
def bare_loop(
    pipe, pixels: torch.Tensor, noise: torch.Tensor, steps: int, image_scale: float, label_scale: float
) -> torch.Tensor:
    """The pipeline's computation by hand: [1, 3, H, W] in [-1, 1] -> grey [1, 1, H, W] in [-1, 1]."""
    vae, unet, scheduler = pipe.vae, pipe.unet, pipe.scheduler
    scaling = vae.config.scaling_factor
    shift = vae.config.get("shift_factor") or 0.0

    # Source latents and the conditioning of every guidance branch ([full, image-only, unconditional]).
    source = (vae.encode(pixels).latent_dist.mode() - shift) * scaling
    branches = 1 if image_scale == 1.0 and label_scale == 1.0 else (2 if image_scale == 1.0 else 3)
    drop_image = torch.tensor([False, False, True][:branches])
    drop_labels = torch.tensor([False, True, True][:branches])
    modality_ids = torch.tensor([pipe.condition_encoder.modality_index(MODALITY)] * branches)
    disease_ids = torch.tensor([pipe.disease_embedding.disease_index(DISEASE)] * branches)
    seconds = torch.tensor([pipe.phases[PHASE]] * branches, dtype=torch.float32)
    encoded = pipe.condition_encoder(source.repeat(branches, 1, 1, 1), modality_ids, drop_image=drop_image)
    shared, context = encoded.shared_latents, encoded.context
    class_labels = pipe.disease_embedding(disease_ids, seconds, drop_labels=drop_labels)

    scheduler.set_timesteps(steps)
    latents = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(torch.cat([latents] * branches), t)
        model_input = torch.cat([model_input, shared], dim=1)
        noise_pred = unet(
            model_input, t, encoder_hidden_states=context, class_labels=class_labels, return_dict=False
        )[0]
        if branches == 2:
            full, image_only = noise_pred.chunk(2)
            noise_pred = image_only + label_scale * (full - image_only)
        elif branches == 3:
            full, image_only, uncond = noise_pred.chunk(3)
            noise_pred = uncond + image_scale * (image_only - uncond) + label_scale * (full - image_only)
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]

    decoded = vae.decode(latents / scaling + shift).sample
    return decoded.mean(dim=1, keepdim=True).clamp(-1, 1)


# ------------------------------------------------------------------------------------------------- timing
def _median_ratio(numerators: list[float], denominators: list[float]) -> float:
    return statistics.median(n / d for n, d in zip(numerators, denominators))


def time_variants(variants: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, dict]:
    """Run every variant once per round (rotated order); wall/CPU seconds per run and peak RSS while running."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    results = {name: {"wall_s": [], "cpu_s": [], "peak_rss_bytes": None, "rss_before_bytes": None} for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            resettable = _reset_peak_rss()
            rss_before = _status_bytes("VmRSS")
            wall, cpu = time.perf_counter(), time.process_time()
            variants[name]()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            entry = results[name]
            entry["wall_s"].append(wall)
            entry["cpu_s"].append(cpu)
            peak = _status_bytes("VmHWM") if resettable else None
            if peak is not None:
                entry["peak_rss_bytes"] = max(entry["peak_rss_bytes"] or 0, peak)
                entry["rss_before_bytes"] = rss_before
            print(f"  round {round_index + 1}/{repeats}  {name:<32} {wall:7.3f} s", flush=True)
    for entry in results.values():
        entry["median_s"] = statistics.median(entry["wall_s"])
        entry["min_s"] = min(entry["wall_s"])
        entry["median_cpu_s"] = statistics.median(entry["cpu_s"])
    return results


def time_small(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of a fast call (pre/postprocessing)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ratios(results: dict[str, dict], numerator: str, denominator: str, target: float | None = None) -> dict:
    top, bottom = results[numerator], results[denominator]
    by_median = top["median_s"] / bottom["median_s"]
    return {
        "numerator": numerator,
        "denominator": denominator,
        "by_median": by_median,
        "by_min": top["min_s"] / bottom["min_s"],
        "paired_median": _median_ratio(top["wall_s"], bottom["wall_s"]),
        "by_median_cpu": top["median_cpu_s"] / bottom["median_cpu_s"],
        "target": target,
        "meets_target": None if target is None else by_median <= target,
    }


def profile_calls(calls: dict[str, Callable[[], object]], top: int = 25) -> dict[str, str]:
    """cProfile one run of each call; the `top` functions by internal time, as text."""
    reports = {}
    for name, fn in calls.items():
        profiler = cProfile.Profile()
        profiler.runcall(fn)
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(top)
        reports[name] = stream.getvalue()
    return reports


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="small", help="bundled model config: small (default model) or tiny")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--scheduler", choices=("ddim", "dpm"), default="ddim",
                        help="ddim (the built pipeline's) or dpm (DPMSolverMultistep from the same config)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON file (default {DEFAULT_OUTPUT})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: leave torch's default). On a CPU shared with other "
                        "busy processes, 1 avoids OpenMP threads stalling on each other")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one 3-branch pipeline call and one bare loop call")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    rss_at_start = _status_bytes("VmRSS")
    pipe = build_pipeline(args.config)
    pipe.set_progress_bar_config(disable=True)
    scheduler_class = DPMSolverMultistepScheduler if args.scheduler == "dpm" else DDIMScheduler
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    pix2pix = build_pix2pix(pipe, pipe.scheduler)  # one scheduler object for all: set_timesteps resets its state
    unet_difference = check_same_unet(pipe, pix2pix)

    resolution = pipe.default_resolution
    image = synthetic_fundus(resolution)
    latent_size = resolution // pipe.vae_scale_factor
    noise = torch.randn(1, pipe.vae.config.latent_channels, latent_size, latent_size,
                        generator=torch.Generator().manual_seed(0))
    pixels, framings = pipe.image_processor.preprocess([image], resolution=resolution)
    context = pipe.condition_encoder(torch.zeros(1, pipe.vae.config.latent_channels, latent_size, latent_size),
                                     torch.tensor([0])).context
    prompt_embeds = torch.randn(context.shape, generator=torch.Generator().manual_seed(2))
    negative_prompt_embeds = torch.zeros_like(prompt_embeds)

    def run_pipeline(image_scale: float, label_scale: float, output_type: str = "pil"):
        return pipe(image, modality=MODALITY, disease=DISEASE, phase=PHASE, num_inference_steps=args.steps,
                    image_guidance_scale=image_scale, label_guidance_scale=label_scale, latents=noise,
                    output_type=output_type).images

    def run_bare_with_pre_post(image_scale: float, label_scale: float):
        source, source_framings = pipe.image_processor.preprocess([image], resolution=resolution)
        grey = bare_loop(pipe, source, noise, args.steps, image_scale, label_scale)
        return pipe.image_processor.postprocess(grey, output_type="pil", framings=source_framings)

    def run_pix2pix(image_scale: float, label_scale: float):
        return pix2pix(image=image, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
                       num_inference_steps=args.steps, guidance_scale=label_scale,
                       image_guidance_scale=image_scale, latents=noise, output_type="pil").images

    # The bare loop must compute what the pipeline computes: same input, same noise -> same angiogram.
    pipeline_np = run_pipeline(1.5, 1.5, output_type="np")
    bare_np = pipe.image_processor.postprocess(bare_loop(pipe, pixels, noise, args.steps, 1.5, 1.5), output_type="np")
    bare_difference = float(np.abs(pipeline_np - bare_np).max())

    grey = bare_loop(pipe, pixels, noise, 1, 1.0, 1.0)
    preprocess_s = time_small(lambda: pipe.image_processor.preprocess([image], resolution=resolution), 20)
    postprocess_s = time_small(
        lambda: pipe.image_processor.postprocess(grey, output_type="pil", framings=framings), 20
    )

    print(f"config={args.config} resolution={resolution} steps={args.steps} scheduler={type(pipe.scheduler).__name__}"
          f" threads={torch.get_num_threads()} cpus={os.cpu_count()} repeats={args.repeats} warmup={args.warmup}")
    print(f"max |pipeline - bare loop| = {bare_difference:.2e}; max |FFA UNet - pix2pix UNet| = {unet_difference:.2e}")
    settings_results = {}
    for setting, (image_scale, label_scale) in SETTINGS.items():
        print(f"{setting} (image_guidance_scale={image_scale}, label_guidance_scale={label_scale}):", flush=True)
        variants = {
            "FFA pipeline": lambda i=image_scale, g=label_scale: run_pipeline(i, g),
            "bare loop + same pre/post": lambda i=image_scale, g=label_scale: run_bare_with_pre_post(i, g),
            "bare loop (tensor in/out)": lambda i=image_scale, g=label_scale: bare_loop(
                pipe, pixels, noise, args.steps, i, g
            ),
            "diffusers InstructPix2Pix": lambda i=image_scale, g=label_scale: run_pix2pix(i, g),
        }
        results = time_variants(variants, args.warmup, args.repeats)
        settings_results[setting] = {
            "image_guidance_scale": image_scale,
            "label_guidance_scale": label_scale,
            "variants": results,
            "ratios": {
                "overhead (pipeline / bare loop + same pre/post)": ratios(
                    results, "FFA pipeline", "bare loop + same pre/post", OVERHEAD_TARGET
                ),
                "pipeline / bare loop (tensor in/out), includes pre/post": ratios(
                    results, "FFA pipeline", "bare loop (tensor in/out)"
                ),
                "FFA pipeline / diffusers InstructPix2Pix": ratios(
                    results, "FFA pipeline", "diffusers InstructPix2Pix", PIX2PIX_TARGET
                ),
            },
        }

    profiles = None
    if args.profile:
        profiles = profile_calls({
            "FFA pipeline (3 branches)": lambda: run_pipeline(1.5, 1.5),
            "bare loop + same pre/post (3 branches)": lambda: run_bare_with_pre_post(1.5, 1.5),
        })

    standalone = standalone_peak_rss(args.config, args.steps, args.threads)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "what": "per-image latency (batch 1) and peak RSS; see the docstring of benchmarks/bench_pipeline.py",
        "config": args.config,
        "resolution": resolution,
        "steps": args.steps,
        "scheduler": type(pipe.scheduler).__name__,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_threads_is_default": args.threads is None,
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": load_end,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers_version},
        "pix2pix_prompt_embeds_shape": list(prompt_embeds.shape),
        "max_abs_difference_pipeline_vs_bare_loop": bare_difference,
        "max_abs_difference_unets": unet_difference,
        "preprocess_s": preprocess_s,
        "postprocess_s": postprocess_s,
        "rss_at_start_bytes": rss_at_start,
        "process_peak_rss_bytes": _process_peak_rss(
            _status_bytes("VmHWM"),
            *(e["peak_rss_bytes"] for d in settings_results.values() for e in d["variants"].values()),
        ),
        "standalone_pipeline_peak_rss": standalone,
        "settings": settings_results,
        "profiles": profiles,
    }
    print_report(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return report


def print_report(report: dict) -> None:
    def mib(value: int | None) -> str:
        return "n/a" if value is None else f"{value / MIB:.0f}"

    print(f"\n### FFA pipeline benchmark: config `{report['config']}`, {report['resolution']}x{report['resolution']}, "
          f"{report['steps']} steps {report['scheduler']}, batch 1, torch threads {report['torch_num_threads']} "
          f"({'default' if report['torch_num_threads_is_default'] else 'set by --threads'}) "
          f"({report['cpu_count']} CPUs), median of {report['repeats']} after {report['warmup']} warm-up\n")
    print("| guidance | variant | median s/image | min s | median CPU s | peak RSS while running (MiB) |")
    print("|---|---|---:|---:|---:|---:|")
    for setting, data in report["settings"].items():
        for name, entry in data["variants"].items():
            print(f"| {setting} | {name} | {entry['median_s']:.3f} | {entry['min_s']:.3f} | "
                  f"{entry['median_cpu_s']:.3f} | {mib(entry['peak_rss_bytes'])} |")
    print("\n| guidance | ratio | by median | by min | paired median | CPU time | target | meets (median) |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for setting, data in report["settings"].items():
        for name, ratio in data["ratios"].items():
            target = "-" if ratio["target"] is None else f"<= {ratio['target']:g}"
            meets = {None: "-", True: "yes", False: "no"}[ratio["meets_target"]]
            print(f"| {setting} | {name} | {ratio['by_median']:.3f} | {ratio['by_min']:.3f} | "
                  f"{ratio['paired_median']:.3f} | {ratio['by_median_cpu']:.3f} | {target} | {meets} |")
    print(f"\nIncluded in the FFA pipeline's time (and in 'bare loop + same pre/post'): preprocessing (field of view, "
          f"crop, resize) {report['preprocess_s'] * 1000:.1f} ms, postprocessing (PIL) "
          f"{report['postprocess_s'] * 1000:.1f} ms per image.")
    print(f"Process peak RSS (ru_maxrss, all models loaded: FFA pipeline + the pix2pix UNet copy): "
          f"{mib(report['process_peak_rss_bytes'])} MiB; RSS at start {mib(report['rss_at_start_bytes'])} MiB.")
    standalone = report["standalone_pipeline_peak_rss"]
    if standalone is not None:
        print(f"FFA pipeline alone (fresh process: import, build, one 3-branch call): peak RSS "
              f"{mib(standalone['after_one_call_bytes'])} MiB (after import {mib(standalone['after_import_bytes'])}, "
              f"after build {mib(standalone['after_build_bytes'])}).")
    print(f"Load average start {report['load_average_start']}, end {report['load_average_end']} "
          "(other processes on the machine add noise; compare the ratios, not absolute times).")
    for name, text in (report["profiles"] or {}).items():
        print(f"\n#### cProfile: {name}\n```\n{text.strip()}\n```")


if __name__ == "__main__":
    main()
