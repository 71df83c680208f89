"""Does the default model put the vessels, disc and macula of a *real* photo where they are, with FFA's contrast?

    python experiments/real_photo_check.py --output_dir runs/real_photo_check [--model assets/ffa-default]

Inputs: the CC0 colour fundus photo of scikit-image (`assets/examples/retina_skimage_cc0.png`) and, when
`../shared/data/uwf_slo_ffa` is there, the real ultra-widefield SLO test images (their real angiograms are shown
beside ours). Every input is framed by the pipeline's own processor, and the checks run in that 256 px frame (an
output that the checkpoint draws at a larger side for its modality, `pipe.resolution_for`, is shrunk to it):

* vessel agreement: AUC of the output's grey level as a detector of the input's vessels (the top 12 % of the
  input's dark-ridge map inside the field of view; the same metric as `train/evaluate.py`), and the same AUC
  with the output flipped left-right as a no-correspondence control; for inputs larger than the frame, also the
  AUC of the output's bright ridges (its vessels, without its overall shading) against the input's fine vessels:
  the top 12 % of its dark ridges found at its own resolution (up to 3x the frame, then shrunk), since at 256 px
  the ridges of an ultra-widefield SLO are mostly choroid, lids and lashes ("fine_vessel_ridge_auc", and mirrored);
* FFA contrast: mean output intensity on the input's vessels / on the rest of the field of view (> 1: bright
  vessels on a dark background; the input photo has < 1);
* disc: distance from the brightest point of the input (its optic disc) to the brightest point of the output
  (an angiogram's disc is bright), both after a blur of 0.02 x the frame, as a fraction of the frame's side;
* disc, moved: the same disc offset for the skimage photo turned by 90, 180 and 270 degrees and flipped
  upside down (its disc moves, the model's must follow; a model that draws the disc from a learnt prior fails);
* fovea: mean output intensity in a disc of the fovea's radius (`FOVEA_RADIUS`: 0.05 of the frame for a photo,
  0.015 for an ultra-widefield image) at the input's fovea (the point of its centre darkest against its
  surround, `find_fovea`) / mean output in the field of view (< 1: a dark fovea where the input has its
  macula), and the same with the output flipped left-right (the fovea is off-centre, so a flipped output is not
  dark there). A real UWF SLO barely shows its fovea, and its angiogram (below) is not pixel-aligned with it while
  a UWF fovea is only 3-5 px across at 256 px, so on UWF inputs no fovea figure here says where the fovea is;
* fovea, measured as on real angiograms: the output's own fovea (`find_fovea`), its darkness measured as
  `experiments/phantom_realism.py` measures real angiograms' (so the two are comparable: the measure above sits at
  the input's fovea, not the output's, and reads fainter), and its distance from the input's fovea as a fraction of
  the frame's side ("fovea_offset"; mirrored output as control, weak where the fovea is near the vertical midline);
* against the eye's real angiogram of the same phase (the UWF test triplets; roughly aligned with the SLO, framed
  by the SLO's framing): the same vessel AUC against the real angiogram's vessels (its top 12 % bright ridges),
  the disc offset from the real angiogram's brightest point (an SLO's own brightest points are often its
  eyelids, so there the input's say little) and the output's darkness at the real angiogram's fovea
  (`find_fovea` on the early angiogram, where the fovea shows best, for both phases), each with the mirrored
  output as control. The SLO and its angiogram are not pixel-aligned
  (another geometry, not just a shift), so as a reference the same AUC is given for the input's own dark-ridge map
  ("input_ridges_vessel_auc_vs_real"): a model that copied the SLO's vessels exactly would score about that;
* eyelids (UWF inputs): mean output under the SLO's eyelids (bright, green over red: G > 1.3 R and G > 0.3) / mean
  output in the rest of the field ("lid_brightness"; < 1: dark, as lids are in a real angiogram), and the same
  for the real angiogram framed as the input ("lid_brightness_real"; roughly aligned, and the lids are large).
  That colour rule also takes green patches of the retina for lids, so the same is given for the SLO's field
  outside the real angiogram's retinal field (where the SLO shows lids and lashes: the region whose loss
  `train_ffa.py --loss_mask_column` trains on real SLO pairs) against inside it ("outside_retina_brightness", and
  "_real" for the real angiogram). The field is `retinal_field` of the mean of the eye's early and late frames: the
  early frame alone understates it (its peripheral retina is still dim) and a dim late frame can hide its edge;
* UWF fovea on registered pairs (when `data/uwf-registered` is there: `experiments/real_uwf.sh` builds it; the test
  eyes whose SLO and angiogram `ffa_pipeline/registration.py` could register, 10 and 8): the output's own fovea
  against the registered early angiogram's (`find_fovea`, UWF radius), its distance as a fraction of the frame and
  both darknesses, for the whole SLO and for crops of it that move the fovea off the frame's centre (a model that
  draws the fovea at the centre of every frame fails those);
* UWF vessels on registered pairs (the same eyes, early and late): the output's bright ridges as a detector of the
  registered real angiogram's vessels, against the mirrored output and against the SLO's own fine vessel map
  (`registered_uwf_vessels`): the one vessel figure here where the real vessels and the input share a geometry.

Writes `real_photo_check.png` (input | synthetic early | synthetic late | real early | real late) and
`real_photo_check.json`. This is ours (not a library's): there is no standard check of anatomical faithfulness
on unpaired real photos.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import torch

from ffa_pipeline import load_default_pipeline
from ffa_pipeline.anatomy import FOVEA_RADIUS, disc_at, find_fovea, fovea_distance, fovea_of, retinal_field
from ffa_pipeline.data import load_dataset_fresh
from ffa_pipeline.image_processing import RIDGE_SIGMAS, native_ridge_side
from ffa_pipeline.metrics import vessel_auc
from ffa_pipeline.registration import to_gray, vessel_map

ROOT = Path(__file__).resolve().parent.parent
CFP_EXAMPLE = ROOT / "assets" / "examples" / "retina_skimage_cc0.png"
UWF_TEST = ROOT.parent / "shared" / "data" / "uwf_slo_ffa" / "test"
UWF_REGISTERED = ROOT / "data" / "uwf-registered"
CROPS = {"whole": lambda a: a, "left 70%": lambda a: a[:, : int(0.7 * a.shape[1])],
         "right 70%": lambda a: a[:, int(0.3 * a.shape[1]):], "bottom 70%": lambda a: a[int(0.3 * a.shape[0]):]}
VESSEL_FRACTION = 0.12


def inputs() -> list[dict]:
    cases = [{"name": "skimage retina (CFP)", "path": CFP_EXAMPLE, "modality": "cfp", "real": {}}]
    for slo in sorted(UWF_TEST.glob("*_slo.png")):
        eye = slo.name.split("_")[0]
        cases.append({"name": f"UWF test {eye} (SLO)", "path": slo, "modality": "uwf_slo",
                      "real": {phase: UWF_TEST / f"{eye}_ffa_{phase}.png" for phase in ("early", "late")}})
    return cases


def vessels_of(ridges: np.ndarray, field: np.ndarray) -> np.ndarray:
    return (ridges >= np.quantile(ridges[field], 1 - VESSEL_FRACTION)) & field


def fine_ridges_of(rgb: np.ndarray, framing, processor, resolution: int, vessels_dark: bool) -> np.ndarray:
    """Ridge map of `framing`'s square found at the image's own resolution (the pipeline's `ridge_detail` square:
    up to 3x the frame; the frame itself for an image no larger), shrunk to the frame."""
    large = processor.ridge_detail(rgb, framing, resolution)
    large = processor.apply_framing(rgb, framing, resolution) if large is None else large
    ridges = vessel_map(to_gray(large), vessels_dark=vessels_dark, sigmas=RIDGE_SIGMAS)
    return cv2.resize(ridges, (resolution, resolution), interpolation=cv2.INTER_AREA)


def fine_vessels_of(rgb: np.ndarray, framing, processor, field: np.ndarray) -> np.ndarray | None:
    """The input's vessels found at its own resolution (`fine_ridges_of`); None for an input no larger than the
    frame."""
    resolution = field.shape[0]
    if native_ridge_side(framing, resolution) <= resolution:
        return None
    return vessels_of(fine_ridges_of(rgb, framing, processor, resolution, vessels_dark=True), field)


def anatomy_checks(source: np.ndarray, output: np.ndarray, field: np.ndarray, fine_vessels: np.ndarray | None = None,
                   fovea_radius: float = FOVEA_RADIUS["cfp"]) -> dict[str, float]:
    """The input checks of the module docstring, for one framed input (HxWx3 float) and output (HxW float)."""
    vessels = vessels_of(vessel_map(to_gray(source), vessels_dark=True), field)
    auc = vessel_auc(output, vessels, field)
    control = vessel_auc(np.ascontiguousarray(output[:, ::-1]), vessels, field)
    fine = {}
    if fine_vessels is not None:
        ridges = vessel_map(to_gray(output), vessels_dark=False, sigmas=RIDGE_SIGMAS)
        fine = {"fine_vessel_ridge_auc": float(vessel_auc(ridges, fine_vessels, field)),
                "fine_vessel_ridge_auc_flipped_control": float(
                    vessel_auc(np.ascontiguousarray(ridges[:, ::-1]), fine_vessels, field))}
    contrast_out = output[vessels].mean() / output[field & ~vessels].mean()
    grey_in = source.mean(axis=2)
    contrast_in = grey_in[vessels].mean() / grey_in[field & ~vessels].mean()
    side = source.shape[0]
    mirrored = np.ascontiguousarray(output[:, ::-1])
    fovea_in, fovea_out, fovea_mirrored = (find_fovea(image, field, fovea_radius)
                                           for image in (grey_in, output, mirrored))
    fovea = disc_at(fovea_in, side, fovea_radius)
    disc_in, disc_out = (brightest_point(image, field) for image in (grey_in, output))
    return {"vessel_auc": float(auc), "vessel_auc_flipped_control": float(control),
            "vessel_contrast_output": float(contrast_out), "vessel_contrast_input": float(contrast_in),
            "fovea_darkness_output": float(output[fovea].mean() / output[field].mean()),
            "fovea_darkness_flipped_control": float(mirrored[fovea].mean() / output[field].mean()),
            "fovea_darkness_as_real_angiograms": float(
                output[disc_at(fovea_out, side, fovea_radius)].mean() / output[field].mean()),
            "fovea_offset": fovea_distance(fovea_in, fovea_out) / side,
            "fovea_offset_flipped_control": fovea_distance(fovea_in, fovea_mirrored) / side,
            "disc_offset": float(np.hypot(*np.subtract(disc_in, disc_out)) / side), **fine}


def lid_checks(source: np.ndarray, output: np.ndarray, real: np.ndarray, field: np.ndarray,
               retina: np.ndarray) -> dict[str, float]:
    """The eyelid check of the module docstring, for one framed SLO (HxWx3), output and real angiogram (HxW);
    `retina`: the eye's retinal field (HxW bool)."""
    red, green = source[..., 0], source[..., 1]
    lids = (green > 1.3 * red) & (green > 0.3) & field
    rest = field & ~lids
    outside, inside = field & ~retina, field & retina
    return {"lid_fraction": float(lids.sum() / field.sum()),
            "lid_brightness": float(output[lids].mean() / output[rest].mean()),
            "lid_brightness_real": float(real[lids].mean() / real[rest].mean()),
            "outside_retina_fraction": float(outside.sum() / field.sum()),
            "outside_retina_brightness": float(output[outside].mean() / output[inside].mean()),
            "outside_retina_brightness_real": float(real[outside].mean() / real[inside].mean())}


