"""Contact sheet: one row per disease, columns CFP / OCT / UWF SLO / FFA early / FFA late (FFA in the CFP frame).

python -m ffa_pipeline.phantom.contact_sheet assets/phantom_examples.png [--resolution 256] [--seed 0]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .geometry import PHANTOM_DISEASES, sample_eye
from .rows import eye_seed
from .sample import render_sample

SHORT_NAMES = {
    "normal": "normal",
    "diabetic_retinopathy": "DR",
    "amd": "AMD",
    "vein_occlusion": "RVO",
    "glaucoma": "glaucoma",
}
COLUMNS = (
    ("cfp", "source_image", "CFP"),
    ("oct", "source_image", "OCT en-face"),
    ("uwf_slo", "source_image", "UWF SLO"),
    ("cfp", "ffa_early", "FFA early"),
    ("cfp", "ffa_late", "FFA late"),
)


def _label(text: str, width: int, height: int) -> np.ndarray:
    """White text centred on black, as large as fits (at most a line of ~1/8 of the tile width)."""
    tile = np.zeros((height, width, 3), np.uint8)
    (unit_width, unit_height), _ = cv2.getTextSize(text or " ", cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
    scale = min(0.9 * width / unit_width, 0.5 * height / unit_height, width / 250)
    (text_width, text_height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    origin = ((width - text_width) // 2, (height + text_height) // 2)
    cv2.putText(tile, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(
    diseases: Sequence[str] = PHANTOM_DISEASES,
    resolution: int = 256,
    seed: int = 0,
    severity: float = 0.8,
    randomise: bool = True,
) -> np.ndarray:
    """RGB uint8 grid of one eye per disease (``severity`` for all but ``normal``)."""
    header_height, label_width = max(24, resolution // 8), resolution // 2
    header = [_label("", label_width, header_height)] + [_label(c[2], resolution, header_height) for c in COLUMNS]
    lines = [np.hstack(header)]
    for index, disease in enumerate(diseases):
        eye = sample_eye(eye_seed(seed, index), disease, None if disease == "normal" else severity)
        rendered = render_sample(eye, resolution, phases=("early", "late"), randomise=randomise)
        tiles = [_label(SHORT_NAMES.get(disease, disease), label_width, resolution)]
        for modality, column, _ in COLUMNS:
            image = rendered[modality][column]
            tiles.append(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image)
        lines.append(np.hstack(tiles))
    return np.vstack(lines)


def save_contact_sheet(path: str | Path, **kwargs) -> Path:
    """Write ``contact_sheet(**kwargs)`` as a PNG and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), contact_sheet(**kwargs)[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="output PNG")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--severity", type=float, default=0.8)
    args = parser.parse_args(argv)
    print(save_contact_sheet(args.path, resolution=args.resolution, seed=args.seed, severity=args.severity))


if __name__ == "__main__":
    main()
