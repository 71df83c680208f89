"""Write the demo's example images into this folder.

- `<disease>_<modality>.png`: one phantom eye per disease (ffa_pipeline.phantom), seen by every modality, 256 px.
- `retina_skimage_cc0.png`: scikit-image's `data.retina()` (CC0), a real colour fundus photo, shrunk to 512 px.

Run: python assets/examples/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import PIL.Image
from skimage import data

from ffa_pipeline.phantom import PHANTOM_DISEASES, render_sample, sample_eye
from ffa_pipeline.vocab import MODALITIES

HERE = Path(__file__).resolve().parent
RESOLUTION = 256
SEVERITY = 0.8  # clearly visible lesions
SEED = 2024  # one eye (the same anatomy) for every disease, so examples differ by the disease only
SKIMAGE_SIDE = 512


def main() -> None:
    for disease in PHANTOM_DISEASES:
        eye = sample_eye(seed=SEED, disease=disease, severity=SEVERITY)
        rows = render_sample(eye, RESOLUTION, modalities=MODALITIES, phases=("late",))
        for modality, row in rows.items():
            path = HERE / f"{disease}_{modality}.png"
            PIL.Image.fromarray(row["source_image"]).save(path, optimize=True)
            print(path.name)
    retina = PIL.Image.fromarray(data.retina())
    retina.thumbnail((SKIMAGE_SIDE, SKIMAGE_SIDE), PIL.Image.Resampling.LANCZOS)
    retina.save(HERE / "retina_skimage_cc0.png", optimize=True)
    print("retina_skimage_cc0.png")


if __name__ == "__main__":
    main()
