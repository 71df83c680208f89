"""What the Gradio demo and the command line do, without any UI.

`app.py` only lays out the page and `__main__.py` only parses arguments; both call the functions here:
read and check an upload, generate angiograms (several samples, several phases of one dye transit, or the
same eye under several diseases), mark every output as synthetic (a visible mark and PNG metadata), estimate
where the model is unsure, and explain to educators what bright and dark areas mean.

Every output of one call starts from noise seeded by `seed + index`, so an output is reproduced by its
recorded seed alone, and frames of a dye transit (or diseases of a comparison) share their noise: only the
dye (or the disease) changes between them.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL.PngImagePlugin import PngInfo

from .image_processing import FFAImageProcessor
from .pipeline_ffa import FFADiffusionPipeline
from .vocab import display_label

SYNTHETIC_MARK = "SYNTHETIC - not for diagnosis"
SHORT_SYNTHETIC_MARK = "SYNTHETIC"  # for images too narrow for the full mark
UNTRAINED_WARNING = "untrained demo model: output is random"
EMBEDDED_DEFAULT_NOTE = (
    "the embedded default model learnt from a simulated retina and from real angiograms with photos rendered from "
    "them, never from a real colour photo (real SLOs on the retina from two eyes only): on a real colour photo its "
    "angiogram puts the vessels, the disc and the dark fovea in place (the fovea fainter than in a real angiogram), "
    "but lesions are not reliable; on ultra-widefield SLO it finds the disc in 29 of 30 test frames over 5 seeds and "
    "the fovea in 7 of the 10 frames where it could be checked, but draws thicker, fewer, dimmer vessels than real - "
    "see the README: The default model"
)
MAX_WORKING_SIDE = 1024  # uploads are shrunk to this: the model sees at most 512 px, outputs match the upload
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MAX_SEED = 2**32 - 1
UNCERTAINTY_FULL_SCALE = 0.25  # per-pixel standard deviation shown at full colour (grey levels in [0, 1])
FRAME_MILLISECONDS = 900  # each phase of the dye-transit GIF; the last one is held twice as long

ProgressCallback = Callable[[float, str], None]


class InvalidInputError(ValueError):
    """A bad upload or setting, with a message for the person who made it (no stack trace needed)."""


# ------------------------------------------------------------------------------------------------ inputs
def load_retinal_image(
    source: str | os.PathLike | PIL.Image.Image | np.ndarray | None,
    pipe: FFADiffusionPipeline,
    max_pixels: int | None = None,
    max_side: int | None = MAX_WORKING_SIDE,
) -> PIL.Image.Image:
    """Read and check an upload with the pipeline's own image checks; return it as RGB, at most `max_side` px.

    Raises `InvalidInputError` saying what is wrong: not an image, a truncated file, too small, too many pixels.
    """
    if source is None:
        raise InvalidInputError("No image: upload a retinal image (colour fundus, OCT en-face or UWF-SLO) first.")
    processor = pipe.image_processor
    if max_pixels is not None:
        processor = FFAImageProcessor.from_config(processor.config, max_pixels=max_pixels)
    name = Path(source).name if isinstance(source, (str, os.PathLike)) else "the image"
    try:
        rgb = processor.to_float_rgb(source)
    except (OSError, SyntaxError) as error:  # PIL: unidentified format, truncated or corrupt data
        raise InvalidInputError(
            f"Could not read {name}: it is not an image or the file is truncated/corrupt ({error}). "
            "Expected a PNG, JPEG, TIFF, BMP or WebP retinal image."
        ) from error
    except (ValueError, TypeError) as error:  # too small, too many pixels, NaN, unsupported array
        raise InvalidInputError(f"Could not use {name}: {error}") from error
    image = PIL.Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    if max_side is not None and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), PIL.Image.Resampling.LANCZOS)
    return image


def _as_int(value: object, name: str, low: int, high: int) -> int:
    """An int (or a float with no fraction, as UI sliders send) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise InvalidInputError(f"{name} must be a whole number in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise InvalidInputError(f"{name} must be in [{low}, {high}], got {int(value)}")
    return int(value)


def _as_scale(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class GenerationSettings:
    """What a visitor (or the command line) chose; recorded in every output's metadata."""

    modality: str
    disease: str = "unknown"
    phase: str | float = "late"
    num_inference_steps: int | None = None  # None: the checkpoint's recommended setting
    image_guidance_scale: float | None = None
    label_guidance_scale: float | None = None
    seed: int = 0
    num_samples: int = 1

    def checked(self, pipe: FFADiffusionPipeline, max_steps: int = 1000, max_samples: int = 64) -> GenerationSettings:
        """These settings with numbers coerced (sliders send floats) and the checkpoint's defaults filled in;
        `InvalidInputError` naming what is wrong."""
        steps, image_guidance, label_guidance = pipe.sampling_settings(
            self.num_inference_steps, self.image_guidance_scale, self.label_guidance_scale
        )
        settings = GenerationSettings(
            modality=self.modality,
            disease=self.disease,
            phase=self.phase,
            num_inference_steps=_as_int(steps, "Steps", 1, max_steps),
            image_guidance_scale=_as_scale(image_guidance, "Image guidance"),
            label_guidance_scale=_as_scale(label_guidance, "Label guidance"),
            seed=_as_int(self.seed, "Seed", 0, MAX_SEED),
            num_samples=_as_int(self.num_samples, "Number of samples", 1, max_samples),
        )
        try:  # the pipeline's own checks name the bad value and the vocabulary of this checkpoint
            pipe.check_inputs(
                image=[None], modality=settings.modality, disease=settings.disease, phase=settings.phase,
                num_inference_steps=settings.num_inference_steps,
                image_guidance_scale=settings.image_guidance_scale,
                label_guidance_scale=settings.label_guidance_scale, num_images_per_prompt=settings.num_samples,
                output_type="pil", height=None, width=None, callback_on_step_end_tensor_inputs=None,
            )
        except (ValueError, TypeError) as error:
            raise InvalidInputError(str(error)) from error
        return settings


# --------------------------------------------------------------------------------------------- provenance
def model_id(pipe: FFADiffusionPipeline) -> str:
    """The checkpoint's Hub id or folder (relative to the working directory when inside it)."""
    if getattr(pipe, "is_untrained", False):
        return "untrained-tiny (random weights)"
    name = str(getattr(pipe, "name_or_path", None) or "unknown")
    if os.path.isdir(name):
        path = Path(name).resolve()
        return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else path.name
    return name


def _package_version() -> str:
    try:
        return version("ffa-diffusion")
    except PackageNotFoundError:
        return "unknown"


def provenance(pipe: FFADiffusionPipeline, settings: GenerationSettings, **output: object) -> dict[str, str]:
    """PNG text chunks for one output: it is synthetic, which model made it, with which settings and seed.

    `output` holds what differs per output (its own seed, disease, phase) and overrides the settings.
    """
    record = {**asdict(settings), **output}
    record.pop("num_samples")
    record["phase_seconds"] = pipe.phase_to_seconds(record["phase"])
    metadata = {
        "synthetic": "true",
        "Description": f"{SYNTHETIC_MARK}: a fluorescein angiogram generated by a diffusion model",
        "Software": f"ffa-diffusion {_package_version()}",
        "model_id": model_id(pipe),
        "model_untrained": str(bool(getattr(pipe, "is_untrained", False))).lower(),
        "scheduler": type(pipe.scheduler).__name__,
        **{key: str(value) for key, value in record.items()},
    }
    metadata["parameters"] = json.dumps(metadata, sort_keys=True)
    return metadata


def png_with_provenance(image: PIL.Image.Image, metadata: dict[str, str]) -> bytes:
    """Lossless PNG bytes with every metadata entry as a tEXt chunk."""
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@dataclass
class Angiogram:
    """One output image (already carrying its visible mark) and the metadata its PNG file records."""

    image: PIL.Image.Image
    metadata: dict[str, str]

    def png_bytes(self) -> bytes:
        return png_with_provenance(self.image, self.metadata)


# ------------------------------------------------------------------------------------------- visible marks
def _font(size: int) -> PIL.ImageFont.ImageFont | PIL.ImageFont.FreeTypeFont:
    try:
        return PIL.ImageFont.load_default(size=size)
    except (ImportError, TypeError):  # Pillow without FreeType: the fixed bitmap font
        return PIL.ImageFont.load_default()


def _draw_label(image: PIL.Image.Image, texts: Sequence[str], corner: str) -> PIL.Image.Image:
    """A copy of `image` with the first of `texts` that fits, white on a black box, in a corner."""
    image = image.copy()
    draw = PIL.ImageDraw.Draw(image)
    font = _font(int(np.clip(round(min(image.size) * 0.035), 8, 28)))
    pad = max(2, font.size // 4) if hasattr(font, "size") else 2
    for text in texts:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left + 2 * pad <= image.width:
            break
    box_width, box_height = right - left + 2 * pad, bottom - top + 2 * pad
    x = image.width - box_width if corner == "bottom-right" else 0
    y = image.height - box_height if corner == "bottom-right" else 0
    white, black = (255,) * len(image.getbands()), (0,) * len(image.getbands())
    draw.rectangle((x, y, x + box_width - 1, y + box_height - 1), fill=black)
    draw.text((x + pad - left, y + pad - top), text, font=font, fill=white)
    return image


def add_synthetic_mark(image: PIL.Image.Image) -> PIL.Image.Image:
    """The image with a small, visible "SYNTHETIC - not for diagnosis" mark in the bottom-right corner."""
    return _draw_label(image, [SYNTHETIC_MARK, SHORT_SYNTHETIC_MARK], corner="bottom-right")


def add_caption(image: PIL.Image.Image, caption: str) -> PIL.Image.Image:
    """The image with a caption (phase and time, or disease) in the top-left corner."""
    return _draw_label(image, [caption], corner="top-left")


def format_seconds(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 60 else f"{seconds / 60:.3g} min"


def phase_caption(phase: str | float, seconds: float) -> str:
    """'Arterial phase, 14 s after injection' (or just the time for a number of seconds)."""
    name = f"{phase.replace('_', ' ').capitalize()} phase, " if isinstance(phase, str) else ""
    return f"{name}{format_seconds(seconds)} after injection"


# --------------------------------------------------------------------------------------------- generation
def initial_noise(pipe: FFADiffusionPipeline, seeds: Sequence[int], modality: str) -> torch.Tensor:
    """Starting latents, one per seed, drawn on the CPU so a seed gives the same image on any device; at the side
    that the checkpoint draws this modality at (`pipe.resolution_for`)."""
    side = pipe.resolution_for(modality) // pipe.vae_scale_factor
    shape = (len(seeds), pipe.vae.config.latent_channels, side, side)
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    return randn_tensor(shape, generator=generators, dtype=pipe.unet.dtype)


def _step_callback(progress: ProgressCallback | None, total_steps: int, task: str):
    def on_step_end(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        if progress is not None:
            progress((step + 1) / total_steps, f"{task}: step {step + 1} of {total_steps}")
        return callback_kwargs

    return on_step_end


def _sample(
    pipe: FFADiffusionPipeline,
    source: PIL.Image.Image,
    settings: GenerationSettings,
    diseases: Sequence[str],
    phases: Sequence[str | float],
    seeds: Sequence[int],
    progress: ProgressCallback | None,
    task: str,
) -> list[PIL.Image.Image]:
    """One batched pipeline call on the same eye: an unmarked grey output per (disease, phase, seed)."""
    count = len(seeds)
    output = pipe(
        [source] * count,
        modality=settings.modality,
        disease=list(diseases),
        phase=list(phases),
        num_inference_steps=settings.num_inference_steps,
        image_guidance_scale=settings.image_guidance_scale,
        label_guidance_scale=settings.label_guidance_scale,
        latents=initial_noise(pipe, seeds, settings.modality),
        output_size="input",
        callback_on_step_end=_step_callback(progress, settings.num_inference_steps, task),
    )
    return output.images


@dataclass
class GenerationResult:
    """The source as the model saw it (for the before/after slider) and one angiogram per sample."""

    source: PIL.Image.Image
    angiograms: list[Angiogram]


def generate_angiograms(
    pipe: FFADiffusionPipeline,
    source: PIL.Image.Image,
    settings: GenerationSettings,
    progress: ProgressCallback | None = None,
) -> GenerationResult:
    """`settings.num_samples` angiograms of one phase; sample k starts from noise seeded `seed + k`."""
    seeds = [settings.seed + index for index in range(settings.num_samples)]
    images = _sample(
        pipe, source, settings, [settings.disease] * len(seeds), [settings.phase] * len(seeds), seeds, progress,
        task="Generating",
    )
    angiograms = [
        Angiogram(add_synthetic_mark(image), provenance(pipe, settings, seed=seed))
        for image, seed in zip(images, seeds)
    ]
    return GenerationResult(source=source, angiograms=angiograms)


def phase_name(phase: str | float) -> str:
    """A phase for file names: its name, or e.g. `45s` for a number of seconds."""
    return phase if isinstance(phase, str) else f"{phase:g}s"


def phase_series(
    pipe: FFADiffusionPipeline,
    source: PIL.Image.Image,
    settings: GenerationSettings,
    phases: Sequence[str | float],
    seed: int | None = None,
    captions: bool = False,
    visible_mark: bool = True,
    progress: ProgressCallback | None = None,
) -> list[Angiogram]:
    """The same eye at several phases, all from the noise of one seed (default `settings.seed`): only the dye moves.

    `captions` writes the phase and time on each image; `visible_mark=False` (command line only) leaves out the
    visible mark, the metadata still says the image is synthetic.
    """
    seed = settings.seed if seed is None else seed
    images = _sample(
        pipe, source, settings, [settings.disease] * len(phases), phases, [seed] * len(phases), progress,
        task="Dye transit",
    )
    series = []
    for phase, image in zip(phases, images):
        if captions:
            image = add_caption(image, phase_caption(phase, pipe.phase_to_seconds(phase)))
        if visible_mark:
            image = add_synthetic_mark(image)
        series.append(Angiogram(image, provenance(pipe, settings, phase=phase, seed=seed)))
    return series


@dataclass
class DyeTransit:
    """One frame per phase (captioned and marked) and the looping GIF of them."""

    frames: list[Angiogram]
    gif: bytes = field(repr=False)


def dye_transit_animation(
    pipe: FFADiffusionPipeline,
    source: PIL.Image.Image,
    settings: GenerationSettings,
    phases: Sequence[str | float] | None = None,
    progress: ProgressCallback | None = None,
) -> DyeTransit:
    """Frames from early to late phase (all the model's named phases by default), all from the same noise."""
    phases = sorted(pipe.phases if phases is None else phases, key=pipe.phase_to_seconds)
    frames = phase_series(pipe, source, settings, phases, captions=True, progress=progress)
    return DyeTransit(frames=frames, gif=animated_gif([frame.image for frame in frames], frames[0].metadata))


def animated_gif(frames: Sequence[PIL.Image.Image], metadata: dict[str, str]) -> bytes:
    """A looping GIF; its comment records the provenance (GIF has no text chunks)."""
    durations = [FRAME_MILLISECONDS] * (len(frames) - 1) + [2 * FRAME_MILLISECONDS]
    buffer = io.BytesIO()
    frames[0].save(
        buffer, format="GIF", save_all=True, append_images=list(frames[1:]), duration=durations, loop=0,
        comment=metadata["parameters"].encode(),
    )
    return buffer.getvalue()


def compare_diseases(
    pipe: FFADiffusionPipeline,
    source: PIL.Image.Image,
    settings: GenerationSettings,
    diseases: Sequence[str],
    progress: ProgressCallback | None = None,
) -> list[Angiogram]:
    """The same eye and noise under each disease (captioned), so only what the disease changes differs."""
    unknown = [disease for disease in diseases if disease not in pipe.diseases]
    if unknown or not diseases:
        raise InvalidInputError(f"Unknown disease(s) {unknown or list(diseases)}; this model knows {pipe.diseases}")
    images = _sample(
        pipe, source, settings, diseases, [settings.phase] * len(diseases), [settings.seed] * len(diseases), progress,
        task="Comparing diseases",
    )
    return [
        Angiogram(add_synthetic_mark(add_caption(image, display_label(disease))),
                  provenance(pipe, settings, disease=disease))
        for disease, image in zip(diseases, images)
    ]


# -------------------------------------------------------------------------------------------- uncertainty
@dataclass
class UncertaintyMap:
    """Per-pixel spread of several samples, and an overlay of it (colour) on their mean (grey)."""

    mean: np.ndarray  # HxW float in [0, 1]
    spread: np.ndarray  # HxW per-pixel standard deviation
    overlay: PIL.Image.Image  # RGB

    def summary(self) -> str:
        return (
            f"Per-pixel spread (standard deviation of grey level, 0-1): mean {self.spread.mean():.3f}, "
            f"95th percentile {np.percentile(self.spread, 95):.3f}, max {self.spread.max():.3f}. "
            f"Full colour = {UNCERTAINTY_FULL_SCALE:g} or more."
        )


def uncertainty_map(samples: Sequence[PIL.Image.Image | np.ndarray]) -> UncertaintyMap:
    """Where the samples disagree: their per-pixel standard deviation, coloured (inferno) over their mean.

    The colour scale is fixed (`UNCERTAINTY_FULL_SCALE`) so that maps of different images compare; the overlay's
    opacity follows the spread, so confident areas show the plain grey mean.
    """
    if len(samples) < 2:
        raise InvalidInputError(f"An uncertainty map needs at least 2 samples, got {len(samples)}")
    stack = np.stack([np.asarray(sample.convert("L") if isinstance(sample, PIL.Image.Image) else sample, np.float32)
                      for sample in samples])
    if stack.ndim == 4:
        stack = stack.mean(axis=-1)
    if stack.max() > 1.0:
        stack = stack / 255.0
    mean, spread = stack.mean(axis=0), stack.std(axis=0)
    strength = np.clip(spread / UNCERTAINTY_FULL_SCALE, 0.0, 1.0)
    heat = cv2.applyColorMap(np.round(strength * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1] / 255.0
    grey = np.repeat(mean[..., None], 3, axis=2)
    alpha = np.clip(0.25 + strength, 0.0, 0.85)[..., None] * (strength[..., None] > 0.02)
    overlay = (1 - alpha) * grey + alpha * heat
    return UncertaintyMap(mean, spread, PIL.Image.fromarray(np.round(overlay * 255).astype(np.uint8)))


def estimate_uncertainty(
    pipe: FFADiffusionPipeline,
    source: PIL.Image.Image,
    settings: GenerationSettings,
    progress: ProgressCallback | None = None,
) -> tuple[UncertaintyMap, Angiogram]:
    """`settings.num_samples` (>= 2) samples -> their uncertainty map and the marked overlay with provenance."""
    if settings.num_samples < 2:
        raise InvalidInputError(f"An uncertainty map needs at least 2 samples, got {settings.num_samples}")
    seeds = [settings.seed + index for index in range(settings.num_samples)]
    images = _sample(
        pipe, source, settings, [settings.disease] * len(seeds), [settings.phase] * len(seeds), seeds, progress,
        task="Sampling for uncertainty",
    )
    result = uncertainty_map(images)
    metadata = provenance(pipe, settings, seed=f"{seeds[0]}-{seeds[-1]}", content="per-pixel spread over samples")
    return result, Angiogram(add_synthetic_mark(result.overlay), metadata)


# -------------------------------------------------------------------------------------- examples, legend
@dataclass(frozen=True)
class Example:
    path: Path
    modality: str
    disease: str


def find_examples(directory: str | os.PathLike, modalities: Sequence[str], diseases: Sequence[str]) -> list[Example]:
    """Example images named `<disease>_<modality>.png` that this model can take, in vocabulary order, after any
    other image, taken as a colour fundus photo of unknown disease (e.g. scikit-image's retina)."""
    labelled = {f"{disease}_{modality}": (disease, modality) for disease in diseases for modality in modalities}
    examples = []
    for path in sorted(Path(directory).glob("*.png")):
        if path.stem in labelled:
            disease, modality = labelled[path.stem]
            examples.append(Example(path, modality=modality, disease=disease))
        elif "cfp" in modalities and "unknown" in diseases:
            examples.append(Example(path, modality="cfp", disease="unknown"))

    def vocabulary_order(example: Example) -> tuple[int, int]:
        return diseases.index(example.disease), modalities.index(example.modality)

    return sorted(examples, key=vocabulary_order)


LEGEND_MARKDOWN = """\
### Reading a fluorescein angiogram
Fluorescein is injected into an arm vein and photographed as it passes through the eye's vessels.

**Bright = hyperfluorescence** (more dye than normal, or less in front of it):
- **Leakage**: grows larger and fuzzier from early to late phase (new vessels, choroidal neovascularisation,
  macular oedema).
- **Staining**: fixed shape and size, brightens late (scars, drusen, vessel walls).
- **Pooling**: dye fills a space with sharp edges (pigment epithelial detachment).
- **Window defect**: bright early, fades with the choroid, shape fixed (atrophy lets the choroid show through).
- **Microaneurysms**: pin-point bright dots, typical of diabetic retinopathy.

**Dark = hypofluorescence** (less dye, or something in front of it):
- **Blocked fluorescence**: blood, exudate or pigment hides the dye beneath it.
- **Non-perfusion**: capillaries that never fill: dark, featureless areas (diabetic retinopathy, vein occlusion).

**Phases** (time after injection): choroidal flush at about 10 s, arteries 12 s, veins fill along their walls
15-30 s, recirculation 2-4 min, late about 10 min: only leakage, staining and pooling stay bright.
"""

DISEASE_NOTES = {
    "normal": "All vessels bright, a dark avascular zone at the fovea, a bright disc; late, everything fades evenly.",
    "diabetic_retinopathy": "Many bright microaneurysms; dark haemorrhages and non-perfused areas; new vessels "
    "leak intensely late; macular oedema leaks late in a petal pattern.",
    "amd": "Drusen bright early; atrophy as a window defect; neovascularisation lacy bright early and leaking "
    "late; blood dark; detachments pool.",
    "vein_occlusion": "Delayed venous filling; dark haemorrhages in the vein's territory; vein-wall staining and "
    "leakage; non-perfusion; collateral vessels.",
    "glaucoma": "The retina is essentially normal; look for filling defects at the poles of the optic disc.",
}


def legend_markdown(disease: str | None = None) -> str:
    """The educators' legend, with what to look for in `disease` when there is a note for it."""
    note = DISEASE_NOTES.get(disease or "")
    if note is None:
        return LEGEND_MARKDOWN
    return f"{LEGEND_MARKDOWN}\n**{display_label(disease)}**: {note}\n"
