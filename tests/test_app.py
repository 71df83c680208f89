"""The Gradio app end to end: launched on 127.0.0.1 around the tiny pipeline and driven by gradio_client.

The tiny pipeline is untrained (random output), so these tests check the plumbing: well-formed files, marks and
metadata, clear errors, a queue that stays bounded, not what the angiograms look like.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import PIL.Image
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError

import app
from ffa_pipeline import demo
from ffa_pipeline.model_config import build_pipeline, load_model_config

STEPS = 2
EXAMPLE = app.EXAMPLES_DIR / "amd_cfp.png"
SETTINGS = (STEPS, 1.5, 1.5)  # steps, image guidance, label guidance
pytestmark = [  # Gradio's queue statistics use pandas options that pandas 3 deprecates
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def launch(blocks) -> str:
    """Serve `blocks` on loopback (a free port from 7860 up) without blocking; return its URL."""
    _, url, _ = blocks.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.LAUNCH_OPTIONS)
    return url


@pytest.fixture(scope="module")
def untrained_pipe():
    pipe = build_pipeline("tiny", seed=0)
    pipe.is_untrained = True
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def client(untrained_pipe):
    blocks = app.build_demo(untrained_pipe)
    url = launch(blocks)
    yield Client(url, verbose=False)
    blocks.close()


def generate(client: Client, image: str | Path = EXAMPLE, seed: int = 0, num_samples: int = 1, **overrides):
    inputs = {"modality": "cfp", "disease": "amd", "phase": "late", **overrides}
    return client.predict(
        handle_file(str(image)), inputs["modality"], inputs["disease"], inputs["phase"], *SETTINGS, seed, num_samples,
        api_name="/generate",
    )


def assert_synthetic_png(path: str, **expected: str) -> PIL.Image.Image:
    image = PIL.Image.open(path)
    assert image.format == "PNG"
    assert image.text["synthetic"] == "true"
    assert demo.SYNTHETIC_MARK in image.text["Description"]
    assert image.text["model_id"] == "untrained-tiny (random weights)"
    for key, value in expected.items():
        assert image.text[key] == value, key
    return image


def test_selectors_come_from_the_pipeline_vocabulary():
    config = load_model_config("tiny")
    pipe = build_pipeline({**config, "modalities": ["cfp", "oct"], "diseases": ["unknown", "macular_hole"]})
    blocks = app.build_demo(pipe)
    dropdowns = {block.label: [value for _, value in block.choices] for block in blocks.blocks.values()
                 if block.get_block_name() == "dropdown"}
    assert dropdowns["Input modality"] == ["cfp", "oct"]
    assert dropdowns["Disease"] == ["unknown", "macular_hole"]
    assert set(dropdowns["Angiogram phase"]) == set(pipe.phases)
    markdown = " ".join(str(block.value) for block in blocks.blocks.values() if block.get_block_name() == "markdown")
    assert demo.UNTRAINED_WARNING not in markdown  # a checkpoint, not the untrained fallback


def test_untrained_model_shows_a_banner(untrained_pipe):
    blocks = app.build_demo(untrained_pipe)
    banners = [block for block in blocks.blocks.values() if getattr(block, "elem_id", None) == "untrained-banner"]
    assert len(banners) == 1 and demo.UNTRAINED_WARNING in banners[0].value


def test_generate_returns_marked_pngs_with_provenance(client):
    angiogram, (before, after), gallery, info = generate(client, seed=5, num_samples=2)
    image = assert_synthetic_png(angiogram, seed="5", disease="amd", modality="cfp", phase="late",
                                 num_inference_steps=str(STEPS))
    source = PIL.Image.open(EXAMPLE)
    assert image.mode == "L" and image.size == source.size
    assert PIL.Image.open(before).size == source.size and after == angiogram
    assert [entry["caption"] for entry in gallery] == ["seed 5", "seed 6"]
    assert_synthetic_png(gallery[1]["image"], seed="6")
    corner = np.asarray(image)[-8:, -40:]  # the mark: white text on a black box
    assert corner.min() == 0 and corner.max() >= 200
    assert "seed 5" in info


def test_each_sample_is_reproduced_by_its_own_seed(client):
    _, _, gallery, _ = generate(client, seed=5, num_samples=2)
    single, *_ = generate(client, seed=6)
    second_sample = np.asarray(PIL.Image.open(gallery[1]["image"]), np.float32)
    assert np.abs(second_sample - np.asarray(PIL.Image.open(single), np.float32)).mean() < 1.0


def test_a_modality_drawn_at_a_larger_side_keeps_its_seeds():
    pipe = build_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    larger = pipe.default_resolution + pipe.size_multiple
    pipe.register_to_config(modality_resolutions={"uwf_slo": larger})
    source = PIL.Image.open(EXAMPLE).convert("RGB")
    settings = demo.GenerationSettings("uwf_slo", num_inference_steps=1, seed=3, num_samples=2).checked(pipe)
    both = demo.generate_angiograms(pipe, source, settings).angiograms
    alone = demo.generate_angiograms(pipe, source, demo.GenerationSettings(
        "uwf_slo", num_inference_steps=1, seed=4).checked(pipe)).angiograms
    assert demo.initial_noise(pipe, [3], "uwf_slo").shape[-1] == larger // pipe.vae_scale_factor
    assert both[1].image.size == source.size
    assert np.abs(np.asarray(both[1].image, np.float32) - np.asarray(alone[0].image, np.float32)).mean() < 1.0


def test_animation_is_a_gif_with_one_frame_per_phase(client, untrained_pipe):
    path = client.predict(handle_file(str(EXAMPLE)), "oct", "normal", *SETTINGS, 3, api_name="/animate")
    gif = PIL.Image.open(path)
    assert gif.format == "GIF" and gif.n_frames == len(untrained_pipe.phases)
    assert gif.size == PIL.Image.open(EXAMPLE).size
    assert b'"synthetic": "true"' in gif.info["comment"]


def test_uncertainty_map_is_a_marked_colour_overlay(client):
    path, summary = client.predict(handle_file(str(EXAMPLE)), "cfp", "amd", "late", *SETTINGS, 0, 3,
                                   api_name="/uncertainty")
    overlay = assert_synthetic_png(path, seed="0-2")
    assert overlay.mode == "RGB" and overlay.size == PIL.Image.open(EXAMPLE).size
    assert "spread" in summary


def test_compare_shows_the_same_eye_under_two_diseases(client):
    first, second = client.predict(handle_file(str(EXAMPLE)), "cfp", "amd", "normal", "late", *SETTINGS, 0,
                                   api_name="/compare")
    assert_synthetic_png(first, disease="amd", seed="0")
    assert_synthetic_png(second, disease="normal", seed="0")


def test_settings_errors_name_the_bad_value_and_the_allowed_ones(untrained_pipe):
    with pytest.raises(demo.InvalidInputError, match=r"Unknown disease 'flu'; this model knows \['unknown'"):
        demo.GenerationSettings("cfp", disease="flu").checked(untrained_pipe)
    with pytest.raises(demo.InvalidInputError, match=r"Steps must be a whole number in \[1, 1000\], got 2.5"):
        demo.GenerationSettings("cfp", num_inference_steps=2.5).checked(untrained_pipe)
    assert demo.GenerationSettings("cfp", num_inference_steps=4.0).checked(untrained_pipe).num_inference_steps == 4
    with pytest.raises(demo.InvalidInputError, match="at least 2 samples"):
        demo.uncertainty_map([np.zeros((4, 4))])


def test_uncertainty_map_is_the_per_pixel_spread():
    flat, bright = np.full((40, 40), 0.2), np.full((40, 40), 0.2)
    bright[:20] = 0.8
    result = demo.uncertainty_map([flat, bright])
    assert np.allclose(result.spread[20:], 0) and np.allclose(result.spread[:20], 0.3)
    overlay = np.asarray(result.overlay, np.int16)
    assert (overlay[30, 30] == overlay[30, 30, 0]).all()  # confident: plain grey
    assert overlay[5, 5, 0] - overlay[5, 5, 2] > 50  # unsure: warm colour


def test_mark_and_metadata_survive_a_png_round_trip(untrained_pipe):
    image = demo.add_synthetic_mark(PIL.Image.new("L", (300, 200), 128))
    metadata = demo.provenance(untrained_pipe, demo.GenerationSettings("cfp"), seed=7)
    reread = PIL.Image.open(io.BytesIO(demo.png_with_provenance(image, metadata)))
    assert reread.text == metadata and reread.text["seed"] == "7" and reread.text["phase_seconds"] == "600.0"
    assert np.array_equal(np.asarray(reread), np.asarray(image))  # lossless
    changed = np.asarray(image) != 128
    assert changed[-20:, -200:].any() and not changed[:150].any()  # small, in the bottom-right corner


def _write_bad_uploads(directory: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the error must contain)."""
    not_image = directory / "notes.png"
    not_image.write_text("this is not an image")
    truncated = directory / "truncated.png"
    truncated.write_bytes(EXAMPLE.read_bytes()[:5000])
    small = directory / "small.png"
    PIL.Image.new("RGB", (16, 16)).save(small)
    huge = directory / "huge.png"
    PIL.Image.new("L", (6000, 5000)).save(huge)  # 30 MP in a small file
    return {
        "not an image": (not_image, "not an image"),
        "truncated": (truncated, "truncated"),
        "too small": (small, "16 x 16"),
        "too many pixels": (huge, "over the limit"),
    }