def real_field(real: np.ndarray, field: np.ndarray) -> np.ndarray:
    """The input's field where the real angiogram has one: its own black surround and label box are no anatomy."""
    return field & (real > 0.02)


def real_angiogram_checks(real: np.ndarray, source: np.ndarray, output: np.ndarray,
                          field: np.ndarray, fovea: np.ndarray) -> dict[str, float]:
    """The checks against the eye's real angiogram (HxW float, framed as the input) of the module docstring;
    `fovea`: a disc at the real fovea (`fovea_of` on the eye's early angiogram, where the fovea shows best)."""
    field = real_field(real, field)
    vessels = vessels_of(vessel_map(to_gray(real), vessels_dark=False), field)
    input_ridges = vessel_map(to_gray(source), vessels_dark=True)
    mirrored = np.ascontiguousarray(output[:, ::-1])
    disc_real = brightest_point(real, field)
    side = real.shape[0]
    return {"vessel_auc_vs_real": float(vessel_auc(output, vessels, field)),
            "vessel_auc_vs_real_flipped_control": float(vessel_auc(mirrored, vessels, field)),
            "input_ridges_vessel_auc_vs_real": float(vessel_auc(input_ridges, vessels, field)),
            "disc_offset_vs_real": float(np.hypot(*np.subtract(disc_real, brightest_point(output, field))) / side),
            "disc_offset_vs_real_flipped_control": float(
                np.hypot(*np.subtract(disc_real, brightest_point(mirrored, field))) / side),
            "fovea_darkness_vs_real": float(output[fovea].mean() / output[field].mean()),
            "fovea_darkness_vs_real_flipped_control": float(mirrored[fovea].mean() / output[field].mean()),
            "real_fovea_darkness": float(real[fovea].mean() / real[field].mean())}


