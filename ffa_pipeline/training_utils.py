"""Checkpoint helpers shared by the training scripts (accelerate does the saving; this adds safety)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator


def _checkpoints(output_dir: Path) -> list[Path]:
    return sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(accelerator: Accelerator, output_dir: str | Path, step: int, total_limit: int | None) -> Path:
    """`save_state` into a temporary folder that is renamed when complete: an interrupted save leaves no
    half-written checkpoint, and the oldest ones beyond `total_limit` are removed first."""
    output_dir = Path(output_dir)
    if total_limit is not None:
        existing = _checkpoints(output_dir)
        for old in existing[: max(0, len(existing) - total_limit + 1)]:
            shutil.rmtree(old)
    final = output_dir / f"checkpoint-{step}"
    partial = output_dir / f".partial-checkpoint-{step}"
    shutil.rmtree(partial, ignore_errors=True)
    accelerator.save_state(str(partial))
    os.replace(partial, final)
    return final


def find_checkpoint(output_dir: str | Path, resume_from_checkpoint: str) -> Path | None:
    """`--resume_from_checkpoint`: a folder, or 'latest' (None when there is none yet)."""
    if resume_from_checkpoint == "latest":
        found = _checkpoints(Path(output_dir))
        return found[-1] if found else None
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        raise ValueError(f"--resume_from_checkpoint {resume_from_checkpoint!r} is not a folder (or use 'latest')")
    return path


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def runs_on_cpu_only() -> bool:
    """True without CUDA / MPS. Passed as `Accelerator(cpu=...)`: only then does accelerate turn several processes
    started by `accelerate launch --multi_gpu --num_processes N` (or torchrun) into one gloo group on a CPU machine;
    otherwise each process would train alone."""
    return not (torch.cuda.is_available() or torch.backends.mps.is_available())
