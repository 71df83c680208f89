"""make_angiogram_pairs.py: a photo-like source with the angiogram's anatomy, the folder layout, bad folders."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from ffa_pipeline.data import load_dataset_fresh

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "train"))

import make_angiogram_pairs  # noqa: E402

SIDE = 128


def angiogram(shift: int = 0) -> np.ndarray:
    """A round field, a bright horizontal vessel at row 40 + shift and a dark fovea at the centre (uint8)."""
    yy, xx = np.mgrid[:SIDE, :SIDE]
    image = np.full((SIDE, SIDE), 0.35)
    image[38 + shift: 41 + shift, 10:118] = 0.9
    image -= 0.25 * np.exp(-((yy - 64) ** 2 + (xx - 64) ** 2) / 12.0**2)
    image[(yy - 63.5) ** 2 + (xx - 63.5) ** 2 > 62**2] = 0.0
    return (image * 255).round().astype(np.uint8)


def test_photo_has_the_angiograms_anatomy_with_a_photos_polarity():
    photo, vessels = make_angiogram_pairs.photo_from_angiogram(angiogram())
    red, green, blue = photo[..., 0], photo[..., 1], photo[..., 2]
    yy, xx = np.mgrid[:SIDE, :SIDE]
    inside = (yy - 63.5) ** 2 + (xx - 63.5) ** 2 < 50**2
    assert (red[inside] > green[inside]).all() and (green[inside] > blue[inside]).all()  # orange fundus
    assert green[39, 30:98].mean() < 0.8 * green[50, 30:98].mean()  # the bright vessel is dark in the photo
    assert green[62:67, 62:67].mean() < 0.9 * green[inside].mean()  # the dark fovea stays dark
    assert photo[:3, :3].max() == 0.0  # outside the field: black
    assert vessels[39, 30:98].all() and not vessels[50, 30:98].any() and not vessels[:3, :3].any()


def write_layout(root: Path) -> Path:
    """Two diagnosis folders, a phase folder, the skipped non_ffa folder and one duplicate image."""
    folders = {"disease_diagnosis/train/normal": [0, 4], "disease_diagnosis/train/brvo": [8, 0],
               "phase_identification/train/venous_phase": [12], "phase_identification/train/non_ffa": [16]}
    for folder, shifts in folders.items():
        (root / folder).mkdir(parents=True)
        for i, shift in enumerate(shifts):
            PIL.Image.fromarray(angiogram(shift)).save(root / folder / f"{i}.jpg", quality=95)
    return root


def test_pairs_are_written_in_the_phantoms_wide_layout(tmp_path):
    root = write_layout(tmp_path / "ffa_real")
    make_angiogram_pairs.main(["--input", str(root), "--output_dir", str(tmp_path / "pairs"), "--resolution", "64",
                               "--phases", "arterial", "early", "late", "--diagnosis_phase", "late"])
    rows = load_dataset_fresh(str(tmp_path / "pairs"))["train"]
    assert len(rows) == 4  # 5 angiograms, one of them twice; non_ffa skipped
    assert sorted(rows["disease"]) == ["normal", "unknown", "vein_occlusion", "vein_occlusion"]  # brvo read first
    assert set(rows["modality"]) == {"cfp"}
    venous = rows[rows["disease"].index("unknown")]
    assert venous["ffa_early_seconds"] == 30.0 and venous["ffa_late"] is None and venous["ffa_late_seconds"] is None
    assert venous["source_image"].size == (64, 64) and venous["ffa_early"].mode == "L"
    assert np.asarray(venous["vessel_mask"]).max() == 255
    assert "make_angiogram_pairs.py" in (tmp_path / "pairs" / "README.md").read_text()


def test_an_unknown_folder_is_named_with_the_known_ones(tmp_path):
    root = write_layout(tmp_path / "ffa_real")
    (root / "disease_diagnosis/train/amd").mkdir()
    with pytest.raises(ValueError, match=r"'amd'.*known: \['brvo'"):
        make_angiogram_pairs.main(["--input", str(root), "--output_dir", str(tmp_path / "pairs")])
    assert not (tmp_path / "pairs").exists()


def test_phases_must_hold_every_angiograms_phase(tmp_path, capsys):
    with pytest.raises(SystemExit):
        make_angiogram_pairs.main(["--input", str(tmp_path), "--output_dir", str(tmp_path / "pairs"),
                                   "--phases", "early", "late"])
    assert "lacks ['arterial', 'mid']" in capsys.readouterr().err