def test_bad_uploads_get_a_clear_error_and_the_app_keeps_serving(client, tmp_path):
    for name, (path, phrase) in _write_bad_uploads(tmp_path).items():
        with pytest.raises(AppError, match=phrase) as error:
            generate(client, image=path)
        assert "Traceback" not in str(error.value), name
        angiogram, *_ = generate(client)  # the next request is served
        assert Path(angiogram).is_file()


def test_bad_settings_get_a_clear_error(client):
    with pytest.raises(AppError, match="1000 is greater than maximum value 100"):
        client.predict(handle_file(str(EXAMPLE)), "cfp", "amd", "late", 1000, 1.5, 1.5, 0, 1, api_name="/generate")
    with pytest.raises(AppError, match="1 is less than minimum value 2"):
        client.predict(handle_file(str(EXAMPLE)), "cfp", "amd", "late", *SETTINGS, 0, 1, api_name="/uncertainty")
    with pytest.raises(AppError, match="noon is not in the list of choices"):
        client.predict(handle_file(str(EXAMPLE)), "cfp", "amd", "noon", *SETTINGS, 0, 1, api_name="/generate")


def test_uploads_over_the_size_limit_are_refused(client, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(21 * 2**20))
    response = httpx.post(f"{client.src}gradio_api/upload", files={"files": big.open("rb")}, timeout=60)
    assert response.status_code == 413
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        generate(client, image=big)


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_16_concurrent_requests_finish_or_get_a_clean_queue_full_answer(untrained_pipe):
    blocks = app.build_demo(untrained_pipe, max_queue_size=4)
    client = Client(launch(blocks), verbose=False)
    peak_rss, done = [_rss_bytes()], threading.Event()

    def watch_memory():
        while not done.wait(0.05):
            peak_rss.append(_rss_bytes())

    def request(seed: int) -> str:
        try:
            client.submit(handle_file(str(EXAMPLE)), "cfp", "amd", "late", *SETTINGS, seed, 1,
                          api_name="/generate").result(timeout=120)
            return "finished"
        except QueueError as error:
            assert "Queue is full" in str(error)
            return "refused"

    watcher = threading.Thread(target=watch_memory)
    watcher.start()
    start = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(request, range(16), timeout=180))
        assert outcomes.count("finished") >= 1
        assert outcomes.count("finished") + outcomes.count("refused") == 16
        assert time.monotonic() - start < 180
        assert max(peak_rss) - peak_rss[0] < 1024**3, "memory grew by more than 1 GiB under load"
        angiogram, *_ = generate(client)  # still serving
        assert Path(angiogram).is_file()
    finally:
        done.set()
        watcher.join()
        blocks.close()
