"""Latency of the embedded default model: one 256x256 angiogram from a real colour fundus photo, default settings.

    .venv/bin/python benchmarks/bench_default_latency.py [--repeats 15] [--model assets/ffa-default]
        [--num_inference_steps N --image_guidance_scale G --guidance_interval START END]  # not the checkpoint's
        [--image ../shared/data/uwf_slo_ffa/test/10_slo.png --modality uwf_slo]  # another input

The call is what the Quickstart and the app make: `pipe(photo, modality="cfp", phase=...)` with the checkpoint's own
scheduler, steps, guidance and guidance interval (`pipe.sampling_settings()`,
`pipe.guidance_interval_or_default(None)`), a PIL photo in (the 512x512 copy of scikit-image's CC0 retina in
assets/examples, so field-of-view detection and resizing are included) and a PIL angiogram out. Wall time per call
after `--warmup` untimed calls; median and min are reported, nothing is asserted. It also reports the median seconds
per call spent in each network (`components_median_s`: the VAE's encoder and decoder, the UNet over all steps and
branches, the condition encoder; "other" is the rest: ridge maps, resizing, the scheduler), timed by forward hooks,
to show which part a faster model must shrink. Writes `benchmarks/results/bench_default_latency.json`, with the CPU's
model name, torch's SIMD level and the time (UTC) of the run: the same "2-core machine" gave the previous default
model 0.85 s in some sessions and 2.2 s (an AVX2-only AMD EPYC) in another, and one instance's speed drifts.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import PIL.Image
import torch

from ffa_pipeline import load_default_pipeline

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "assets" / "examples" / "retina_skimage_cc0.png"


def cpu_model() -> str:
    """The CPU's model name (Linux), which platform.processor() does not give."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


class ComponentTimer:
    """Seconds spent in each named module's forward calls, summed until `reset`; timed by forward hooks."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.seconds: dict[str, float] = defaultdict(float)
        self._started: dict[str, float] = {}
        for name, module in modules.items():
            module.register_forward_pre_hook(lambda *_, name=name: self._started.__setitem__(name, time.perf_counter()))
            module.register_forward_hook(lambda *_, name=name: self._stop(name))

    def _stop(self, name: str) -> None:
        self.seconds[name] += time.perf_counter() - self._started.pop(name)

    def reset(self) -> dict[str, float]:
        """The seconds since the last reset, per module, and start again."""
        seconds, self.seconds = dict(self.seconds), defaultdict(float)
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded default model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--num_inference_steps", type=int, default=None, help="default: the checkpoint's own")
    parser.add_argument("--image_guidance_scale", type=float, default=None, help="default: the checkpoint's own")
    parser.add_argument("--guidance_interval", type=float, nargs=2, metavar=("START", "END"), default=None,
                        help="default: the checkpoint's own")
    parser.add_argument("--image", type=Path, default=PHOTO, help="the input (default: the skimage photo)")
    parser.add_argument("--modality", default="cfp", help="the input's modality (one of the model's)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "bench_default_latency.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_default_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    if args.modality not in pipe.modalities:
        parser.error(f"--modality {args.modality!r} is not one of the model's: {pipe.modalities}")
    timer = ComponentTimer({"vae_encoder": pipe.vae.encoder, "unet": pipe.unet, "vae_decoder": pipe.vae.decoder,
                            "condition_encoder": pipe.condition_encoder})
    photo = PIL.Image.open(args.image).convert("RGB")
    phases = ["early", "late"]
    settings = {"num_inference_steps": args.num_inference_steps, "image_guidance_scale": args.image_guidance_scale}
    interval = pipe.guidance_interval_or_default(args.guidance_interval)
    for index in range(args.warmup):
        pipe(photo, modality=args.modality, phase=phases[index % 2], generator=torch.Generator().manual_seed(index),
             guidance_interval=interval, **settings)
    seconds, components = [], defaultdict(list)
    for index in range(args.repeats):
        timer.reset()
        start = time.perf_counter()
        pipe(photo, modality=args.modality, phase=phases[index % 2], generator=torch.Generator().manual_seed(index),
             guidance_interval=interval, **settings)
        seconds.append(time.perf_counter() - start)
        spent = timer.reset()
        for name, value in {**spent, "other": seconds[-1] - sum(spent.values())}.items():
            components[name].append(value)
    steps, image_guidance, label_guidance = pipe.sampling_settings(**settings)
    result = {
        "model": str(args.model or "embedded default"), "untrained_fallback": bool(pipe.is_untrained),
        "input": f"{args.image.name} {photo.width}x{photo.height}", "modality": args.modality,
        "output_px": pipe.resolution_for(args.modality),
        "scheduler": type(pipe.scheduler).__name__, "num_inference_steps": steps,
        "image_guidance_scale": image_guidance, "label_guidance_scale": label_guidance,
        "unet_branches": list(pipe._guidance_branches()),  # of the last call's guided steps
        "guidance_interval": list(interval),
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "measured_at": datetime.now(UTC).isoformat(timespec="minutes"),
        "repeats": args.repeats, "median_s": statistics.median(seconds), "min_s": min(seconds),
        "max_s": max(seconds),
        "components_median_s": {name: round(statistics.median(values), 4) for name, values in components.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| model | scheduler | steps | guidance (image / label, interval) | median s | min s |\n"
          f"|---|---|---|---|---|---|\n| {result['model']} | {result['scheduler']} | {steps} | "
          f"{image_guidance:g} / {label_guidance:g}, {interval[0]:g}-{interval[1]:g} | "
          f"{result['median_s']:.3f} | {result['min_s']:.3f} |")
    print("median s per call by network: " + ", ".join(
        f"{name} {value:.3f}" for name, value in result["components_median_s"].items()))


if __name__ == "__main__":
    main()
