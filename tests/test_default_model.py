"""The embedded default model (assets/ffa-default): present, small, complete, and really turns photos into FFA.

Quality floors here are far below the measured figures (README, model card): they catch a broken or missing
model, not a slightly worse one. Speed is measured in benchmarks/, never asserted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ffa_pipeline import DEFAULT_MODEL_DIR, load_default_pipeline
from ffa_pipeline.baselines import inverted_green
from ffa_pipeline.metrics import psnr, vessel_auc
from ffa_pipeline.phantom import render_sample, sample_eye
from ffa_pipeline.vocab import DISEASES, MODALITIES, PHASES

MAX_MEGABYTES = 30


@pytest.fixture(scope="module")
def default_pipe():
    pipe = load_default_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_default_model_is_shipped_small_and_in_the_hub_layout():
    assert (DEFAULT_MODEL_DIR / "model_index.json").is_file()
    assert (DEFAULT_MODEL_DIR / "pipeline.py").is_file() and (DEFAULT_MODEL_DIR / "README.md").is_file()
    size = sum(path.stat().st_size for path in DEFAULT_MODEL_DIR.rglob("*") if path.is_file())
    assert size <= MAX_MEGABYTES * 1024 * 1024, f"{size / 2**20:.1f} MB"


def test_default_model_loads_trained_with_the_whole_vocabulary(default_pipe):
    assert not default_pipe.is_untrained
    assert set(default_pipe.modalities) == set(MODALITIES)
    assert set(default_pipe.diseases) == set(DISEASES)
    assert set(default_pipe.phases) == set(PHASES)
    assert default_pipe.default_resolution == 256


@pytest.mark.parametrize(("modality", "disease"), [("cfp", "diabetic_retinopathy"), ("uwf_slo", "amd")])
def test_default_model_draws_the_input_eyes_vessels(default_pipe, modality, disease):
    rendered = render_sample(sample_eye(12345, disease), 256, modalities=[modality], phases=["early"])[modality]
    source, truth = rendered["source_image"], rendered["ffa_early"].astype(np.float32) / 255
    output = default_pipe(source, modality=modality, disease=disease, phase="early", output_type="np",
                          output_size="input", generator=torch.Generator().manual_seed(0)).images[0, ..., 0]
    field = truth > 0.02
    auc = vessel_auc(output, rendered["vessel_mask"] > 0, field)
    assert auc > 0.75, auc
    baseline = inverted_green(source.astype(np.float32) / 255, field)
    assert psnr(output, truth) > psnr(baseline, truth), "worse than the inverted green channel"
