"""Probe: can the UWF SLO/FFA train pairs that fail the global affine (eyes 1, 3, 4) be registered locally?

The method now lives in ``ffa_pipeline.registration`` (``refine_locally``, ``warp_locally``; the thresholds it
recommended are that module's ``MIN_HELDOUT_*`` / ``MIN_LOCAL_MATCHES``); this script runs it on the real pairs and
the wrong-eye negatives, compares it with the global affine, adds two diagnostics (vessel-map correlation before any
warp, the spline's 95th-percentile shift) and draws the figures. What it does, for each (SLO, angiogram) pair, in the
SLO's working frame (longest side ``registration.WORK_SIZE``):

1. the global affine of ``ffa_pipeline.registration.register_pair`` (its matrix is used even when not ``ok``);
2. local NCC matches: on a grid of tiles, a patch of the globally warped angiogram vessel map is searched for in
   the SLO vessel map within +-``--window`` px (a match must beat the ratio test on its second peak). The maps are
   finer than registration's (Sato ``--sigmas`` 1 and 2 at working size, not 3 and 6): with registration's maps the
   held-out checks below fail even on the pairs that register globally (SLO laser scars and choroid dominate);
3. a smooth deformation: thin-plate spline (``scipy.interpolate.RBFInterpolator`` with smoothing) of the residual
   displacements, with iterative robust outlier rejection (matches further than ``--inlier_px`` from the spline of
   the current inliers are dropped and the spline refitted);
4. verification that does not rely on the fit's own inliers: the tiles are split into two checkerboards of
   2x2-tile blocks; the spline is fitted on one and scored on the other (and vice versa): held-out inlier fraction
   (held-out matches within ``--inlier_px`` of the prediction, of all held-out matches) and the held-out vessel-map
   correlation (Pearson correlation of the warped angiogram's and the SLO's vessel maps inside the held-out tiles),
   against the same numbers for the global affine; and which part of the angiogram's lit retina lies within one
   tile of an inlier match (``supported_fraction``: beyond it the spline only extrapolates).
   Wrong-eye pairs (an angiogram against another eye's SLO) are run through the same steps as negatives.
5. ``local_ok`` / ``local_reason``: ``refine_locally``'s verdict on those thresholds.

Writes ``<out>/<name>.png`` (left: global affine, right: local spline; top: SLO vessels magenta, warped angiogram
vessels green, white where they overlap, dots: local matches, green inlier, red outlier; bottom: checkerboard of the
inverted SLO green channel and the warped angiogram) and ``<out>/results.json``.

    python experiments/local_registration_probe.py --out runs/local-registration

Runs single-threaded (3-4 s a pair, under two minutes for all 26).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ffa_pipeline.registration import (
    LOCAL_INLIER_PX,
    LOCAL_SIGMAS,
    LOCAL_SMOOTHING,
    LOCAL_TILE_PX,
    LOCAL_WINDOW_PX,
    MIN_PATCH_NCC,
    PEAK_RATIO,
    _correlation,
    _tile_mask,
    matching_map,
    refine_locally,
    register_pair,
    registration_overlay,
    resize_matrix,
    warp_locally,
    warp_to,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "uwf_slo_ffa"
SPLIT_OF_EYE = {1: "train", 2: "train", 3: "train", 4: "train", 7: "test", 8: "test", 10: "test"}
# (SLO eye, angiogram eye): the real pairs, then wrong-eye negatives (similar framing, different retina).
PAIRS = [(eye, eye) for eye in SPLIT_OF_EYE] + [(2, 3), (3, 2), (1, 4), (10, 8), (4, 1), (8, 2)]


@dataclass
class PairResult:
    """Figures for one (SLO, angiogram) pair; pixel figures are in the 800 px working frame."""

    name: str
    same_eye: bool
    start: str
    global_inlier_ratio: float
    global_ok: bool
    matches: int
    global_heldout_inliers: float
    local_heldout_inliers: float
    local_heldout_median_px: float
    corr_identity: float
    corr_global: float
    corr_local_heldout: float
    max_local_shift_px: float
    supported_fraction: float
    local_ok: bool  # refine_locally's verdict on the thresholds below (ffa_pipeline.registration)
    local_reason: str
    seconds: float


def read(eye: int, kind: str) -> np.ndarray:
    """An image of the UWF triplets as RGB uint8 (``kind``: slo, ffa_early or ffa_late)."""
    return cv2.cvtColor(cv2.imread(str(DATA / SPLIT_OF_EYE[eye] / f"{eye}_{kind}.png")), cv2.COLOR_BGR2RGB)


def checkerboard(slo_grey: np.ndarray, warped: np.ndarray, tile: int) -> np.ndarray:
    """BGR uint8 checkerboard of the inverted, CLAHE-equalised SLO green channel and the warped angiogram."""
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    ys, xs = np.mgrid[0:slo_grey.shape[0], 0:slo_grey.shape[1]]
    board = np.where((ys // tile + xs // tile) % 2 == 0, clahe.apply(255 - slo_grey), clahe.apply(warped))
    return cv2.cvtColor(board.astype(np.uint8), cv2.COLOR_GRAY2BGR)


def probe_pair(slo_eye: int, ffa_eye: int, phase: str, args: argparse.Namespace) -> PairResult:
    """Global affine, local spline (``refine_locally``) and both verifications for one pair; writes its figure."""
    start = time.time()
    name = f"{ffa_eye}_{phase}" if slo_eye == ffa_eye else f"wrong_slo{slo_eye}_ffa{ffa_eye}_{phase}"
    slo, ffa = read(slo_eye, "slo"), read(ffa_eye, f"ffa_{phase}")[..., 0]
    result = register_pair(slo, ffa)
    via = ""
    if phase == "late" and args.late_via_early:
        # A late frame onto its own early frame (same modality) composed with the early frame's global fit.
        early = read(ffa_eye, "ffa_early")[..., 0]
        late_on_early, early_on_slo = register_pair(early, ffa, source_vessels_dark=False), register_pair(slo, early)
        via = f" (late->early {late_on_early.inlier_ratio:.2f}, {'ok' if late_on_early.ok else 'rejected'})"
        if late_on_early.ok:
            result.matrix = early_on_slo.matrix @ late_on_early.matrix
    sigmas = tuple(args.sigmas) or None
    local = refine_locally(slo, ffa, result, sigmas=sigmas, tile=args.tile, window=args.window,
                           min_ncc=args.min_ncc, peak_ratio=args.peak_ratio, inlier_px=args.inlier_px,
                           smoothing=args.smoothing)

    # Diagnostics beyond the library's figures, in its working frame: the maps' correlation before any warp, and
    # the spline's 95th-percentile shift, both inside the matched tiles.
    work_shape = local.work_shape
    to_work = resize_matrix(slo.shape, work_shape)
    matrix = to_work @ result.matrix @ np.linalg.inv(resize_matrix(ffa.shape, work_shape))
    slo_map, ffa_map = (matching_map(cv2.resize(gray, work_shape[::-1], interpolation=cv2.INTER_AREA), dark, sigmas)
                        for gray, dark in ((slo[..., 1], True), (ffa, False)))
    valid = warp_to(np.full(ffa_map.shape, 255, np.uint8), matrix, work_shape) > 0
    retina = _tile_mask(work_shape, local.points, args.tile)
    field = cv2.resize(local.field, work_shape[::-1], interpolation=cv2.INTER_LINEAR) * np.diag(to_work)[:2]
    field_in_retina = np.linalg.norm(field[retina], axis=1) if retina.any() else np.zeros(1)

    slo_work = cv2.resize(slo, work_shape[::-1], interpolation=cv2.INTER_AREA)
    warped_global, warped_local = (cv2.resize(warp, work_shape[::-1], interpolation=cv2.INTER_AREA)
                                   for warp in (warp_to(ffa, result.matrix, slo.shape), warp_locally(ffa, local)))
    figure = np.hstack([cv2.cvtColor(registration_overlay(slo_work, warp), cv2.COLOR_RGB2BGR)
                        for warp in (warped_global, warped_local)])
    board = np.hstack([checkerboard(slo_work[..., 1], warp, 2 * args.tile) for warp in (warped_global, warped_local)])
    figure = np.vstack([figure, board])
    for (x, y), good in zip(local.points, local.inliers):
        cv2.circle(figure, (int(x) + work_shape[1], int(y)), 3, (0, 255, 0) if good else (0, 0, 255), -1)
    cv2.imwrite(str(args.out / f"{name}.png"), cv2.resize(figure, None, fx=args.figure_scale, fy=args.figure_scale,
                                                          interpolation=cv2.INTER_AREA))
    return PairResult(
        name=name, same_eye=slo_eye == ffa_eye, start="global affine" + via,
        global_inlier_ratio=round(result.inlier_ratio, 3),
        global_ok=result.ok, matches=local.num_matches,
        global_heldout_inliers=round(local.global_heldout_inliers, 3),
        local_heldout_inliers=round(local.heldout_inliers, 3),
        local_heldout_median_px=round(local.heldout_median_error_px, 2),
        corr_identity=round(_correlation(slo_map, ffa_map, retina & valid), 3),
        corr_global=round(local.global_heldout_correlation, 3),
        corr_local_heldout=round(local.heldout_correlation, 3),
        max_local_shift_px=round(float(np.percentile(field_in_retina, 95)), 1),
        supported_fraction=round(local.supported_fraction, 2),
        local_ok=local.ok, local_reason=local.reason,
        seconds=round(time.time() - start, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/local-registration"))
    parser.add_argument("--tile", type=int, default=LOCAL_TILE_PX, help="tile (= patch) side, working px")
    parser.add_argument("--window", type=int, default=LOCAL_WINDOW_PX,
                        help="local search, +- working px around the global fit")
    parser.add_argument("--min_ncc", type=float, default=MIN_PATCH_NCC)
    parser.add_argument("--peak_ratio", type=float, default=PEAK_RATIO)
    parser.add_argument("--inlier_px", type=float, default=LOCAL_INLIER_PX)
    parser.add_argument("--smoothing", type=float, default=LOCAL_SMOOTHING, help="RBFInterpolator smoothing")
    parser.add_argument("--sigmas", type=float, nargs="*", default=list(LOCAL_SIGMAS),
                        help="Sato scales of the vessel maps at working size; none: registration's half-size maps")
    parser.add_argument("--late_via_early", action="store_true",
                        help="start a late frame from (its early frame's global fit) @ (late -> early global fit)")
    parser.add_argument("--figure_scale", type=float, default=0.4)
    parser.add_argument("--only", nargs="*", default=None, help="names to run, e.g. 3_early wrong_slo2_ffa3_early")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for slo_eye, ffa_eye in PAIRS:
        for phase in ("early", "late"):
            name = f"{ffa_eye}_{phase}" if slo_eye == ffa_eye else f"wrong_slo{slo_eye}_ffa{ffa_eye}_{phase}"
            if args.only and name not in args.only:
                continue
            results.append(probe_pair(slo_eye, ffa_eye, phase, args))
            print(json.dumps(asdict(results[-1])), flush=True)
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "pairs": [asdict(r) for r in results]}, indent=1))


if __name__ == "__main__":
    main()
