"""Probe, inference only: does the default model draw a real UWF SLO's vessels better when the SLO's ridge maps
are made as thick as those of the renders it learnt UWF vessels from?

    python experiments/uwf_ridge_width_probe.py --dilate 7 --output_dir runs/probe_ridge_d7
    python experiments/uwf_ridge_width_probe.py --sigma_factor 2 --output_dir runs/probe_ridge_s2

A real SLO's vessels, found at its own resolution (`native_resolution_ridges`), come out about 1 px wide at the
model's 256 px, while the sources `train/make_angiogram_pairs.py` renders from real UWF angiograms draw them 2-3 px
wide. This runs `experiments/real_photo_check.py` with the native-resolution ridge maps grey-dilated (`--dilate K`,
a KxK ellipse at the native side) or found with Sato scales `--sigma_factor` x larger; sources no larger than the
frame (the colour photo) are untouched. Not a pipeline option: a probe of what the input representation costs.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import cv2

import ffa_pipeline.image_processing as image_processing

FRAME = 256


def thicker(ridges_of, dilate: int, sigma_factor: float):
    """`_dark_and_bright_ridges` with the probe's changes for sources larger than the frame."""
    def ridges(equalised, sigmas):
        if equalised.shape[0] <= FRAME:
            return ridges_of(equalised, sigmas)
        maps = ridges_of(equalised, tuple(sigma * sigma_factor for sigma in sigmas))
        if dilate > 1:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (dilate, dilate))
            maps = tuple(cv2.dilate(ridge_map, kernel) for ridge_map in maps)
        return maps
    return ridges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dilate", type=int, default=1)
    parser.add_argument("--sigma_factor", type=float, default=1.0)
    parser.add_argument("--output_dir", required=True)
    args, rest = parser.parse_known_args()
    image_processing._dark_and_bright_ridges = thicker(image_processing._dark_and_bright_ridges, args.dilate,
                                                       args.sigma_factor)
    sys.argv = ["real_photo_check.py", "--output_dir", args.output_dir, *rest]
    runpy.run_path(str(Path(__file__).with_name("real_photo_check.py")), run_name="__main__")


if __name__ == "__main__":
    main()
