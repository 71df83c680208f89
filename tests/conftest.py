"""Shared fixtures: a tiny random pipeline (seconds on a CPU) and small test images."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# A fresh datasets cache per test session: datasets keys its cache of local folders on the folder name and file
# pattern, so two test datasets in folders of the same name could otherwise read each other's cached copy.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="ffa-test-datasets-")
# Tiny models gain nothing from a second thread, and on a busy 2-core machine two threads per process made each
# step 30x slower (spinning threads waiting for each other); subprocesses inherit the setting.
os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np
import pytest
import torch

from ffa_pipeline.model_config import build_pipeline

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_pipe():
    pipe = build_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def fundus_like() -> np.ndarray:
    """A 60x80 RGB image with a bright disc on black, like a small fundus photo."""
    yy, xx = np.mgrid[:60, :80]
    inside = (yy - 30) ** 2 + (xx - 40) ** 2 < 28**2
    image = np.zeros((60, 80, 3), np.uint8)
    image[inside] = (200, 90, 40)
    image[inside & ((xx - 40) % 9 == 0)] = (120, 40, 20)
    return image


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def write_phantom(output: Path, num_samples: int, diseases: list[str]) -> Path:
    """A tiny phantom dataset (64 px, cfp + oct, early + late FFA) written by the project's own CLI."""
    script = Path(__file__).resolve().parent.parent / "train" / "make_phantom_dataset.py"
    subprocess.run(
        [sys.executable, str(script), "--num_samples", str(num_samples), "--resolution", "64", "--modalities", "cfp",
         "oct", "--diseases", *diseases, "--num_proc", "1", "--output_dir", str(output)],
        check=True, capture_output=True, timeout=300,
    )
    return output
