"""Gradio demo (and Hugging Face Space): a retinal image -> a synthetic fluorescein angiogram.

UI only: the work is done by `ffa_pipeline.demo`. `python app.py` loads the model once ($FFA_MODEL_ID, else the
embedded default), on the GPU when there is one, and serves on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT.
Tests build the same page around a tiny pipeline with `build_demo(pipe)`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

import gradio as gr
import spaces
import torch

from ffa_pipeline import FFADiffusionPipeline, load_default_pipeline
from ffa_pipeline import demo as ffa
from ffa_pipeline.vocab import display_label

EXAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "examples"
MAX_FILE_SIZE = "20mb"  # uploads over this are refused before they reach the app
MAX_UPLOAD_PIXELS = 25_000_000  # a 5000 x 5000 photo; more is refused with a clear message
MAX_STEPS = 100
MAX_SAMPLES = 8
CONCURRENCY_LIMIT = 1  # one GPU and one pipeline (its scheduler holds per-call state): one generation at a time
MAX_QUEUE_SIZE = 16  # waiting requests beyond this get a clean "queue is full" answer
GPU_GROUP = "gpu"  # every generating event shares this concurrency group
PROGRESS = gr.Progress()  # marks a handler's progress argument; Gradio passes a fresh tracker to every call

CSS = """
#untrained-banner {background: #fff3cd; border: 2px solid #d39e00; border-radius: 8px; padding: 4px 12px;}
#untrained-banner p {color: #5c4400; font-size: 1.1em; margin: 4px 0;}
#legend {font-size: 0.92em;}
"""


def _clear_error_for_non_images(image: gr.Image) -> gr.Image:
    """Uploads that are not images at all fail inside Gradio's own preprocessing, with a message about Gradio's
    internals: replace it by one for the visitor. (Wrapping the instance: a `gr.Image` subclass would make Gradio
    write an `app.pyi` stub next to this file.)"""
    preprocess = image.preprocess

    def preprocess_or_explain(payload):
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception as error:
            raise gr.Error(
                f"Could not read the upload: it is not an image ({type(error).__name__}). "
                "Upload a PNG, JPEG, TIFF, BMP or WebP retinal image."
            ) from error

    image.preprocess = preprocess_or_explain
    return image


def load_pipeline() -> FFADiffusionPipeline:
    """The model named by $FFA_MODEL_ID (Hub id or folder), else the embedded default; on the GPU if any."""
    pipe = load_default_pipeline()
    pipe.to("cuda" if torch.cuda.is_available() else "cpu")
    pipe.set_progress_bar_config(disable=True)  # progress goes to the page
    return pipe


def _shown_as_errors(function):
    """Bad uploads and settings become a visible message (gr.Error), never a stack trace."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ffa.InvalidInputError as error:
            raise gr.Error(str(error)) from error

    return wrapper


def _choices(names) -> list[tuple[str, str]]:
    return [(display_label(name), name) for name in names]


def _default(names, preferred: str) -> str:
    return preferred if preferred in names else names[0]


