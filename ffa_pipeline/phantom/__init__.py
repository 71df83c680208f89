"""Retina phantom: a procedural simulator of paired retinal images with exact ground truth.

One eye is a seeded geometry in retina coordinates (degrees from the fovea, x right, y down
as in a fundus photo): optic disc and cup, fovea and foveal avascular zone, artery and vein
trees grown from the disc, and the lesions of a disease at a severity (``sample_eye``). Every
modality looks at that same eye through its own camera (``render_sample``): the colour fundus
photo and the OCT en-face share a ~45 deg framing, the ultra-widefield SLO sees ~200 deg between
the eyelids, and the fluorescein angiogram is rendered at any time after injection in the frame
of each source, so every (source, FFA) pair is pixel-aligned and comes with vessel,
artery/vein and per-lesion masks.

    from ffa_pipeline.phantom import sample_eye, render_sample
    eye = sample_eye(seed=7, disease="diabetic_retinopathy", severity=0.8)
    rows = render_sample(eye, resolution=256)  # {"cfp": row, "oct": row, "uwf_slo": row}
    rows["cfp"]["source_image"], rows["cfp"]["ffa_late"], rows["cfp"]["mask_haemorrhage"]

Modules: ``vessels`` (tree growth), ``lesions`` (per disease), ``geometry`` (one eye),
``camera`` (degrees -> pixels per modality), ``raster`` (coverage layers of one view),
``modalities`` (CFP, OCT, SLO), ``ffa`` (angiogram as a function of time), ``imaging``
(apertures, eyelids, domain randomisation), ``sample`` (``render_sample``), ``rows`` and
``dataset`` (Hugging Face dataset writer behind ``train/make_phantom_dataset.py``),
``contact_sheet`` (``python -m ffa_pipeline.phantom.contact_sheet assets/phantom_examples.png``).
Only numpy and OpenCV are needed to render; ``datasets`` only to write datasets.
"""

from .geometry import PHANTOM_DISEASES, EyeGeometry, sample_eye
from .lesions import LESION_TYPES
from .sample import render_sample

__all__ = ["EyeGeometry", "LESION_TYPES", "PHANTOM_DISEASES", "render_sample", "sample_eye"]
