"""Save / load both ways (package installed, and trust_remote_code without it), dtype, safetensors only."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import seeded

from ffa_pipeline import FFADiffusionPipeline

ROOT = Path(__file__).resolve().parent.parent
CALL = {"num_inference_steps": 2, "output_type": "np", "modality": "oct", "disease": "amd", "phase": "early"}


@pytest.fixture(scope="module")
def saved(tiny_pipe, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "ffa-tiny"
    tiny_pipe.save_pretrained(path)
    return path


def reference_image() -> np.ndarray:
    return (np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)


def test_saved_layout_is_the_hub_layout(saved):
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "FFADiffusionPipeline"]
    assert index["condition_encoder"] == ["condition_encoder", "CrossModalConditionEncoder"]
    assert index["disease_embedding"] == ["disease_embedding", "DiseaseEmbedding"]
    assert (saved / "pipeline.py").is_file()
    assert (saved / "condition_encoder" / "condition_encoder.py").is_file()
    assert (saved / "disease_embedding" / "disease_embedding.py").is_file()
    weights = [p.name for p in saved.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".safetensors"}]
    assert weights and all(name.endswith(".safetensors") for name in weights)


def test_pickle_serialisation_is_refused(tiny_pipe, tmp_path):
    with pytest.raises(ValueError, match="safetensors"):
        tiny_pipe.save_pretrained(tmp_path, safe_serialization=False)


def test_round_trip_with_the_package(tiny_pipe, saved):
    loaded = FFADiffusionPipeline.from_pretrained(saved)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is FFADiffusionPipeline
    assert loaded.diseases == tiny_pipe.diseases and loaded.phases == tiny_pipe.phases
    expected = tiny_pipe(reference_image(), generator=seeded(1), **CALL).images
    actual = loaded(reference_image(), generator=seeded(1), **CALL).images
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_loaded_pipeline_knows_where_it_came_from_but_does_not_save_it(saved, tmp_path):
    loaded = FFADiffusionPipeline.from_pretrained(saved)
    assert loaded.name_or_path == str(saved)  # the app's provenance names the model
    loaded.save_pretrained(tmp_path / "again")
    assert "_name_or_path" not in json.loads((tmp_path / "again" / "model_index.json").read_text())


def test_dtype_and_device(saved):
    loaded = FFADiffusionPipeline.from_pretrained(saved, dtype=torch.bfloat16).to("cpu")
    loaded.set_progress_bar_config(disable=True)
    assert {p.dtype for p in loaded.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in loaded.condition_encoder.parameters()} == {torch.bfloat16}
    out = loaded(reference_image(), generator=seeded(1), **CALL).images
    assert np.isfinite(out).all()


def test_missing_model_index_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="model_index.json"):
        FFADiffusionPipeline.from_pretrained(tmp_path)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["ffa_pipeline"] = None  # the package must not be importable here
    import numpy as np, torch
    from diffusers import DiffusionPipeline
    saved, resaved, expected_path = sys.argv[1:4]
    image = (np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)
    call = dict(num_inference_steps=2, output_type="np", modality="oct", disease="amd", phase="early")
    pipe = DiffusionPipeline.from_pretrained(saved, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "FFADiffusionPipeline" and "ffa_pipeline" not in type(pipe).__module__
    expected = np.load(expected_path)
    seeded = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    np.testing.assert_allclose(pipe(image, generator=seeded(), **call).images, expected, atol=1e-5)
    pipe.save_pretrained(resaved)
    again = DiffusionPipeline.from_pretrained(resaved, trust_remote_code=True)
    again.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(again(image, generator=seeded(), **call).images, expected, atol=1e-5)
    print("REMOTE-OK")
    """
)


def check_without_the_package(saved: Path, expected: np.ndarray, tmp_path: Path) -> None:
    """REMOTE_SCRIPT in a process that cannot import ffa_pipeline: load, call, save again, load again."""
    np.save(tmp_path / "expected.npy", expected)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(saved), str(tmp_path / "resaved"), str(tmp_path / "expected.npy")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert "REMOTE-OK" in result.stdout, result.stderr[-3000:]


def test_round_trip_without_the_package(tiny_pipe, saved, tmp_path):
    expected = tiny_pipe(reference_image(), generator=seeded(1), **CALL).images
    check_without_the_package(saved, expected, tmp_path)
    resaved_index = json.loads((tmp_path / "resaved" / "model_index.json").read_text())
    assert resaved_index["_class_name"] == ["pipeline", "FFADiffusionPipeline"]
    # the re-saved folder also loads with the package, in this process
    reloaded = FFADiffusionPipeline.from_pretrained(tmp_path / "resaved")
    reloaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(reloaded(reference_image(), generator=seeded(1), **CALL).images, expected, atol=1e-5)


