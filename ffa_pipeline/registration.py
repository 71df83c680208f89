"""Automatic registration of a retinal image (source) and its fluorescein angiogram (target).

A colour photo or SLO (dark vessels) and an angiogram (bright vessels) share little intensity, but they share the
vessel tree. Both images are therefore turned into "vessels bright" maps (multi-scale Sato ridge filter on the
CLAHE-equalised green channel or luminance) and registered on those:

1. coarse: a grid search over scale and rotation around identity, with the translation found by normalised
   cross-correlation of the central part of the target map, at a quarter of the working size. The pairs this
   module is for are *roughly* aligned (same camera framing), so the search is limited to a shift of
   ``max_shift`` of the image size, ``max_scale_change`` and ``max_rotation_deg``. The eight best distinct
   candidates get one round of steps 2-3, and the two with most inliers are refined to the end (multi-modal
   correlation is weak, so the single best coarse peak is often not the right one);
2. features: salient vessel points of the target (corners of its vessel map) are matched by normalised
   cross-correlation of a patch around them inside a search window of the source map (the patches, not SIFT-like
   descriptors, are what survive the change of modality), with sub-pixel peaks;
3. a RANSAC affine (``cv2.estimateAffine2D``) or homography (``cv2.findHomography``) fit, twice more with a
   smaller window around the current estimate;
4. verification: one more round of matching around the final transform; the inlier ratio (matches within
   ``RANSAC_THRESHOLD_PX`` of the transform / all matches) and the median error of the inliers are what a caller
   thresholds on. A transform far from a similarity (scale, shear, perspective) is rejected as degenerate.

ECC refinement (``cv2.findTransformECC``) on the vessel maps was considered and left out: on the phantom the
fit above is already within ~0.3 px, and on real SLO/FFA pairs ECC has no inlier check to tell a wrong basin.
Everything runs on a working copy whose longest side is ``WORK_SIZE`` px (about 1-4 s a pair on one CPU core).

Convention: ``RegistrationResult.matrix`` maps **target pixel coordinates onto source pixel coordinates**
(``source_xy ~ matrix @ [x, y, 1]``), so ``warp_to(target, matrix, source.shape)`` gives the target in the
source frame.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .image_processing import to_gray, vessel_map

REGISTRATION_MODELS = ("affine", "homography")
RANSAC_THRESHOLD_PX = 3.0
# Pixel sizes below are in the working image, whose longest side is WORK_SIZE.
WORK_SIZE = 800
PATCH_PX = 41
SEARCH_WINDOWS_PX = (40, 16, 8)
VERIFY_WINDOW_PX = 16
POINT_SPACING_PX = 20
MAX_POINTS = 400
REFINED_CANDIDATES = 2  # coarse candidates, best first by inliers after one round, refined to the end
MIN_PATCH_NCC = 0.3
COARSE_SIGMAS = (0.75, 1.5)  # Sato scales at quarter size
# Lowe-style ratio test on correlation peaks: the best peak must beat the best one elsewhere in the window.
PEAK_RATIO = 0.9


@dataclass
class RegistrationResult:
    """A fitted transform (target -> source pixels, 3x3) and how much to trust it."""

    matrix: np.ndarray
    inlier_ratio: float
    median_error_px: float
    num_matches: int
    ok: bool
    reason: str
    num_inliers: int = 0


def warp_to(target: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The target resampled into a frame of ``shape`` (height, width, ...), with ``matrix`` target -> frame."""
    height, width = shape[:2]
    return cv2.warpPerspective(np.asarray(target), np.asarray(matrix, np.float64), (width, height),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def resize_matrix(from_shape: tuple[int, ...], to_shape: tuple[int, ...]) -> np.ndarray:
    """Pixel-centre-exact 3x3 map of coordinates when an image of ``from_shape`` is resized to ``to_shape``."""
    sy, sx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
    if (sy, sx) == (1.0, 1.0):
        return np.eye(3)
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def _similarity(scale: float, angle_deg: float, center: tuple[float, float]) -> np.ndarray:
    matrix = np.eye(3)
    matrix[:2] = cv2.getRotationMatrix2D(center, angle_deg, scale)
    return matrix


def _coarse_candidates(source_map: np.ndarray, target_map: np.ndarray, max_shift: float, max_scale_change: float,
                       max_rotation_deg: float, keep: int = 8) -> list[tuple[float, np.ndarray]]:
    """Best (score, target->source matrix) pairs of a scale x rotation grid, translation by cross-correlation."""
    height, width = source_map.shape
    pad = max(1, int(round(max_shift * max(height, width))))
    padded = cv2.copyMakeBorder(source_map, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    crop_x, crop_y = int(0.2 * width), int(0.2 * height)
    scales = np.linspace(1 - max_scale_change, 1 + max_scale_change, int(round(max_scale_change / 0.025)) * 2 + 1)
    angles = np.arange(-max_rotation_deg, max_rotation_deg + 1e-6, 1.0)
    found = []
    for scale in scales:
        for angle in angles:
            rotation = _similarity(scale, angle, (width / 2, height / 2))
            template = cv2.warpAffine(target_map, rotation[:2], (width, height))[crop_y:height - crop_y,
                                                                                 crop_x:width - crop_x]
            if template.std() < 1e-6:
                continue
            scores = cv2.matchTemplate(padded, template, cv2.TM_CCOEFF_NORMED)
            scores = scores[crop_y:crop_y + 2 * pad + 1, crop_x:crop_x + 2 * pad + 1]
            _, best, _, (x, y) = cv2.minMaxLoc(scores)
            rotation[:2, 2] += (x - pad, y - pad)
            found.append((float(best), rotation))
    found.sort(key=lambda item: -item[0])
    distinct: list[tuple[float, np.ndarray]] = []
    for score, matrix in found:
        if all(np.abs(matrix[:2, 2] - other[:2, 2]).max() > 4 or np.abs(matrix[:2, :2] - other[:2, :2]).max() > 0.05
               for _, other in distinct):
            distinct.append((score, matrix))
        if len(distinct) == keep:
            break
    return distinct


def _subpixel_peak(scores: np.ndarray, x: int, y: int) -> tuple[float, float]:
    """Parabola fit through the correlation peak and its neighbours."""
    offsets = []
    for axis, index, length in ((1, x, scores.shape[1]), (0, y, scores.shape[0])):
        if 0 < index < length - 1:
            before = scores[y, x - 1] if axis == 1 else scores[y - 1, x]
            after = scores[y, x + 1] if axis == 1 else scores[y + 1, x]
            curvature = before - 2 * scores[y, x] + after
            offsets.append(0.5 * (before - after) / curvature if curvature < 0 else 0.0)
        else:
            offsets.append(0.0)
    return offsets[0], offsets[1]


def _match_points(source_map: np.ndarray, target_map: np.ndarray, guess: np.ndarray, window: int, patch: int,
                  spacing: int) -> tuple[np.ndarray, np.ndarray]:
    """(source_xy, target_xy) of target vessel points found in the source map within ``window`` px of ``guess``."""
    height, width = source_map.shape
    warped = warp_to(target_map, guess, source_map.shape)
    valid = warp_to(np.full(target_map.shape, 255, np.uint8), guess, source_map.shape)
    valid = cv2.erode(valid, np.ones((3, 3), np.uint8))
    corners = cv2.goodFeaturesToTrack(warped, MAX_POINTS, 0.02, spacing, mask=valid)
    if corners is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    half = patch // 2
    source_points, warped_points = [], []
    for x, y in np.round(corners.reshape(-1, 2)).astype(int):
        if not (half + window <= x < width - half - window and half + window <= y < height - half - window):
            continue
        template = warped[y - half:y + half + 1, x - half:x + half + 1]
        search = source_map[y - half - window:y + half + window + 1, x - half - window:x + half + window + 1]
        if template.std() < 1e-3 or search.std() < 1e-3:
            continue
        scores = cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (px, py) = cv2.minMaxLoc(scores)
        if best < MIN_PATCH_NCC or _second_peak(scores, px, py, patch // 4) > PEAK_RATIO * best:
            continue
        dx, dy = _subpixel_peak(scores, px, py)
        source_points.append((x - window + px + dx, y - window + py + dy))
        warped_points.append((x, y))
    if not source_points:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    target_points = cv2.perspectiveTransform(np.float32(warped_points).reshape(-1, 1, 2), np.linalg.inv(guess))
    return np.float32(source_points), target_points.reshape(-1, 2)


def _second_peak(scores: np.ndarray, x: int, y: int, exclusion: int) -> float:
    """Highest correlation more than ``exclusion`` px away from the best peak (an ambiguous match scores high)."""
    others = scores.copy()
    others[max(0, y - exclusion):y + exclusion + 1, max(0, x - exclusion):x + exclusion + 1] = -1.0
    return float(others.max())


def _fit(source_points: np.ndarray, target_points: np.ndarray, model: str) -> np.ndarray | None:
    """RANSAC target -> source transform as 3x3, or None when there are too few points."""
    minimum = 4 if model == "homography" else 3
    if len(source_points) < minimum:
        return None
    if model == "homography":
        matrix, _ = cv2.findHomography(target_points, source_points, cv2.RANSAC, RANSAC_THRESHOLD_PX,
                                       maxIters=5000, confidence=0.999)
        return matrix
    affine, _ = cv2.estimateAffine2D(target_points, source_points, method=cv2.RANSAC,
                                     ransacReprojThreshold=RANSAC_THRESHOLD_PX, maxIters=5000, confidence=0.999)
    return None if affine is None else np.vstack([affine, [0.0, 0.0, 1.0]])


def _errors(matrix: np.ndarray, source_points: np.ndarray, target_points: np.ndarray) -> np.ndarray:
    """Distance in source pixels between the mapped target points and their matches."""
    if len(source_points) == 0:
        return np.zeros(0)
    mapped = cv2.perspectiveTransform(target_points.reshape(-1, 1, 2).astype(np.float64), matrix).reshape(-1, 2)
    return np.linalg.norm(mapped - source_points, axis=1)


def degeneracy(matrix: np.ndarray, shape: tuple[int, int], max_scale_change: float) -> str:
    """Why a transform is implausible for two photos of the same retina ("" when it is fine)."""
    linear = matrix[:2, :2] / matrix[2, 2]
    singular = np.linalg.svd(linear, compute_uv=False)
    scale = float(np.sqrt(singular[0] * singular[1]))
    if np.linalg.det(linear) <= 0:
        return "degenerate transform (reflection or collapse)"
    if not 1 / (1 + 4 * max_scale_change) <= scale <= 1 + 4 * max_scale_change:
        return f"degenerate transform (scale {scale:.2f})"
    if singular[0] / singular[1] > 1.25:
        return f"degenerate transform (shear/anisotropy {singular[0] / singular[1]:.2f})"
    perspective = float(np.abs(matrix[2, :2] / matrix[2, 2]).max()) * max(shape)
    if perspective > 0.2:
        return f"degenerate transform (perspective {perspective:.2f})"
    return ""


def register_pair(source: np.ndarray, target: np.ndarray, model: str = "affine", min_inlier_ratio: float = 0.2,
                  min_inliers: int = 20, source_vessels_dark: bool = True, target_vessels_dark: bool = False,
                  max_shift: float = 0.1, max_scale_change: float = 0.05,
                  max_rotation_deg: float = 8.0) -> RegistrationResult:
    """Register ``target`` (an FFA) onto ``source`` (vessels dark unless ``source_vessels_dark`` is False).

    FFA vessels are bright in all but very late frames; ``target_vessels_dark=True`` is for a target whose vessels
    are darker than its background. (Trying both polarities automatically was tried and dropped: on real
    laser-treated late frames the wrong polarity found a plausible-looking but offset fit that passed the checks.)

    Images are HxW or HxWx3 (RGB) arrays of any size; the target is assumed to show roughly the same field as the
    source. The result's ``matrix`` maps target pixels to source pixels (see the module docstring); ``ok`` is
    False, with the ``reason``, when the fit cannot be trusted. The default thresholds come from the real UWF
    SLO/FFA triplets: visually correct fits scored inlier ratios 0.23-0.43, wrong ones 0.05-0.09, and the few in
    between (0.14-0.18, faint SLO vessels) are rejected rather than risked.
    """
    if model not in REGISTRATION_MODELS:
        raise ValueError(f"registration model must be one of {REGISTRATION_MODELS}, got {model!r}")
    cv2.setRNGSeed(0)  # RANSAC draws from OpenCV's global generator: same images, same result
    source_gray, target_gray = to_gray(source), to_gray(target)
    factor = WORK_SIZE / max(source_gray.shape)
    work_shape = (max(8, round(source_gray.shape[0] * factor)), max(8, round(source_gray.shape[1] * factor)))
    source_work = cv2.resize(source_gray, work_shape[::-1], interpolation=cv2.INTER_AREA)
    target_work = cv2.resize(target_gray, work_shape[::-1], interpolation=cv2.INTER_AREA)
    from_work = np.linalg.inv(resize_matrix(source_gray.shape, work_shape))
    to_work = resize_matrix(target_gray.shape, work_shape)

    result = _register_working_images(source_work, target_work, source_vessels_dark, target_vessels_dark, model,
                                      max_shift, max_scale_change, max_rotation_deg)
    if result is None:
        return RegistrationResult(np.eye(3), 0.0, float("nan"), 0, False, "no transform found (too few matches)")
    result.matrix = from_work @ result.matrix @ to_work
    result.matrix /= result.matrix[2, 2]
    result.median_error_px /= factor
    result.reason = degeneracy(result.matrix, source_gray.shape, max_scale_change)
    if not result.reason and result.num_inliers < min_inliers:
        result.reason = f"too few inliers ({result.num_inliers} < {min_inliers})"
    if not result.reason and result.inlier_ratio < min_inlier_ratio:
        result.reason = f"inlier ratio {result.inlier_ratio:.2f} < {min_inlier_ratio:.2f}"
    result.ok = not result.reason
    return result


def _register_working_images(source: np.ndarray, target: np.ndarray, source_dark: bool, target_dark: bool,
                             model: str, max_shift: float, max_scale_change: float,
                             max_rotation_deg: float) -> RegistrationResult | None:
    """Coarse search then refinement on two grey images of the working size, for one vessel polarity each."""
    quarter = (max(8, source.shape[0] // 4), max(8, source.shape[1] // 4))
    to_quarter = resize_matrix(source.shape, quarter)
    coarse_maps = [vessel_map(cv2.resize(image, quarter[::-1], interpolation=cv2.INTER_AREA), dark, COARSE_SIGMAS)
                   for image, dark in ((source, source_dark), (target, target_dark))]
    candidates = _coarse_candidates(*coarse_maps, max_shift, max_scale_change, max_rotation_deg)
    guesses = [np.linalg.inv(to_quarter) @ matrix @ to_quarter for _, matrix in candidates]
    match = functools.partial(_match_points, _half_resolution_vessel_map(source, source_dark),
                              _half_resolution_vessel_map(target, target_dark), patch=PATCH_PX,
                              spacing=POINT_SPACING_PX)
    return _refine(match, guesses, model, lambda matrix: degeneracy(matrix, source.shape, max_scale_change))


def _refine(match: Callable, guesses: list[np.ndarray], model: str,
            degeneracy_of: Callable[[np.ndarray], str]) -> RegistrationResult | None:
    """Match + RANSAC from every coarse guess once, then shrink the window for the most promising ones."""
    first_fits = []
    for guess in guesses:
        points = match(guess, SEARCH_WINDOWS_PX[0])
        fitted = _fit(*points, model)
        if fitted is not None:
            first_fits.append((int((_errors(fitted, *points) < RANSAC_THRESHOLD_PX).sum()), fitted))
    first_fits.sort(key=lambda item: -item[0])
    best, best_rank = None, None
    for _, matrix in first_fits[:REFINED_CANDIDATES]:
        for window in SEARCH_WINDOWS_PX[1:]:
            fitted = _fit(*match(matrix, window), model)
            if fitted is None:
                break
            matrix = fitted
        else:
            result = _verify(match, matrix, model, VERIFY_WINDOW_PX)
            rank = (not degeneracy_of(result.matrix), result.num_inliers)
            if best is None or rank > best_rank:
                best, best_rank = result, rank
    return best


def _half_resolution_vessel_map(gray: np.ndarray, vessels_dark: bool) -> np.ndarray:
    """Vessel map computed at half size (faster, less speckle) and brought back to full size."""
    half = cv2.resize(gray, (max(8, gray.shape[1] // 2), max(8, gray.shape[0] // 2)), interpolation=cv2.INTER_AREA)
    return cv2.resize(vessel_map(half, vessels_dark), gray.shape[::-1], interpolation=cv2.INTER_LINEAR)


def _verify(match: Callable, matrix: np.ndarray, model: str, window: int) -> RegistrationResult:
    """Match afresh around ``matrix``, refit on the inliers and score: inlier ratio and median inlier error."""
    source_points, target_points = match(matrix, window)
    if len(source_points) == 0:
        return RegistrationResult(matrix, 0.0, float("nan"), 0, False, "no matches")
    inliers = _errors(matrix, source_points, target_points) < RANSAC_THRESHOLD_PX
    refit = _fit(source_points[inliers], target_points[inliers], model)
    if refit is not None:
        matrix = refit
        inliers = _errors(matrix, source_points, target_points) < RANSAC_THRESHOLD_PX
    errors = _errors(matrix, source_points[inliers], target_points[inliers])
    return RegistrationResult(
        matrix=matrix,
        inlier_ratio=float(inliers.mean()),
        median_error_px=float(np.median(errors)) if len(errors) else float("nan"),
        num_matches=len(source_points),
        ok=True,
        reason="",
        num_inliers=int(inliers.sum()),
    )


def registration_overlay(source: np.ndarray, warped_target: np.ndarray, source_vessels_dark: bool = True,
                         target_vessels_dark: bool = False) -> np.ndarray:
    """RGB visual check: source vessels magenta, registered target vessels green; where they overlap, white.

    Vessels are taken as the difference to a blurred background (cheap and faithful to the pixels), so a
    misregistration shows as parallel magenta and green lines rather than white ones.
    """
    def vessels(gray: np.ndarray, dark: bool) -> np.ndarray:
        image = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray).astype(np.float32)
        contrast = cv2.GaussianBlur(image, (0, 0), max(2.0, max(gray.shape) / 100)) - image
        return np.clip((contrast if dark else -contrast) * 4, 0, 255).astype(np.uint8)

    source_vessels = vessels(to_gray(source), source_vessels_dark)
    target_vessels = vessels(to_gray(warped_target), target_vessels_dark)
    return np.dstack([source_vessels, target_vessels, source_vessels])