MOVES = {"rot90": lambda a: np.rot90(a, 1), "rot180": lambda a: np.rot90(a, 2), "rot270": lambda a: np.rot90(a, 3),
         "upside_down": lambda a: a[::-1]}


def moved_disc_offsets(pipe, rgb: np.ndarray, modality: str, seed: int, **settings) -> dict[str, dict[str, float]]:
    """{move: {phase: disc offset}} for the photo turned and flipped (see the module docstring)."""
    processor, resolution = pipe.image_processor, pipe.default_resolution
    offsets = {}
    for name, move in MOVES.items():
        moved = np.ascontiguousarray(move(rgb))
        source = processor.apply_framing(moved, processor.frame(moved), resolution)
        field = source.max(axis=2) > 0.04
        offsets[name] = {}
        for phase in ("early", "late"):
            output = pipe(moved, modality=modality, phase=phase, output_type="np",
                          generator=torch.Generator().manual_seed(seed), output_size=(resolution, resolution),
                          **settings).images[0, ..., 0]
            disc_in, disc_out = brightest_point(source.mean(axis=2), field), brightest_point(output, field)
            offsets[name][phase] = float(np.hypot(*np.subtract(disc_in, disc_out)) / resolution)
    return offsets


def registered_uwf_fovea(pipe, seed: int, **settings) -> dict[str, dict[str, dict[str, float]]]:
    """{eye: {crop: figures}} of the module docstring's UWF fovea on registered pairs (early phase, where the fovea
    shows best)."""
    processor, resolution = pipe.image_processor, pipe.default_resolution
    radius, report = FOVEA_RADIUS["uwf_slo"], {}
    for row in load_dataset_fresh(str(UWF_REGISTERED))["test"]:
        if row["phase_name"] != "early":
            continue
        slo = processor.to_float_rgb(row["source_image"])
        angiogram = processor.to_float_rgb(row["target_image"])
        report[row["eye_id"]] = {}
        for name, crop in CROPS.items():
            rgb, real = np.ascontiguousarray(crop(slo)), np.ascontiguousarray(crop(angiogram))
            framing = processor.frame(rgb)
            source = processor.apply_framing(rgb, framing, resolution)
            real = processor.apply_framing(real, framing, resolution).mean(axis=2)
            field = real_field(real, source.max(axis=2) > 0.04)
            output = pipe(rgb, modality="uwf_slo", phase="early", output_type="np",
                          generator=torch.Generator().manual_seed(seed), output_size=(resolution, resolution),
                          **settings).images[0, ..., 0]
            fovea_real, fovea_out = find_fovea(real, field, radius), find_fovea(output, field, radius)
            report[row["eye_id"]][name] = {
                "fovea_offset": fovea_distance(fovea_out, fovea_real) / resolution,
                "fovea_darkness_output": fovea_out.darkness, "fovea_darkness_real": fovea_real.darkness,
                "real_fovea_from_centre": float(np.hypot(fovea_real.y - resolution / 2, fovea_real.x - resolution / 2)
                                                / resolution)}
    return report


