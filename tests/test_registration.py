"""ffa_pipeline.registration's local refinement: a known smooth deformation on top of a known affine is recovered
better than by the global fit alone, another eye's angiogram is not trusted, same images give the same result."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ffa_pipeline.phantom import render_sample, sample_eye
from ffa_pipeline.registration import RegistrationResult, refine_locally, register_pair, warp_locally

RESOLUTION = 384
AFFINE = np.vstack([cv2.getRotationMatrix2D((RESOLUTION / 2, RESOLUTION / 2), 3.0, 1.03), [0, 0, 1]])
AFFINE[:2, 2] += (10, -7)
AMPLITUDE_PX = 3.0  # of the smooth local deformation, one sine period across the frame


def to_source(target_xy: np.ndarray) -> np.ndarray:
    """The true target -> source map (Nx2 px): the affine plus a low-frequency sinusoidal deformation."""
    x, y = target_xy[:, 0], target_xy[:, 1]
    bend = AMPLITUDE_PX * np.column_stack([np.sin(2 * np.pi * y / RESOLUTION + 0.5),
                                           np.sin(2 * np.pi * x / RESOLUTION + 1.0)])
    return target_xy @ AFFINE[:2, :2].T + AFFINE[:2, 2] + bend


@pytest.fixture(scope="module")
def deformed_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray, RegistrationResult]:
    """(a phantom colour photo, its early FFA pixel-aligned, that FFA deformed by `to_source`, its global fit)."""
    row = render_sample(sample_eye(0, "diabetic_retinopathy"), RESOLUTION, modalities=("cfp",), phases=("early",))
    source, ffa = row["cfp"]["source_image"], row["cfp"]["ffa_early"]
    ys, xs = np.mgrid[0:RESOLUTION, 0:RESOLUTION].astype(np.float64)
    where = to_source(np.column_stack([xs.ravel(), ys.ravel()])).reshape(RESOLUTION, RESOLUTION, 2)
    target = cv2.remap(ffa, where[..., 0].astype(np.float32), where[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                       borderValue=0)
    return source, ffa, target, register_pair(source, target)


def test_refine_locally_recovers_a_smooth_deformation_the_global_fit_cannot(deformed_pair):
    source, ffa, target, result = deformed_pair
    local = refine_locally(source, target, result)
    assert local.ok, local.reason
    assert local.heldout_inliers > local.global_heldout_inliers and local.num_matches >= 40
    assert local.field.shape == (RESOLUTION, RESOLUTION, 2) and local.support.shape == (RESOLUTION, RESOLUTION)
    assert local.support.mean() > 0.4  # most of the phantom's retina has vessels to match
    ys, xs = np.mgrid[0:RESOLUTION, 0:RESOLUTION].astype(np.float64)
    pixels = np.column_stack([xs.ravel(), ys.ravel()])
    inverse = np.linalg.inv(local.matrix)
    errors = {}  # source px between each source pixel and where its estimated target point truly lands
    for name, shift in (("global", np.zeros_like(pixels)), ("local", local.field.reshape(-1, 2))):
        target_xy = cv2.perspectiveTransform((pixels - shift).reshape(-1, 1, 2), inverse).reshape(-1, 2)
        errors[name] = np.linalg.norm(to_source(target_xy) - pixels, axis=1).reshape(RESOLUTION, RESOLUTION)
    on_support = {name: error[local.support] for name, error in errors.items()}
    assert on_support["local"].mean() < 1.0 and np.percentile(on_support["local"], 90) < 1.5
    assert on_support["local"].mean() < 0.5 * on_support["global"].mean()
    warped = warp_locally(target, local).astype(np.float32)
    inner = cv2.erode(local.support.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert warped.shape == ffa.shape and np.abs(warped - ffa)[inner].mean() < 8  # the target back on the source


def test_refine_locally_does_not_trust_another_eyes_angiogram(deformed_pair):
    source = deformed_pair[0]
    other = render_sample(sample_eye(5, "normal"), RESOLUTION, modalities=("cfp",), phases=("early",))
    angiogram = other["cfp"]["ffa_early"]
    local = refine_locally(source, angiogram, register_pair(source, angiogram))
    assert not local.ok and local.reason
    assert local.heldout_inliers < 0.2


def test_refine_locally_is_deterministic(deformed_pair):
    source, _, target, result = deformed_pair
    first, second = refine_locally(source, target, result), refine_locally(source, target, result)
    assert np.array_equal(first.field, second.field) and np.array_equal(first.support, second.support)
    assert first.heldout_correlation == second.heldout_correlation