def build_demo(
    pipe: FFADiffusionPipeline,
    max_queue_size: int = MAX_QUEUE_SIZE,
    concurrency_limit: int = CONCURRENCY_LIMIT,
) -> gr.Blocks:
    """The page around `pipe`; selector choices come from the pipeline's own vocabulary."""
    phases = sorted(pipe.phases, key=pipe.phases.get)
    examples = ffa.find_examples(EXAMPLES_DIR, pipe.modalities, pipe.diseases)

    def save(data: bytes, name: str) -> str:
        """Write an output file into Gradio's cache (served as is, cleaned with the cache).

        One folder per content hash, written atomically: concurrent requests with the same output (the same input
        image) never truncate a file that is being downloaded.
        """
        folder = Path(blocks.GRADIO_CACHE) / hashlib.sha256(data).hexdigest()
        path = folder / name
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".", delete=False) as staging:
                staging.write(data)
            os.replace(staging.name, path)
        return str(path)

    def prepare(image, modality, disease, phase, steps, image_guidance, label_guidance, seed, num_samples):
        source = ffa.load_retinal_image(image, pipe, max_pixels=MAX_UPLOAD_PIXELS)
        settings = ffa.GenerationSettings(
            modality, disease, phase, steps, image_guidance, label_guidance, seed, num_samples
        ).checked(pipe, max_steps=MAX_STEPS, max_samples=MAX_SAMPLES)
        return source, settings

    @spaces.GPU(duration=60)
    @_shown_as_errors
    def generate(image, modality, disease, phase, steps, image_guidance, label_guidance, seed, num_samples,
                 progress=PROGRESS):
        source, settings = prepare(image, modality, disease, phase, steps, image_guidance, label_guidance, seed,
                                   num_samples)
        result = ffa.generate_angiograms(pipe, source, settings, progress=progress)
        stem = f"ffa_{settings.disease}_{ffa.phase_name(settings.phase)}"
        paths = [save(angiogram.png_bytes(), f"{stem}_seed{angiogram.metadata['seed']}.png")
                 for angiogram in result.angiograms]
        source_path = save(ffa.png_with_provenance(source, {}), "input.png")
        gallery = [(path, f"seed {angiogram.metadata['seed']}") for path, angiogram in zip(paths, result.angiograms)]
        seconds = pipe.phase_to_seconds(settings.phase)
        info = (
            f"**{display_label(settings.disease)}**, {ffa.phase_caption(settings.phase, seconds)}"
            f" - seed {settings.seed}, {settings.num_inference_steps} steps, model `{ffa.model_id(pipe)}`. "
            "Settings and seed are stored in each PNG file."
        )
        return paths[0], (source_path, paths[0]), gallery, info

    @spaces.GPU(duration=120)
    @_shown_as_errors
    def animate(image, modality, disease, steps, image_guidance, label_guidance, seed, progress=PROGRESS):
        source, settings = prepare(image, modality, disease, phases[-1], steps, image_guidance, label_guidance, seed,
                                   1)
        transit = ffa.dye_transit_animation(pipe, source, settings, progress=progress)
        return save(transit.gif, f"ffa_dye_transit_{settings.disease}_seed{settings.seed}.gif")

    @spaces.GPU(duration=120)
    @_shown_as_errors
    def uncertainty(image, modality, disease, phase, steps, image_guidance, label_guidance, seed, num_samples,
                    progress=PROGRESS):
        source, settings = prepare(image, modality, disease, phase, steps, image_guidance, label_guidance, seed,
                                   num_samples)
        result, overlay = ffa.estimate_uncertainty(pipe, source, settings, progress=progress)
        path = save(overlay.png_bytes(), f"ffa_uncertainty_{settings.disease}_seed{settings.seed}.png")
        return path, result.summary()

    @spaces.GPU(duration=60)
    @_shown_as_errors
    def compare(image, modality, disease, other_disease, phase, steps, image_guidance, label_guidance, seed,
                progress=PROGRESS):
        source, settings = prepare(image, modality, disease, phase, steps, image_guidance, label_guidance, seed, 1)
        first, second = ffa.compare_diseases(pipe, source, settings, [disease, other_disease], progress=progress)
        return (
            save(first.png_bytes(), f"ffa_{disease}_seed{settings.seed}.png"),
            save(second.png_bytes(), f"ffa_{other_disease}_seed{settings.seed}.png"),
        )

    with gr.Blocks(title="FFA diffusion: synthetic fluorescein angiograms", delete_cache=(3600, 3600)) as blocks:
        gr.Markdown(
            "# Synthetic fluorescein angiograms\n"
            "Upload a retinal image (colour fundus photo, OCT en-face or ultra-widefield SLO), or pick an example "
            "below, and see the fluorescein angiogram a diffusion model imagines for it. **Research and teaching "
            f"demo: every output is marked *{ffa.SYNTHETIC_MARK}*.**"
        )
        if getattr(pipe, "is_untrained", False):
            gr.Markdown(f"**Warning: {ffa.UNTRAINED_WARNING}.** The trained model is not installed yet.",
                        elem_id="untrained-banner")
        if getattr(pipe, "is_embedded_default", False):
            gr.Markdown(f"**Note: {ffa.EMBEDDED_DEFAULT_NOTE}.**", elem_id="default-model-note")
        with gr.Row():
            with gr.Column(scale=4):
                image = _clear_error_for_non_images(
                    gr.Image(label="Retinal image", type="filepath", format="png", image_mode=None,
                             sources=["upload", "clipboard"], height=320, elem_id="input-image")
                )
                modality = gr.Dropdown(_choices(pipe.modalities), value=_default(pipe.modalities, "cfp"),
                                       label="Input modality")
                disease = gr.Dropdown(_choices(pipe.diseases), value=_default(pipe.diseases, "unknown"),
                                      label="Disease")
                phase = gr.Dropdown(_choices(phases), value=phases[-1], label="Angiogram phase")
                with gr.Accordion("Advanced", open=False):
                    default_steps, default_image_guidance, default_label_guidance = pipe.sampling_settings()
                    steps = gr.Slider(1, MAX_STEPS, value=default_steps, step=1, label="Denoising steps")
                    image_guidance = gr.Slider(0, 5, value=default_image_guidance, step=0.1, label="Image guidance",
                                               info="How closely to follow the input image")
                    label_guidance = gr.Slider(0, 10, value=default_label_guidance, step=0.1, label="Label guidance",
                                               info="How strongly to show the disease and phase")
                    seed = gr.Number(0, precision=0, minimum=0, maximum=ffa.MAX_SEED, label="Seed")
                    num_samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Number of samples")
                generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=5):
                with gr.Tab("Angiogram"):
                    angiogram = gr.Image(label="Synthetic angiogram (PNG)", format="png", interactive=False,
                                         height=360, elem_id="angiogram")
                    before_after = gr.ImageSlider(label="Before / after", format="png", type="filepath",
                                                  max_height=360)
                    samples = gr.Gallery(label="All samples", format="png", columns=4, height=220, preview=False,
                                         object_fit="contain", visible=False)
                    info = gr.Markdown(label="Details")
                with gr.Tab("Dye transit"):
                    gr.Markdown("The same noise for every phase, so only the dye moves.")
                    animate_button = gr.Button("Animate the dye transit")
                    transit = gr.Image(label="Dye transit (GIF)", interactive=False, elem_id="transit")
                with gr.Tab("Uncertainty"):
                    gr.Markdown("Several samples of the same image: colour shows where they disagree.")
                    uncertainty_samples = gr.Slider(2, MAX_SAMPLES, value=4, step=1, label="Samples")
                    uncertainty_button = gr.Button("Estimate uncertainty")
                    uncertainty_overlay = gr.Image(label="Uncertainty over the mean angiogram", format="png",
                                                   interactive=False)
                    uncertainty_summary = gr.Markdown(label="Spread")
                with gr.Tab("Other disease"):
                    gr.Markdown("Same eye, same noise, another disease: only what the disease changes differs.")
                    other_disease = gr.Dropdown(_choices(pipe.diseases), value=_default(pipe.diseases, "normal"),
                                                label="Compare with")
                    compare_button = gr.Button("Compare")
                    comparison = gr.ImageSlider(label="Selected disease / other disease", format="png", max_height=360,
                                                type="filepath")
            with gr.Column(scale=3):
                legend = gr.Markdown(ffa.legend_markdown(disease.value), elem_id="legend")
        if examples:
            gr.Examples(
                [[str(example.path), example.modality, example.disease] for example in examples],
                inputs=[image, modality, disease],
                examples_per_page=6,
                cache_examples=False,
                label="Examples: phantom eyes of each disease and modality, and scikit-image's retina (CC0)",
            )

        settings = [steps, image_guidance, label_guidance, seed]
        gpu_event = {"concurrency_limit": concurrency_limit, "concurrency_id": GPU_GROUP}
        generate_button.click(generate, [image, modality, disease, phase, *settings, num_samples],
                              [angiogram, before_after, samples, info], api_name="generate", **gpu_event)
        animate_button.click(animate, [image, modality, disease, *settings], transit, api_name="animate",
                             **gpu_event)
        uncertainty_button.click(uncertainty, [image, modality, disease, phase, *settings, uncertainty_samples],
                                 [uncertainty_overlay, uncertainty_summary], api_name="uncertainty", **gpu_event)
        compare_button.click(compare, [image, modality, disease, other_disease, phase, *settings], comparison,
                             api_name="compare", **gpu_event)
        disease.change(ffa.legend_markdown, disease, legend, api_visibility="private", queue=False)
        num_samples.change(lambda count: gr.Gallery(visible=count > 1), num_samples, samples, api_visibility="private",
                           queue=False)
    return blocks.queue(max_size=max_queue_size, default_concurrency_limit=concurrency_limit)


LAUNCH_OPTIONS = {"max_file_size": MAX_FILE_SIZE, "css": CSS, "theme": gr.themes.Soft(), "show_error": False}

if __name__ == "__main__":
    build_demo(load_pipeline()).launch(**LAUNCH_OPTIONS)
