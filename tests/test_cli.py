"""`python -m ffa_pipeline generate`: batch generation, provenance, one clear error per bad file, exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from ffa_pipeline import demo
from ffa_pipeline.__main__ import main
from ffa_pipeline.model_config import build_pipeline

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A saved tiny pipeline, so the test never depends on which default model is installed."""
    directory = tmp_path_factory.mktemp("tiny-model")
    build_pipeline("tiny", seed=0).save_pretrained(directory)
    return str(directory)


@pytest.fixture
def inputs(tmp_path) -> Path:
    """Two good images, a truncated PNG, a text file posing as a JPEG, and a README that is not an image."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("amd_cfp.png", "normal_oct.png"):
        (folder / name).write_bytes((EXAMPLES / name).read_bytes())
    (folder / "truncated.png").write_bytes((EXAMPLES / "amd_cfp.png").read_bytes()[:3000])
    (folder / "fake.jpg").write_text("not an image")
    (folder / "README.txt").write_text("skipped: not an image suffix")
    return folder


def run(model_dir: str, *args: str) -> int:
    return main(["generate", "--model", model_dir, "--steps", "2", *args])


def test_batch_writes_every_good_image_and_one_error_line_per_bad_file(model_dir, inputs, tmp_path, capsys):
    output = tmp_path / "out"
    status = run(model_dir, "--input", str(inputs), "--output", str(output), "--disease", "amd",
                 "--phases", "early", "late", "45", "--seed", "3")
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 0
    assert sorted(path.name for path in output.iterdir()) == sorted(
        f"{stem}_{phase}.png" for stem in ("amd_cfp", "normal_oct") for phase in ("early", "late", "45s")
    )
    assert len(errors) == 2
    assert any("truncated.png" in line and "truncated" in line for line in errors)
    assert any("fake.jpg" in line and "not an image" in line for line in errors)
    late = PIL.Image.open(output / "amd_cfp_late.png")
    assert late.size == PIL.Image.open(inputs / "amd_cfp.png").size
    assert late.text["synthetic"] == "true" and late.text["seed"] == "3" and late.text["disease"] == "amd"
    assert PIL.Image.open(output / "amd_cfp_45s.png").text["phase_seconds"] == "45.0"


def test_samples_get_their_own_seeds(model_dir, inputs, tmp_path):
    output = tmp_path / "out"
    assert run(model_dir, "--input", str(inputs / "amd_cfp.png"), "--output", str(output), "--samples", "2") == 0
    assert sorted(path.name for path in output.iterdir()) == ["amd_cfp_late_seed0.png", "amd_cfp_late_seed1.png"]


def test_the_visible_mark_can_be_left_out_but_not_the_metadata(model_dir, inputs, tmp_path):
    marked, plain = tmp_path / "marked", tmp_path / "plain"
    image = str(inputs / "amd_cfp.png")
    assert run(model_dir, "--input", image, "--output", str(marked)) == 0
    assert run(model_dir, "--input", image, "--output", str(plain), "--no-visible-mark") == 0
    with_mark, without = (PIL.Image.open(folder / "amd_cfp_late.png") for folder in (marked, plain))
    differs = np.asarray(with_mark) != np.asarray(without)
    assert differs[-20:, -150:].any() and not differs[:-20].any()
    assert without.text["synthetic"] == "true" and demo.SYNTHETIC_MARK in without.text["Description"]


def test_exit_status_is_1_when_every_file_failed(model_dir, inputs, tmp_path, capsys):
    status = run(model_dir, "--input", str(inputs / "truncated.png"), str(inputs / "fake.jpg"),
                 "--output", str(tmp_path / "out"))
    assert status == 1
    assert "0 image(s) written" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--disease", "flu"], "Unknown disease 'flu'; this model knows ['unknown'"),
        (["--modality", "xray"], "Unknown modality 'xray'; this model knows ['cfp'"),
        (["--phases", "noon"], "Unknown FFA phase 'noon'; allowed:"),
    ],
)
def test_bad_arguments_exit_2_naming_the_allowed_values(model_dir, inputs, tmp_path, capsys, args, message):
    assert run(model_dir, "--input", str(inputs), "--output", str(tmp_path / "out"), *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_no_images_exits_2(model_dir, tmp_path, capsys):
    assert run(model_dir, "--input", str(tmp_path), "--output", str(tmp_path / "out")) == 2
    assert "no image files" in capsys.readouterr().err


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "ffa_pipeline", "generate", "--help"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0 and "--modality" in result.stdout and "Exit status" in result.stdout
