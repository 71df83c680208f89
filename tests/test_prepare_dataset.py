"""prepare_dataset.py and ffa_pipeline.registration: recovering a known warp, the three layouts, bad input."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import pytest
from datasets import Image, List, Value, load_dataset

from ffa_pipeline.phantom import render_sample, sample_eye
from ffa_pipeline.registration import register_pair, warp_to

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "train"))

import prepare_dataset  # noqa: E402

RESOLUTION = 384
# source -> warped target: 3 degrees, scale 1.03, shift (10, -7) px
KNOWN_WARP = np.vstack([cv2.getRotationMatrix2D((RESOLUTION / 2, RESOLUTION / 2), 3.0, 1.03), [0, 0, 1]])
KNOWN_WARP[:2, 2] += (10, -7)


@pytest.fixture(scope="module")
def phantom_pair() -> tuple[np.ndarray, np.ndarray]:
    """A phantom colour fundus photo and the early FFA of the same eye, pixel-aligned."""
    row = render_sample(sample_eye(0, "diabetic_retinopathy"), RESOLUTION, modalities=("cfp",), phases=("early",))
    return row["cfp"]["source_image"], row["cfp"]["ffa_early"]


def grid_error(matrix: np.ndarray, truth: np.ndarray, size: int = RESOLUTION) -> float:
    """Mean distance (px) between a 9x9 grid of points mapped by ``matrix`` and by ``truth``."""
    grid = np.stack(np.meshgrid(np.linspace(0, size - 1, 9), np.linspace(0, size - 1, 9)), -1).reshape(-1, 1, 2)
    return float(np.linalg.norm(cv2.perspectiveTransform(grid, matrix) - cv2.perspectiveTransform(grid, truth),
                                axis=-1).mean())


@pytest.mark.parametrize("model", ["affine", "homography"])
def test_registration_recovers_a_known_warp(phantom_pair, model):
    source, ffa = phantom_pair
    target = warp_to(ffa, KNOWN_WARP, ffa.shape)
    result = register_pair(source, target, model=model)
    assert result.ok, result.reason
    assert grid_error(result.matrix, np.linalg.inv(KNOWN_WARP)) < 2.0
    assert result.inlier_ratio > 0.3 and result.median_error_px < 2.0


def test_registration_rejects_an_unrelated_pair(phantom_pair):
    source, _ = phantom_pair
    other = render_sample(sample_eye(5, "normal"), RESOLUTION, modalities=("cfp",), phases=("early",))
    result = register_pair(source, np.fliplr(other["cfp"]["ffa_early"]))
    assert not result.ok and result.reason


# ------------------------------------------------------------------------------------------- tiny files


def fundus(size=(48, 64)) -> np.ndarray:
    """A small red-dominant colour 'fundus' with dark vessels."""
    image = np.zeros((*size, 3), np.uint8)
    cv2.circle(image, (size[1] // 2, size[0] // 2), min(size) // 2 - 1, (190, 80, 40), -1)
    cv2.line(image, (5, 5), (size[1] - 5, size[0] - 5), (110, 30, 20), 2)
    return image


def angiogram(size=(48, 64)) -> np.ndarray:
    """A small grey 'angiogram' with bright vessels, stored as RGB (R=G=B)."""
    grey = np.full(size, 40, np.uint8)
    cv2.line(grey, (5, 5), (size[1] - 5, size[0] - 5), 220, 2)
    return np.dstack([grey] * 3)


def save(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(image).save(path)
    return path


def run(tmp_path: Path, *args: str) -> tuple[Path, str]:
    output = tmp_path / "out"
    assert prepare_dataset.main([*args, "--output_dir", str(output)]) == 0
    return output, (output / "README.md").read_text()


def test_misp_layout_finds_the_fundus_by_content_either_way_round(tmp_path, capsys):
    root = tmp_path / "misp"
    save(root / "NORMAL" / "1.jpg", fundus())  # fundus N, angiogram N-N
    save(root / "NORMAL" / "1-1.jpg", angiogram())
    save(root / "ABNORMAL" / "1.png", angiogram())  # flipped: angiogram N, fundus N-N
    save(root / "ABNORMAL" / "1-1.png", fundus())
    save(root / "ABNORMAL" / "2.png", angiogram())  # both grey: cannot be told apart
    save(root / "ABNORMAL" / "2-2.png", angiogram())
    output, card = run(tmp_path, "--layout", "misp", "--input", str(root), "--registration", "none")

    rows = load_dataset(str(output), split="train")
    assert sorted(rows["eye_id"]) == ["misp_abnormal_1", "misp_normal_1"]
    for row in rows:
        source = np.asarray(row["source_image"]).astype(int)
        assert source[..., 0].mean() > source[..., 2].mean() + 20, "the colour image must be the source"
        assert row["target_image"].mode == "L"
        assert row["modality"] == "cfp" and row["phase_name"] == "mid" and row["phase"] == 180.0
        assert row["registration_transform"] == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    by_eye = {row["eye_id"]: row for row in rows}
    assert by_eye["misp_normal_1"]["disease"] == "normal"
    assert by_eye["misp_normal_1"]["source_path"] == "NORMAL/1.jpg"
    assert by_eye["misp_abnormal_1"]["disease"] == "diabetic_retinopathy"
    assert by_eye["misp_abnormal_1"]["source_path"] == "ABNORMAL/1-1.png"
    assert "NORMAL fundus N, angiogram N-N: 1" in card and "ABNORMAL fundus N-N, angiogram N: 1" in card
    assert "ABNORMAL/2: both images are grey" in card
    assert "left out ABNORMAL/2: both images are grey" in capsys.readouterr().out


def test_uwf_layout_keeps_folder_splits_and_names_phases(tmp_path):
    root = tmp_path / "uwf"
    for split, eye in (("train", "1"), ("test", "7")):
        save(root / split / f"{eye}_slo.png", fundus())
        for phase in ("early", "late"):
            save(root / split / f"{eye}_ffa_{phase}.png", angiogram())
    save(root / "train" / "2_slo.png", fundus())  # no angiograms at all
    output, card = run(tmp_path, "--layout", "uwf_triplets", "--input", str(root), "--registration", "none",
                       "--disease", "diabetic_retinopathy", "--license", "mit", "--resolution", "32")

    dataset = load_dataset(str(output))
    assert set(dataset) == {"train", "test"}
    train = dataset["train"]
    assert sorted(zip(train["phase_name"], train["phase"])) == [("early", 30.0), ("late", 600.0)]
    assert set(train["modality"]) == {"uwf_slo"} and set(train["disease"]) == {"diabetic_retinopathy"}
    assert train[0]["source_image"].size == (32, 32) and train[0]["target_image"].size == (32, 32)
    assert dataset["test"]["eye_id"] == ["uwf_test_7", "uwf_test_7"]
    assert "license: mit" in card and "missing 2_ffa_early.png" in card


def write_csv(path: Path, rows: list[dict], columns=prepare_dataset.CSV_COLUMNS) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_layout_registers_and_reports_a_corrupt_image(tmp_path, phantom_pair, capsys):
    source, ffa = phantom_pair
    save(tmp_path / "eye0_cfp.png", source)
    save(tmp_path / "eye0_ffa.png", warp_to(ffa, KNOWN_WARP, ffa.shape))
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    table = write_csv(tmp_path / "pairs.csv", [
        {"source_path": "eye0_cfp.png", "target_path": "eye0_ffa.png", "modality": "cfp",
         "disease": "diabetic_retinopathy", "phase": "early"},
        {"source_path": "eye0_cfp.png", "target_path": "broken.png", "modality": "cfp", "disease": "", "phase": "45"},
    ])
    output, card = run(tmp_path, "--layout", "csv", "--input", str(table))

    rows = load_dataset(str(output), split="train")
    assert rows.features["registration_transform"] == List(Value("float32"), length=9)
    assert rows.features["source_image"] == Image() and rows.features["phase"] == Value("float32")
    assert len(rows) == 1
    row = rows[0]
    matrix = np.asarray(row["registration_transform"], np.float64).reshape(3, 3)
    assert grid_error(matrix, np.linalg.inv(KNOWN_WARP)) < 2.0
    assert row["registration_inliers"] > 0.3 and row["registration_error_px"] < 2.0
    registered = np.asarray(row["target_image"], np.float32)
    inside = cv2.erode((registered > 0).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert np.abs(registered[inside] - ffa[inside]).mean() < 6, "the stored target must be aligned to the source"
    assert "broken.png" in card and "cannot read image" in card
    assert "left out pairs.csv row 2 (line 3): cannot read image" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [("modality", "fundus", "allowed: ['cfp', 'oct', 'uwf_slo']"),
     ("disease", "flu", "'unknown', 'normal'"),
     ("phase", "dusk", "'late'")],
)
def test_bad_csv_value_names_the_row_value_and_choices(tmp_path, column, value, expected):
    good = {"source_path": "a.png", "target_path": "b.png", "modality": "cfp", "disease": "normal", "phase": "late"}
    table = write_csv(tmp_path / "pairs.csv", [good, {**good, column: value}])
    with pytest.raises(ValueError, match="row 2") as error:
        prepare_dataset.main(["--layout", "csv", "--input", str(table), "--output_dir", str(tmp_path / "out")])
    assert repr(value) in str(error.value) and expected in str(error.value) and column in str(error.value)


def test_missing_csv_column_is_named(tmp_path):
    table = write_csv(tmp_path / "pairs.csv", [], columns=("source_path", "target_path", "modality", "phase"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['disease'\]"):
        prepare_dataset.main(["--layout", "csv", "--input", str(table), "--output_dir", str(tmp_path / "out")])


def test_bad_flags_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        prepare_dataset.main(["--layout", "csv", "--input", str(tmp_path), "--output_dir", "x", "--modality", "mri"])
    assert "--modality" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare_dataset.main(["--layout", "csv", "--input", str(tmp_path), "--output_dir", "x", "--phase", "dusk"])
    assert "--phase" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare_dataset.main(["--layout", "csv", "--input", str(tmp_path / "nope.csv"), "--output_dir", "x"])
    assert "--input" in capsys.readouterr().err
