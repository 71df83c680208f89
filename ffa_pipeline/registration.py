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

Local refinement (``refine_locally``, ``warp_locally``): a smooth thin-plate-spline correction on top of the
global fit (accepted or not), fitted to NCC matches of tiles of finer vessel maps and verified on held-out tiles
(two checkerboards of 2x2-tile blocks, fitted on one, scored on the other, both ways). Added because on the real
UWF SLO/FFA pairs the global affine leaves about 10 px of local error even where it is accepted, and one train
pair it rejects (eye 3 early) registers locally inside a supported region, while wrong-eye pairs still fail
clearly (experiments/local_registration_probe.py, experiments/results/local_registration_probe.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

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

# Local refinement (`refine_locally`), working-frame px; the settings of experiments/local_registration_probe.py.
# Its maps are finer than the matching maps above (Sato 1 and 2 px at working size, not 3 and 6 at half size):
# with those, SLO laser scars and choroid dominated and even eye 2 failed the held-out checks (0.49, 4.2 px).
LOCAL_SIGMAS = (1.0, 2.0)
LOCAL_TILE_PX = 48  # tile step = patch side: patches do not overlap
LOCAL_WINDOW_PX = 32  # search +- this around the global fit
LOCAL_INLIER_PX = 4.0  # a match further than this from the spline is an outlier (fit) or a miss (held-out score)
LOCAL_SMOOTHING = 10.0  # RBFInterpolator smoothing of the thin-plate spline
LOCAL_MIN_VESSEL_FRACTION = 0.04  # a tile is matched only where this much of its target patch is vessel (map > 0.3)
LOCAL_MIN_SPLINE_POINTS = 8  # fewer inliers than this: no spline
LIT_LEVEL = 20  # grey level above which the globally warped target counts as lit retina (for `support`)
# Acceptance of a local refinement, all must hold (held-out figures, working frame). From the probe's 7 real
# eyes and 12 wrong-eye pairs (experiments/results/local_registration_probe.md): every globally accepted pair
# passes (lowest: 10 late, 0.60 / 2.7 px / 0.41 / 67 matches), so does eye 3 early (0.66 / 2.4 px / 0.41 / 59);
# wrong-eye pairs score <= 0.09 held-out inliers, >= 22 px, correlation <= 0.16, <= 39 matches.
MIN_HELDOUT_INLIERS = 0.5
MAX_HELDOUT_MEDIAN_PX = 3.0
MIN_HELDOUT_CORRELATION = 0.3
MIN_LOCAL_MATCHES = 40


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


@dataclass
class LocalRegistration:
    """A smooth local correction on top of a global fit (``refine_locally``) and how much to trust it.

    ``field`` (HxWx2 float32, x then y, source pixels, at the source's resolution): source pixel ``q`` takes the
    globally warped target's pixel ``q - field[q]`` (``warp_locally``). ``support`` (HxW bool, source frame): the
    lit target retina within one tile of an inlier match; beyond it the spline only extrapolates. The held-out
    figures, ``points`` (Nx2 tile centres, x y) and ``work_shape`` are in the working frame (longest side
    ``WORK_SIZE``), where the thresholds are.
    """

    matrix: np.ndarray  # the global start, target -> source pixels (3x3), as ``RegistrationResult.matrix``
    field: np.ndarray
    support: np.ndarray
    heldout_inliers: float  # held-out matches within LOCAL_INLIER_PX of the spline fitted on the other half
    heldout_median_error_px: float
    heldout_correlation: float  # of the source and locally warped target vessel maps in the held-out tiles
    global_heldout_inliers: float  # the same two figures for the global fit alone, on the same tiles
    global_heldout_correlation: float
    supported_fraction: float  # of the lit target retina
    num_matches: int
    num_inliers: int
    ok: bool
    reason: str
    points: np.ndarray
    inliers: np.ndarray
    work_shape: tuple[int, int]


def matching_map(gray: np.ndarray, vessels_dark: bool,
                 sigmas: tuple[float, ...] | None = LOCAL_SIGMAS) -> np.ndarray:
    """The vessel map that ``refine_locally`` matches on (float32 in [0, 1]): Sato at ``sigmas`` on ``gray`` as
    given (a working-size image), or with ``sigmas=None`` the global matching's half-size map."""
    return vessel_map(gray, vessels_dark, sigmas) if sigmas else _half_resolution_vessel_map(gray, vessels_dark)


def refine_locally(source: np.ndarray, target: np.ndarray, result: RegistrationResult,
                   source_vessels_dark: bool = True, target_vessels_dark: bool = False,
                   sigmas: tuple[float, ...] | None = LOCAL_SIGMAS, tile: int = LOCAL_TILE_PX,
                   window: int = LOCAL_WINDOW_PX, min_ncc: float = MIN_PATCH_NCC, peak_ratio: float = PEAK_RATIO,
                   inlier_px: float = LOCAL_INLIER_PX, smoothing: float = LOCAL_SMOOTHING) -> LocalRegistration:
    """Refine ``result`` (``register_pair(source, target)``, used even when not ``ok``) by a thin-plate spline.

    Why: one affine cannot follow a wide-field eye's curvature and the two cameras' distortions; on the real UWF
    pairs it leaves ~10 px of local error (module docstring). Steps, in the working frame: tiles of the globally
    warped target's vessel map (``matching_map``) are matched by NCC in the source's within +-``window`` px (ratio
    test on the second peak); a robust spline of their shifts (``RBFInterpolator``, matches further than
    ``inlier_px`` dropped and refitted); verification on held-out tiles (two checkerboards of 2x2-tile blocks,
    fitted on one, scored on the other, both ways). ``ok`` needs all of ``MIN_HELDOUT_INLIERS``,
    ``MAX_HELDOUT_MEDIAN_PX``, ``MIN_HELDOUT_CORRELATION`` and ``MIN_LOCAL_MATCHES``; ``reason`` says which failed.
    Deterministic: no random draws.
    """
    source_gray, target_gray = to_gray(source), to_gray(target)
    factor = WORK_SIZE / max(source_gray.shape)
    work_shape = (max(8, round(source_gray.shape[0] * factor)), max(8, round(source_gray.shape[1] * factor)))
    to_work = resize_matrix(source_gray.shape, work_shape)
    matrix = to_work @ result.matrix @ np.linalg.inv(resize_matrix(target_gray.shape, work_shape))
    source_map = matching_map(cv2.resize(source_gray, work_shape[::-1], interpolation=cv2.INTER_AREA),
                              source_vessels_dark, sigmas)
    target_work = cv2.resize(target_gray, work_shape[::-1], interpolation=cv2.INTER_AREA)
    target_map = matching_map(target_work, target_vessels_dark, sigmas)
    warped_map = warp_to(target_map, matrix, work_shape)
    valid = warp_to(np.full(target_map.shape, 255, np.uint8), matrix, work_shape) > 0
    points, shifts, halves = _tile_matches(source_map, warped_map, valid, tile, window, min_ncc, peak_ratio)

    held_global, held_local, held_errors, corr_global, corr_local, held_area = [], [], [], [], [], 0
    for held in (0, 1):
        fit, test = halves != held, halves == held
        spline, _ = _robust_spline(points[fit], shifts[fit], inlier_px, smoothing)
        predicted = spline(points[test]) if spline is not None and test.any() else np.zeros_like(shifts[test])
        errors = np.linalg.norm(predicted - shifts[test], axis=1)
        held_local.extend(errors < inlier_px)
        held_errors.extend(errors)
        held_global.extend(np.linalg.norm(shifts[test], axis=1) < inlier_px)
        mask = _tile_mask(work_shape, points[test], tile) & valid
        local_map = _remap_locally(target_map, matrix, _spline_field(spline, work_shape))
        corr_global.append(_correlation(source_map, warped_map, mask) * mask.sum())
        corr_local.append(_correlation(source_map, local_map, mask) * mask.sum())
        held_area += int(mask.sum())

    spline, inliers = _robust_spline(points, shifts, inlier_px, smoothing)
    near_inlier = np.zeros(work_shape, np.uint8)
    for x, y in points[inliers].astype(int):
        cv2.circle(near_inlier, (int(x), int(y)), tile, 1, -1)
    lit = warp_to(target_work, matrix, work_shape) > LIT_LEVEL
    support = near_inlier.astype(bool) & lit
    local = LocalRegistration(
        matrix=np.asarray(result.matrix, np.float64),
        field=_spline_field(spline, source_gray.shape, to_work),
        support=cv2.resize(support.astype(np.uint8), source_gray.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0,
        heldout_inliers=float(np.mean(held_local)) if held_local else float("nan"),
        heldout_median_error_px=float(np.median(held_errors)) if held_errors else float("nan"),
        heldout_correlation=float(sum(corr_local) / max(held_area, 1)),
        global_heldout_inliers=float(np.mean(held_global)) if held_global else float("nan"),
        global_heldout_correlation=float(sum(corr_global) / max(held_area, 1)),
        supported_fraction=float(support.sum() / max(lit.sum(), 1)),
        num_matches=len(points), num_inliers=int(inliers.sum()), ok=False, reason="",
        points=points, inliers=inliers, work_shape=work_shape)
    local.reason = _local_rejection(local, spline is not None)
    local.ok = not local.reason
    return local


def _local_rejection(local: LocalRegistration, has_spline: bool) -> str:
    """Why a local refinement cannot be trusted ("" when it can); NaN figures (no held-out tiles) fail."""
    if local.num_matches < MIN_LOCAL_MATCHES:
        return f"too few local matches ({local.num_matches} < {MIN_LOCAL_MATCHES})"
    if not has_spline:
        return f"no spline (fewer than {LOCAL_MIN_SPLINE_POINTS} inliers)"
    if not local.heldout_inliers >= MIN_HELDOUT_INLIERS:
        return f"held-out inliers {local.heldout_inliers:.2f} < {MIN_HELDOUT_INLIERS}"
    if not local.heldout_median_error_px <= MAX_HELDOUT_MEDIAN_PX:
        return f"held-out median error {local.heldout_median_error_px:.1f} px > {MAX_HELDOUT_MEDIAN_PX}"
    if not local.heldout_correlation >= MIN_HELDOUT_CORRELATION:
        return f"held-out correlation {local.heldout_correlation:.2f} < {MIN_HELDOUT_CORRELATION}"
    return ""


def warp_locally(target: np.ndarray, local: LocalRegistration) -> np.ndarray:
    """The target resampled into the source frame by the global matrix plus the local field of ``local``: as
    ``warp_to(target, local.matrix, source.shape)``, with the local correction (black where the target is not)."""
    return _remap_locally(np.asarray(target), local.matrix, local.field)


def _remap_locally(image: np.ndarray, matrix: np.ndarray, field: np.ndarray) -> np.ndarray:
    """``image`` (target frame) into the frame of ``field``: pixel q takes the target at matrix^-1 (q - field(q))."""
    height, width = field.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    points = np.dstack([xs - field[..., 0], ys - field[..., 1]]).reshape(-1, 1, 2)
    where = cv2.perspectiveTransform(points, np.linalg.inv(matrix)).reshape(height, width, 2)
    return cv2.remap(image, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


def _tile_matches(source_map: np.ndarray, warped_map: np.ndarray, valid: np.ndarray, tile: int, window: int,
                  min_ncc: float, peak_ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tile centres, shift to their source match, checkerboard half 0/1 of 2x2-tile blocks) of the tiles that
    match; a tile is tried only where the target covers it and shows vessels."""
    height, width = source_map.shape
    half = tile // 2
    centres, shifts, halves = [], [], []
    for row, y in enumerate(range(half + window, height - half - window, tile)):
        for col, x in enumerate(range(half + window, width - half - window, tile)):
            template = warped_map[y - half:y + half, x - half:x + half]
            covered = valid[y - half:y + half, x - half:x + half].all()
            if not covered or (template > 0.3).mean() < LOCAL_MIN_VESSEL_FRACTION:
                continue
            search = source_map[y - half - window:y + half + window, x - half - window:x + half + window]
            scores = cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED)
            _, best, _, (px, py) = cv2.minMaxLoc(scores)
            if best < min_ncc or _second_peak(scores, px, py, half // 2) > peak_ratio * best:
                continue
            centres.append((x, y))
            shifts.append((px - window, py - window))
            halves.append((row // 2 + col // 2) % 2)
    return np.float64(centres).reshape(-1, 2), np.float64(shifts).reshape(-1, 2), np.int64(halves)


def _robust_spline(points: np.ndarray, shifts: np.ndarray, inlier_px: float, smoothing: float,
                   rounds: int = 4) -> tuple[RBFInterpolator | None, np.ndarray]:
    """Thin-plate spline of ``shifts`` at ``points``, refitted without the matches further than ``inlier_px`` from
    it (ours: scipy has no robust RBF fit). The first inliers are the matches within 2 x ``inlier_px`` of the median
    shift of their 8 nearest neighbours (robust to isolated outliers); too few inliers give no spline (None)."""
    if len(points) < LOCAL_MIN_SPLINE_POINTS:
        return None, np.zeros(len(points), bool)
    distances = np.linalg.norm(points[:, None] - points[None], axis=2)
    neighbours = np.argsort(distances, axis=1)[:, 1:9]
    inliers = np.linalg.norm(shifts - np.median(shifts[neighbours], axis=1), axis=1) < 2 * inlier_px
    spline = None
    for _ in range(rounds):
        if inliers.sum() < LOCAL_MIN_SPLINE_POINTS:
            return None, inliers
        spline = RBFInterpolator(points[inliers], shifts[inliers], kernel="thin_plate_spline", smoothing=smoothing)
        updated = np.linalg.norm(spline(points) - shifts, axis=1) < inlier_px
        if (updated == inliers).all():
            break
        inliers = updated
    return spline, inliers


def _spline_field(spline: RBFInterpolator | None, shape: tuple[int, ...], to_work: np.ndarray | None = None,
                  step: int = 8) -> np.ndarray:
    """HxWx2 float32 field of a working-frame spline over a frame of ``shape`` whose pixels map to the working
    frame by ``to_work`` (a resize: scale and offset; None: the working frame itself), in that frame's pixels.
    Evaluated on a grid every ``step`` px and interpolated bilinearly (fast; the spline is smooth)."""
    if spline is None:
        return np.zeros((*shape[:2], 2), np.float32)
    scale, offset = (np.ones(2), np.zeros(2)) if to_work is None else (np.diag(to_work)[:2], to_work[:2, 2])
    ys, xs = np.mgrid[0:shape[0] + step:step, 0:shape[1] + step:step]
    grid = np.column_stack([xs.ravel(), ys.ravel()]) * scale + offset
    coarse = (spline(grid) / scale).reshape(*xs.shape, 2).astype(np.float32)
    # grid node (i, j) sits at pixel (step j, step i): warpAffine samples the nodes exactly there (cv2.resize
    # would align the nodes' centres, half a step off)
    return cv2.warpAffine(coarse, np.float64([[step, 0, 0], [0, step, 0]]), (shape[1], shape[0]),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _tile_mask(shape: tuple[int, int], centres: np.ndarray, tile: int) -> np.ndarray:
    """Bool mask of the tiles around ``centres``."""
    mask = np.zeros(shape, bool)
    for x, y in centres.astype(int):
        mask[y - tile // 2:y + tile // 2, x - tile // 2:x + tile // 2] = True
    return mask


def _correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of two maps inside ``mask`` (NaN on fewer than 100 pixels)."""
    if mask.sum() < 100:
        return float("nan")
    return float(np.corrcoef(a[mask], b[mask])[0, 1])