def test_a_light_decoder_vae_travels_with_the_checkpoint_both_ways(saved, tmp_path):
    """A pipeline whose VAE is a LightDecoderAutoencoderKL saves its module beside its weights and loads back
    with the package and without it (trust_remote_code), drawing the same angiograms."""
    from ffa_pipeline import LightDecoderAutoencoderKL

    start = FFADiffusionPipeline.from_pretrained(saved)
    vae = LightDecoderAutoencoderKL.from_config(start.vae.config, decoder_block_out_channels=[4, 8],
                                                decoder_norm_num_groups=2, decoder_mid_block_add_attention=False)
    light = FFADiffusionPipeline.from_pretrained(saved, vae=vae)
    light.set_progress_bar_config(disable=True)
    light.save_pretrained(tmp_path / "light")
    index = json.loads((tmp_path / "light" / "model_index.json").read_text())
    assert index["vae"] == ["light_decoder_vae", "LightDecoderAutoencoderKL"]
    assert (tmp_path / "light" / "vae" / "light_decoder_vae.py").is_file()
    expected = light(reference_image(), generator=seeded(1), **CALL).images
    loaded = FFADiffusionPipeline.from_pretrained(tmp_path / "light")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.vae) is LightDecoderAutoencoderKL and loaded.vae.config.decoder_block_out_channels == [4, 8]
    np.testing.assert_allclose(loaded(reference_image(), generator=seeded(1), **CALL).images, expected, atol=1e-5)
    check_without_the_package(tmp_path / "light", expected, tmp_path)


def set_sampling_defaults():
    """train/set_sampling_defaults.py as a module (train/ is not a package)."""
    spec = importlib.util.spec_from_file_location("set_sampling_defaults", ROOT / "train" / "set_sampling_defaults.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_recommended_sampling_settings_travel_with_the_checkpoint(saved, tmp_path):
    script = set_sampling_defaults()
    model = tmp_path / "model"
    shutil.copytree(saved, model)
    (model / "README.md").write_text("card")
    script.main(["--model", str(model), "--scheduler", "unipc", "--num_inference_steps", "3",
                 "--label_guidance_scale", "1.0", "--timestep_spacing", "trailing", "--guidance_interval", "0", "0.5"])
    pipe = FFADiffusionPipeline.from_pretrained(model)
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    pipe.scheduler.set_timesteps(3)
    assert int(pipe.scheduler.timesteps[0]) == pipe.scheduler.config.num_train_timesteps - 1
    assert pipe.sampling_settings() == (3, 1.5, 1.0)
    assert pipe.sampling_settings(5, 2.0, None) == (5, 2.0, 1.0)
    assert pipe.guidance_interval_or_default(None) == (0.0, 0.5)
    assert (model / "README.md").read_text() == "card" and not model.with_name("model.old").exists()
    pipe.set_progress_bar_config(disable=True)
    steps = []
    pipe(reference_image(), output_type="np", callback_on_step_end=lambda p, i, t, k: steps.append(i) or k)
    assert steps == [0, 1, 2]

    like = tmp_path / "like"
    shutil.copytree(saved, like)
    script.main(["--model", str(like), "--like", str(model)])
    copied = FFADiffusionPipeline.from_pretrained(like)
    assert type(copied.scheduler).__name__ == "UniPCMultistepScheduler" and copied.sampling_settings() == (3, 1.5, 1.0)
    assert copied.guidance_interval_or_default(None) == (0.0, 0.5)
    with pytest.raises(SystemExit, match=r"guidance_interval.*got \[0.5, 0.2\]"):
        script.main(["--model", str(like), "--guidance_interval", "0.5", "0.2"])
    with pytest.raises(SystemExit):
        script.parse_args(["--model", str(tmp_path / "nowhere")])


def test_input_representation_travels_with_the_checkpoint(tmp_path):
    from ffa_pipeline.model_config import build_pipeline, load_model_config

    config = load_model_config("tiny")
    config["condition_encoder"] = {**config["condition_encoder"], "input_representation": "grey_ridges"}
    ridges, rgb = build_pipeline(config, seed=0), build_pipeline("tiny", seed=0)
    ridges.save_pretrained(tmp_path / "ridges")
    loaded = FFADiffusionPipeline.from_pretrained(tmp_path / "ridges")
    assert loaded.input_representation == "grey_ridges" and rgb.input_representation == "rgb"
    outputs = []
    for pipe in (ridges, loaded, rgb):
        pipe.set_progress_bar_config(disable=True)
        outputs.append(pipe(reference_image(), generator=seeded(1), **CALL).images)
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5)
    assert np.abs(outputs[2] - outputs[0]).max() > 1e-3  # the same weights see another input
    config["condition_encoder"]["input_representation"] = "hsv"
    with pytest.raises(ValueError, match=r"'hsv'.*\['rgb', 'grey_ridges'\]"):
        build_pipeline(config)