def registered_uwf_vessels(pipe, seed: int, **settings) -> dict[str, dict[str, dict[str, float]]]:
    """{eye: {phase: figures}}: the output's vessels against those of the eye's real angiogram registered to its
    SLO (the test eyes of `data/uwf-registered`), the fair test of "the vessels in the right places" on a real SLO,
    since the unregistered angiogram is in another geometry. The real vessels: the top 12 % of the registered
    angiogram's bright ridges found at its own resolution; scored: the output's bright ridges ("ridge_auc") and grey
    level ("grey_auc"), the mirrored output's ridges as control, and the SLO's own fine dark ridges as a reference
    for what copying the SLO's vessels exactly would score (registration error and vessels that only the dye shows
    keep it below 1)."""
    processor, resolution = pipe.image_processor, pipe.default_resolution
    report = {}
    for row in load_dataset_fresh(str(UWF_REGISTERED))["test"]:
        slo = processor.to_float_rgb(row["source_image"])
        angiogram = processor.to_float_rgb(row["target_image"])
        framing = processor.frame(slo)
        source = processor.apply_framing(slo, framing, resolution)
        real = processor.apply_framing(angiogram, framing, resolution).mean(axis=2)
        field = real_field(real, source.max(axis=2) > 0.04)
        vessels = vessels_of(fine_ridges_of(angiogram, framing, processor, resolution, vessels_dark=False), field)
        output = pipe(slo, modality="uwf_slo", phase=row["phase_name"], output_type="np",
                      generator=torch.Generator().manual_seed(seed), output_size=(resolution, resolution),
                      **settings).images[0, ..., 0]
        ridges = vessel_map(to_gray(output), vessels_dark=False, sigmas=RIDGE_SIGMAS)
        slo_ridges = fine_ridges_of(slo, framing, processor, resolution, vessels_dark=True)
        report.setdefault(row["eye_id"], {})[row["phase_name"]] = {
            "ridge_auc": float(vessel_auc(ridges, vessels, field)),
            "ridge_auc_flipped_control": float(vessel_auc(np.ascontiguousarray(ridges[:, ::-1]), vessels, field)),
            "grey_auc": float(vessel_auc(output, vessels, field)),
            "slo_ridges_auc": float(vessel_auc(slo_ridges, vessels, field))}
    return report


