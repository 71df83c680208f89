"""Training speed of train/train_ffa.py on this machine (a benchmark, not a test).

1. Step overhead: one full training step of train_ffa (condition encoder, disease embedding, UNet, loss,
   backward, optimizer step) on a batch of cached latents, against a bare UNet forward + backward + optimizer step
   on the same tensors. Target ratio <= 1.15.
2. Throughput: samples/s of real `train_ffa.py --cache_latents` runs (small config, 256x256) with one process and
   under `accelerate launch --multi_gpu --num_processes 2` (same global batch), from the timestamps that
   train_log.jsonl records per step (start-up and latent caching excluded).

    python benchmarks/bench_train.py [--config small] [--batch_size 4] [--steps 20] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "train"))

import train_ffa  # noqa: E402

from ffa_pipeline.model_config import build_pipeline  # noqa: E402


def median_seconds(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_overhead(config: str, batch_size: int, repeats: int) -> dict:
    """Median seconds of a full train_ffa step vs a bare UNet step on identical cached-latent batches."""
    pipe = build_pipeline(config)
    args = train_ffa.parse_args(["--model_config", config, "--train_data_dir", ".", "--conditioning_dropout_prob",
                                 "0.05"])
    parameters = train_ffa.trainable_modules(pipe, args)
    optimizer = torch.optim.AdamW(parameters, lr=1e-5)
    size = pipe.unet.config.sample_size
    channels = pipe.vae.config.latent_channels
    batch = {
        "source": torch.randn(batch_size, channels, size, size),
        "target": torch.randn(batch_size, channels, size, size),
        "partner": torch.zeros(batch_size, channels, size, size),
        "modality": torch.zeros(batch_size, dtype=torch.long),
        "disease": torch.ones(batch_size, dtype=torch.long),
        "phase_seconds": torch.full((batch_size,), 30.0),
        "partner_modality": torch.zeros(batch_size, dtype=torch.long),
        "has_partner": torch.zeros(batch_size, dtype=torch.bool),
    }
    models = {"unet": pipe.unet, "condition_encoder": pipe.condition_encoder,
              "disease_embedding": pipe.disease_embedding}
    noise_scheduler = train_ffa.DDPMScheduler.from_config(pipe.scheduler.config)
    generator = torch.Generator().manual_seed(0)

    def full_step():
        loss, _ = train_ffa.training_loss(batch, pipe, models, noise_scheduler, args, generator, cached=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    model_input = torch.randn(batch_size, 2 * channels, size, size)
    timesteps = torch.randint(0, 1000, (batch_size,))
    with torch.no_grad():
        context = pipe.condition_encoder(batch["source"], batch["modality"]).context
        class_labels = pipe.disease_embedding(batch["disease"], batch["phase_seconds"])
    target = torch.randn(batch_size, channels, size, size)

    def bare_step():
        prediction = pipe.unet(model_input, timesteps, encoder_hidden_states=context, class_labels=class_labels).sample
        torch.nn.functional.mse_loss(prediction, target).backward()
        optimizer.step()
        optimizer.zero_grad()

    bare, full = median_seconds(bare_step, repeats), median_seconds(full_step, repeats)
    return {"bare_unet_step_s": bare, "full_step_s": full, "ratio": full / bare, "batch_size": batch_size}


def run_samples_per_second(command: list[str], output_dir: Path, global_batch: int) -> float:
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    times = [json.loads(line)["time"] for line in (output_dir / "train_log.jsonl").read_text().splitlines()]
    measured = times[2:]  # the first steps include one-off allocations
    return global_batch * (len(measured) - 1) / (measured[-1] - measured[0])


def throughput(config: str, batch_size: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, str(ROOT / "train" / "make_phantom_dataset.py"), "--num_samples", "8",
                        "--resolution", "256", "--output_dir", str(tmp / "data")], check=True, capture_output=True)
        common = ["--model_config", config, "--train_data_dir", str(tmp / "data"), "--cache_latents",
                  "--target_image_column", "ffa_early,ffa_late", "--phase_column", "ffa_early_seconds,ffa_late_seconds",
                  "--max_train_steps", str(steps), "--checkpointing_steps", str(10 * steps)]
        script = str(ROOT / "train" / "train_ffa.py")
        one = run_samples_per_second(
            [sys.executable, script, *common, "--train_batch_size", str(batch_size), "--output_dir", str(tmp / "one")],
            tmp / "one", batch_size)
        two = run_samples_per_second(
            [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
             "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", script, *common,
             "--train_batch_size", str(batch_size // 2), "--output_dir", str(tmp / "two")],
            tmp / "two", batch_size)
    return {"one_process_samples_per_s": one, "two_processes_samples_per_s": two, "two_vs_one": two / one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="small")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "bench_train.json"))
    args = parser.parse_args()
    results = {"config": args.config, "threads": torch.get_num_threads(),
               "step_overhead": step_overhead(args.config, args.batch_size, args.repeats),
               "throughput": throughput(args.config, args.batch_size, args.steps)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    overhead, speed = results["step_overhead"], results["throughput"]
    print("| measure | value |\n|---|---|")
    print(f"| bare UNet fwd+bwd+step (batch {overhead['batch_size']}) | {overhead['bare_unet_step_s']:.3f} s |")
    print(f"| full train_ffa step, cached latents | {overhead['full_step_s']:.3f} s |")
    print(f"| ratio full / bare (target <= 1.15) | {overhead['ratio']:.3f} |")
    print(f"| 1 process | {speed['one_process_samples_per_s']:.2f} samples/s |")
    print(f"| 2 processes (accelerate launch) | {speed['two_processes_samples_per_s']:.2f} samples/s |")
    print(f"| 2 vs 1 | {speed['two_vs_one']:.2f}x |")


if __name__ == "__main__":
    main()
