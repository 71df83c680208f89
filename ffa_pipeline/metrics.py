"""Paired metrics for synthetic angiograms: image fidelity, lesion regions and vessels.

Every function takes one grey image (or a pair) as HxW floats in [0, 1], numpy or torch, and returns a float.
PSNR, SSIM, MS-SSIM and the AUROC are torchmetrics' functional metrics; what is ours is only the glue:
- the number of MS-SSIM scales for small images (`ms_ssim_scales`),
- the error inside each lesion mask (`lesion_region_error`),
- reading the output as a vessel detector, inside the field of view (`vessel_auc`).
An undefined value (an image too small for SSIM, a mask with no pixels) is NaN, never an exception.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

ArrayLike = np.ndarray | torch.Tensor

SSIM_KERNEL_SIZE = 11  # torchmetrics' default Gaussian window (11 x 11, sigma 1.5), as in Wang et al. 2004
SSIM_SIGMA = 1.5
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, finest scale first
MASK_THRESHOLD = 0.5  # a resized mask is soft at its edges; a pixel belongs to it when at least half covered


def _as_image(image: ArrayLike, name: str) -> torch.Tensor:
    """HxW (or HxWx1) floats in [0, 1] -> [1, 1, H, W] float64, so identical inputs give exact answers."""
    tensor = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    tensor = tensor.detach().cpu().to(torch.float64)
    if tensor.ndim == 3 and tensor.shape[-1] == 1:
        tensor = tensor[..., 0]
    if tensor.ndim != 2:
        raise ValueError(f"`{name}` must be a grey HxW image, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"`{name}` contains NaN or infinite values")
    return tensor[None, None]


def _as_mask(mask: ArrayLike, shape: tuple[int, int], name: str) -> torch.Tensor:
    """A bool, 0/255 uint8 or [0, 1] float mask -> HxW bool of the images' shape."""
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.shape != shape:
        raise ValueError(f"mask `{name}` has shape {array.shape}, the images {shape}")
    if array.dtype == bool:
        return torch.from_numpy(array)
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    return torch.from_numpy(array.astype(np.float64) / scale >= MASK_THRESHOLD)


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    pred, target = _as_image(pred, "pred"), _as_image(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred is {tuple(pred.shape[-2:])} but target is {tuple(target.shape[-2:])}")
    return pred, target


def psnr(pred: ArrayLike, target: ArrayLike) -> float:
    """Peak signal-to-noise ratio in dB (data range 1); +inf for identical images."""
    return float(peak_signal_noise_ratio(*_pair(pred, target), data_range=1.0))


def ssim(pred: ArrayLike, target: ArrayLike) -> float:
    """SSIM with the standard 11 x 11 Gaussian window (sigma 1.5); NaN for images smaller than the window."""
    pred, target = _pair(pred, target)
    if min(pred.shape[-2:]) < SSIM_KERNEL_SIZE:
        return math.nan
    return float(structural_similarity_index_measure(pred, target, data_range=1.0, sigma=SSIM_SIGMA,
                                                     kernel_size=SSIM_KERNEL_SIZE))


def ms_ssim_scales(side: int) -> int:
    """How many of the 5 MS-SSIM scales an image with this (shorter) side supports; 0 if not even one.

    Each scale halves the image and the coarsest one must still hold the 11 x 11 window: 256 px and up get all 5,
    128 px 4, 64 px 3, 32 px 2, 11-21 px 1 (plain SSIM with the contrast term ReLU-clipped). The second
    condition is torchmetrics' own size check, which is stricter than the window rule for 4 scales.
    """
    for scales in range(len(MS_SSIM_BETAS), 0, -1):
        fits_window = side // 2 ** (scales - 1) >= SSIM_KERNEL_SIZE
        passes_torchmetrics = side // max(1, scales - 1) ** 2 > SSIM_KERNEL_SIZE - 1
        if fits_window and passes_torchmetrics:
            return scales
    return 0


def ms_ssim(pred: ArrayLike, target: ArrayLike) -> float:
    """Multi-scale SSIM (Wang et al. 2003) with the standard window and as many scales as the size allows.

    With fewer than 5 scales the finest weights are kept and renormalised to sum to 1 (so identical images still
    score 1); `ms_ssim_scales` says how many are used. Contrast terms are ReLU-clipped (torchmetrics'
    `normalize="relu"`) so that a negative correlation gives 0 rather than NaN. NaN below 11 px.
    """
    pred, target = _pair(pred, target)
    scales = ms_ssim_scales(min(pred.shape[-2:]))
    if scales == 0:
        return math.nan
    betas = np.asarray(MS_SSIM_BETAS[:scales])
    betas = tuple(float(b) for b in betas / betas.sum())
    return float(multiscale_structural_similarity_index_measure(
        pred, target, data_range=1.0, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL_SIZE, betas=betas, normalize="relu"
    ))


def l1(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error (grey levels in [0, 1])."""
    pred, target = _pair(pred, target)
    return float((pred - target).abs().mean())


def lesion_region_error(pred: ArrayLike, target: ArrayLike, masks: dict[str, ArrayLike]) -> dict[str, float]:
    """Mean absolute error inside each lesion type's mask: does the output get the lesions right?

    Whole-image metrics barely move when a small lesion is missed; this one does. Masks with no pixels (the lesion
    is absent from this eye) are left out of the result rather than reported as 0 or NaN.
    """
    pred, target = _pair(pred, target)
    error = (pred - target).abs()[0, 0]
    result = {}
    for name, mask in masks.items():
        inside = _as_mask(mask, tuple(error.shape), name)
        if inside.any():
            result[name] = float(error[inside].mean())
    return result


def vessel_auc(pred: ArrayLike, vessel_mask: ArrayLike, region: ArrayLike | None = None) -> float:
    """Area under the ROC curve of the output's grey level as a per-pixel vessel detector.

    1: every vessel pixel is brighter than every other pixel (FFA vessels are bright while dye is in them); 0.5:
    no better than chance; 0: the vessels are the darkest pixels. `region` (e.g. the field of view) restricts the
    pixels counted, so that the black surround of a fundus photo does not count as easy background.
    NaN when the counted pixels are all vessel or all background.
    """
    pred = _as_image(pred, "pred")[0, 0]
    labels = _as_mask(vessel_mask, tuple(pred.shape), "vessel_mask")
    if region is not None:
        inside = _as_mask(region, tuple(pred.shape), "region")
        pred, labels = pred[inside], labels[inside]
    pred, labels = pred.flatten(), labels.flatten()
    if labels.all() or not labels.any():
        return math.nan
    # binary_auroc reads values outside [0, 1] as logits; the output is in [0, 1] up to rounding.
    return float(binary_auroc(pred.clamp(0, 1), labels.long()))


def evaluate_pair(pred: ArrayLike, target: ArrayLike, masks: dict[str, ArrayLike] | None = None,
                  vessel_mask: ArrayLike | None = None, region: ArrayLike | None = None) -> dict:
    """All metrics of one output against its ground truth.

    Returns {"psnr", "ssim", "ms_ssim", "l1"} always, "vessel_auc" with a vessel mask, and "lesion_error"
    ({lesion type: mean abs error inside its mask}, lesions present only) with masks.
    """
    result = {"psnr": psnr(pred, target), "ssim": ssim(pred, target), "ms_ssim": ms_ssim(pred, target),
              "l1": l1(pred, target)}
    if vessel_mask is not None:
        result["vessel_auc"] = vessel_auc(pred, vessel_mask, region)
    if masks is not None:
        result["lesion_error"] = lesion_region_error(pred, target, masks)
    return result