def brightest_point(image: np.ndarray, field: np.ndarray) -> tuple[int, int]:
    """(y, x) of the brightest point in the field after a blur of 0.02 x the frame: an angiogram's (or photo's) disc."""
    blurred = cv2.GaussianBlur(image.astype(np.float32), (0, 0), image.shape[0] / 50)
    return np.unravel_index(np.where(field, blurred, -np.inf).argmax(), blurred.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the embedded default model")
    parser.add_argument("--output_dir", type=Path, default=Path("runs/real_photo_check"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_inference_steps", type=int, default=None, help="Default: the checkpoint's own.")
    parser.add_argument("--image_guidance_scale", type=float, default=None, help="Default: the checkpoint's own.")
    args = parser.parse_args()
    pipe = load_default_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    processor, resolution = pipe.image_processor, pipe.default_resolution
    args.output_dir.mkdir(parents=True, exist_ok=True)
    rows, report = [], {}
    for case in inputs():
        rgb = processor.to_float_rgb(PIL.Image.open(case["path"]))
        framing = processor.frame(rgb)
        source = processor.apply_framing(rgb, framing, resolution)
        field = source.max(axis=2) > 0.04
        fine_vessels = fine_vessels_of(rgb, framing, processor, field)
        tiles, report[case["name"]], reals = [source], {}, {}
        for phase, path in case["real"].items():
            reals[phase] = processor.apply_framing(processor.to_float_rgb(PIL.Image.open(path)), framing, resolution)
        radius = FOVEA_RADIUS[case["modality"]]
        if reals:
            early = reals["early"].mean(axis=2)
            real_fovea = fovea_of(early, real_field(early, field), radius)
            retina = retinal_field(np.mean([real.mean(axis=2) for real in reals.values()], axis=0))
        for phase in ("early", "late"):
            output = pipe(rgb, modality=case["modality"], phase=phase, output_type="np",
                          num_inference_steps=args.num_inference_steps, image_guidance_scale=args.image_guidance_scale,
                          generator=torch.Generator().manual_seed(args.seed),
                          output_size=(resolution, resolution)).images[0, ..., 0]
            report[case["name"]][phase] = anatomy_checks(source, output, field, fine_vessels, radius)
            if phase in reals:
                real = reals[phase].mean(axis=2)
                report[case["name"]][phase].update(real_angiogram_checks(real, source, output, field, real_fovea))
                report[case["name"]][phase].update(lid_checks(source, output, real, field, retina))
            tiles.append(np.repeat(output[..., None], 3, axis=2))
        tiles += [reals.get(phase, np.zeros_like(source)) for phase in ("early", "late")]
        rows.append(np.concatenate(tiles, axis=1))
    photo = processor.to_float_rgb(PIL.Image.open(CFP_EXAMPLE))
    report["skimage retina (CFP), moved: disc offset"] = moved_disc_offsets(
        pipe, photo, "cfp", args.seed, num_inference_steps=args.num_inference_steps,
        image_guidance_scale=args.image_guidance_scale)
    if UWF_REGISTERED.is_dir():
        report["UWF registered (early): fovea"] = registered_uwf_fovea(
            pipe, args.seed, num_inference_steps=args.num_inference_steps,
            image_guidance_scale=args.image_guidance_scale)
        report["UWF registered: vessels"] = registered_uwf_vessels(
            pipe, args.seed, num_inference_steps=args.num_inference_steps,
            image_guidance_scale=args.image_guidance_scale)
    figure = (np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)
    PIL.Image.fromarray(figure).save(args.output_dir / "real_photo_check.png")
    (args.output_dir / "real_photo_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
