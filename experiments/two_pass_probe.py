"""Probe: ultra-widefield frames drawn in two passes, at 256 px by one model and redrawn at 512 px from that draft.

    REFINER=runs/ffa-uwf512 STRENGTH=0.5 python experiments/two_pass_probe.py real_photo_check --model M --output_dir D
    REFINER=... STRENGTH=... python experiments/two_pass_probe.py evaluate --model M --train_data_dir ... (its flags)

Runs `experiments/real_photo_check.py` or `train/evaluate.py` unchanged, with every call of the pipeline on
`uwf_slo` inputs (that gives no `height`) made in two: the model draws the frame at its own side (256 px for the
default model), then the refiner (another checkpoint's UNet, condition encoder and disease embedding; the model
itself when REFINER is unset) redraws it at SIDE (512) from that draft with the pipeline's `angiogram` and
`strength` (STRENGTH of the same schedule, or of a schedule of STEPS steps: 0.5 of the default 2 steps is its last
step, 0.75 of 4 steps its last 3). Other modalities are drawn as usual. Why: at 256 px the default model puts the
disc, fovea and lids where they are but draws the vessels thick, few and dim; a model fine-tuned at 512 px draws
them thin and many but loses the disc (experiments/uwf512_probe.sh).
Results: experiments/results/two_pass_probe.md. Ours; not a shipped feature.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from ffa_pipeline import FFADiffusionPipeline

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"real_photo_check": ROOT / "experiments" / "real_photo_check.py", "evaluate": ROOT / "train" / "evaluate.py"}
SIDE = int(os.environ.get("SIDE", "512"))
STRENGTH = float(os.environ.get("STRENGTH", "0.5"))
STEPS = int(os.environ["STEPS"]) if os.environ.get("STEPS") else None  # the redraw's schedule; default: the call's
REFINER = FFADiffusionPipeline.from_pretrained(os.environ["REFINER"]) if os.environ.get("REFINER") else None
one_pass = FFADiffusionPipeline.__call__
REFINED = ("unet", "condition_encoder", "disease_embedding")


def two_pass(pipe: FFADiffusionPipeline, image, modality="cfp", **kwargs):
    """The pipeline's call, in two passes for `uwf_slo` inputs (see the module's docstring)."""
    modalities = modality if isinstance(modality, list) else [modality]
    if "uwf_slo" not in modalities or kwargs.get("height") or kwargs.get("width"):
        return one_pass(pipe, image, modality, **kwargs)
    draft_kwargs = {k: v for k, v in kwargs.items() if k not in ("output_type", "output_size", "height", "width")}
    draft = one_pass(pipe, image, modality, **draft_kwargs, output_type="pt", output_size=None,
                     height=pipe.default_resolution, width=pipe.default_resolution).images
    kept = {name: getattr(pipe, name) for name in REFINED}
    if REFINER is not None:
        pipe.register_modules(**{name: getattr(REFINER, name) for name in REFINED})
    try:
        redraw = {"height": SIDE, "width": SIDE, **({"num_inference_steps": STEPS} if STEPS else {})}
        return one_pass(pipe, image, modality, **{**kwargs, **redraw}, angiogram=draft, strength=STRENGTH)
    finally:
        pipe.register_modules(**kept)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in SCRIPTS:
        sys.exit(f"usage: two_pass_probe.py {{{'|'.join(SCRIPTS)}}} [the script's flags]; got {sys.argv[1:2]}")
    script = SCRIPTS[sys.argv.pop(1)]
    sys.argv[0] = str(script)
    sys.path[:0] = [str(script.parent)]
    FFADiffusionPipeline.__call__ = two_pass
    runpy.run_path(str(script), run_name="__main__")