def test_native_resolution_ridges_travel_with_the_checkpoint_and_change_only_large_inputs(tmp_path):
    from ffa_pipeline.model_config import build_pipeline, load_model_config

    config = load_model_config("tiny")
    config["condition_encoder"] = {**config["condition_encoder"], "input_representation": "grey_ridges"}
    plain = build_pipeline(config, seed=0)
    config["condition_encoder"]["native_resolution_ridges"] = ["oct"]
    build_pipeline(config, seed=0).save_pretrained(tmp_path / "native")
    native = FFADiffusionPipeline.from_pretrained(tmp_path / "native")
    assert native.native_resolution_ridges == ["oct"] and plain.native_resolution_ridges == []
    large = (np.random.default_rng(1).random((96, 96, 3)) * 255).astype(np.uint8)  # 3x the tiny model's 32 px
    small = large[:32, :32]

    def run(pipe, image, modality):
        pipe.set_progress_bar_config(disable=True)
        return pipe(image, generator=seeded(1), **{**CALL, "modality": modality}).images

    np.testing.assert_allclose(run(native, large, "cfp"), run(plain, large, "cfp"), atol=1e-5)  # not listed
    np.testing.assert_allclose(run(native, small, "oct"), run(plain, small, "oct"), atol=1e-5)  # only 32 px
    assert np.abs(run(native, large, "oct") - run(plain, large, "oct")).max() > 1e-3
    decoded = []  # the source is decoded once, for the square and its native-resolution ridges alike
    read = native.image_processor.to_float_rgb
    native.image_processor.to_float_rgb = lambda image: decoded.append(image) or read(image)
    run(native, PIL.Image.fromarray(large), "oct")
    assert len(decoded) == 1
    config["condition_encoder"]["native_resolution_ridges"] = ["uwf"]
    with pytest.raises(ValueError, match=r"unknown modalities \['uwf'\]; allowed: \['cfp', 'oct', 'uwf_slo'\]"):
        build_pipeline(config)


def test_output_side_per_modality_travels_with_the_checkpoint(saved, tmp_path):
    script = set_sampling_defaults()
    model = tmp_path / "model"
    shutil.copytree(saved, model)
    base = FFADiffusionPipeline.from_pretrained(model)
    larger = base.default_resolution + base.size_multiple
    script.main(["--model", str(model), "--modality_resolutions", f"uwf_slo={larger}"])
    pipe = FFADiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.modality_resolutions == {"uwf_slo": larger}
    assert pipe.resolution_for("uwf_slo") == larger and pipe.resolution_for("cfp") == base.default_resolution
    assert pipe.resolution_for(["cfp", "uwf_slo"]) == larger  # a batch is drawn at its largest side
    remote = ("import sys; sys.modules['ffa_pipeline'] = None; from diffusers import DiffusionPipeline; "
              "print(DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True).resolution_for('uwf_slo'))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run([sys.executable, "-c", remote, str(model)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.stdout.strip() == str(larger), result.stderr[-3000:]
    call = {**CALL, "num_inference_steps": 1}
    assert pipe(reference_image(), **{**call, "modality": "uwf_slo"}).images.shape[1:3] == (larger, larger)
    assert pipe(reference_image(), **call).images.shape[1:3] == (base.default_resolution,) * 2
    assert pipe(reference_image(), **{**call, "modality": "uwf_slo", "height": base.default_resolution,
                                      "width": base.default_resolution}).images.shape[1] == base.default_resolution

    like = tmp_path / "like"
    shutil.copytree(saved, like)
    script.main(["--model", str(like), "--like", str(model)])
    assert FFADiffusionPipeline.from_pretrained(like).resolution_for("uwf_slo") == larger
    script.main(["--model", str(like), "--modality_resolutions"])
    assert FFADiffusionPipeline.from_pretrained(like).resolution_for("uwf_slo") == base.default_resolution

    with pytest.raises(ValueError, match=r"'fundus'.*\['cfp'"):
        script.main(["--model", str(model), "--modality_resolutions", "fundus=512"])
    with pytest.raises(ValueError, match=rf"multiple of {base.size_multiple}.*{larger + 1}"):
        script.main(["--model", str(model), "--modality_resolutions", f"uwf_slo={larger + 1}"])
    with pytest.raises(SystemExit):
        script.parse_args(["--model", str(model), "--modality_resolutions", "uwf_slo"])
    assert FFADiffusionPipeline.from_pretrained(model).config.modality_resolutions == {"uwf_slo": larger}
