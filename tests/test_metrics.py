"""ffa_pipeline.metrics on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ffa_pipeline.metrics import (
    evaluate_pair,
    l1,
    lesion_region_error,
    ms_ssim,
    ms_ssim_scales,
    psnr,
    ssim,
    vessel_auc,
)


@pytest.fixture
def image() -> np.ndarray:
    """A smooth 64x64 grey image with some detail: structured, so SSIM is meaningful."""
    yy, xx = np.mgrid[:64, :64] / 63.0
    return (0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)).astype(np.float32)


def test_identical_images_score_perfectly(image):
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0)
    assert ms_ssim(image, image) == pytest.approx(1.0)
    assert l1(image, image) == 0.0


def test_known_offsets(image):
    shifted = image + 0.1  # stays inside [0, 1]
    assert l1(shifted, image) == pytest.approx(0.1, abs=1e-6)
    assert psnr(shifted, image) == pytest.approx(20.0, abs=1e-4)  # 10 log10(1 / 0.01)
    assert ssim(1 - image, image) < 0 < ssim(shifted, image) < 1


def test_numpy_torch_and_channel_last_inputs_agree(image):
    as_tensor = torch.from_numpy(image)
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 0.05, image.shape), 0, 1)
    assert ssim(noisy, image) == pytest.approx(ssim(torch.from_numpy(noisy), as_tensor))
    assert psnr(noisy[..., None], image[..., None]) == pytest.approx(psnr(noisy, image))


@pytest.mark.parametrize(("side", "scales"), [(8, 0), (16, 1), (32, 2), (64, 3), (128, 4), (256, 5), (512, 5)])
def test_ms_ssim_scales_follow_the_image_size(side, scales):
    assert ms_ssim_scales(side) == scales


@pytest.mark.parametrize("side", [16, 32, 256])
def test_ms_ssim_works_at_every_supported_size(side):
    rng = np.random.default_rng(side)
    target = rng.random((side, side))
    noisy = np.clip(target + rng.normal(0, 0.1, target.shape), 0, 1)
    assert ms_ssim(target, target) == pytest.approx(1.0)
    assert 0 < ms_ssim(noisy, target) < 1


def test_images_too_small_for_the_window_give_nan():
    tiny = np.random.default_rng(0).random((8, 8))
    assert math.isnan(ssim(tiny, tiny)) and math.isnan(ms_ssim(tiny, tiny))
    assert l1(tiny, tiny) == 0.0


def test_lesion_region_error_is_the_error_inside_each_mask(image):
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 10:20] = 255  # the phantom's L 0/255 masks
    pred = image.copy()
    pred[10:20, 10:20] += 0.2
    errors = lesion_region_error(pred, image, {"haemorrhage": mask, "drusen": np.zeros((64, 64), bool),
                                               "soft": mask.astype(np.float32) / 255})
    assert set(errors) == {"haemorrhage", "soft"}  # the empty mask is skipped
    assert errors["haemorrhage"] == pytest.approx(0.2, abs=1e-6) and errors["soft"] == pytest.approx(0.2, abs=1e-6)


def test_vessel_auc_known_answers():
    rng = np.random.default_rng(0)
    vessels = rng.random((64, 64)) < 0.2
    assert vessel_auc(vessels.astype(np.float32), vessels) == 1.0
    assert vessel_auc(1 - vessels.astype(np.float32), vessels) == 0.0
    assert vessel_auc(rng.random((64, 64)), vessels) == pytest.approx(0.5, abs=0.05)
    assert math.isnan(vessel_auc(rng.random((64, 64)), np.zeros((64, 64), bool)))


def test_vessel_auc_counts_only_the_region():
    """Dark surround counted as background would make any bright disc look like a vessel detector."""
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 28**2
    vessels = disc & (xx % 8 == 0)
    flat_disc = disc.astype(np.float32)  # bright disc, no vessels at all
    assert vessel_auc(flat_disc, vessels) > 0.7
    assert vessel_auc(flat_disc, vessels, region=disc) == pytest.approx(0.5)


def test_evaluate_pair_reports_every_metric(image):
    vessels = image > 0.7
    result = evaluate_pair(image, image, masks={"cnv": vessels}, vessel_mask=vessels)
    assert set(result) == {"psnr", "ssim", "ms_ssim", "l1", "vessel_auc", "lesion_error"}
    assert result["vessel_auc"] == 1.0 and result["lesion_error"] == {"cnv": 0.0}
    assert set(evaluate_pair(image, image)) == {"psnr", "ssim", "ms_ssim", "l1"}


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [(np.zeros((8, 9)), np.zeros((8, 8)), "pred is"), (np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), "grey HxW"),
     (np.full((8, 8), np.nan), np.zeros((8, 8)), "NaN")],
)
def test_bad_inputs_are_named(pred, target, message):
    with pytest.raises(ValueError, match=message):
        l1(pred, target)
