"""train/evaluate.py and ffa_pipeline.baselines on a tiny phantom dataset (the project's CLI) with the tiny pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_phantom
from datasets import Dataset, load_dataset

from ffa_pipeline.baselines import Pix2PixUNet, inverted_green, train_pix2pix
from ffa_pipeline.data import ColumnSpec, PairedFFADataset, resolve_labels
from ffa_pipeline.metrics import l1, vessel_auc
from ffa_pipeline.phantom.lesions import LESION_TYPES
from ffa_pipeline.vocab import DISEASES, MODALITIES, PHASES

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "train"))

import evaluate  # noqa: E402


@pytest.fixture(scope="module")
def phantom_source(tmp_path_factory) -> Path:
    """5 eyes x (cfp, oct), early + late FFA, written by the project's own phantom CLI (64 px, its minimum)."""
    return write_phantom(tmp_path_factory.mktemp("phantom") / "all", 5, ["diabetic_retinopathy", "amd"])


@pytest.fixture(scope="module")
def phantom_dir(phantom_source, tmp_path_factory) -> Path:
    """The phantom split by eye: train (3 eyes) and test (2 eyes) parquet files, which load_dataset names by file."""
    rows = load_dataset(str(phantom_source))["train"]
    folder = tmp_path_factory.mktemp("phantom") / "split"
    for split, eyes in (("train", range(0, 6)), ("test", range(6, 10))):
        rows.select(eyes).to_parquet(str(folder / "data" / f"{split}-00000.parquet"))
    return folder


@pytest.fixture(scope="module")
def tiny_model(tiny_pipe, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_pipe.save_pretrained(path)
    return path


def run(tiny_model: Path, phantom_dir: Path, output_dir: Path, *extra: str) -> dict:
    return evaluate.main(["--model", str(tiny_model), "--train_data_dir", str(phantom_dir), "--output_dir",
                          str(output_dir), "--num_inference_steps", "2", *extra])


def metric_means(report: dict, method: str) -> dict:
    return {(phase, metric): stats[metric]["mean"] for phase, stats in report["methods"][method]["phases"].items()
            for metric in evaluate.METRICS}


def test_evaluation_writes_every_table(tiny_model, phantom_dir, tmp_path):
    report = run(tiny_model, phantom_dir, tmp_path, "--max_samples", "2", "--baselines", "inverted_green", "pix2pix",
                 "--pix2pix_steps", "5", "--steps_sweep", "2", "4", "--sweep_schedulers", "ddim", "dpm++")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["config"]["split"] == "test" and saved["config"]["pairs"] == 4  # 2 rows x (early, late)
    assert saved["config"]["pix2pix"]["steps"] == 5
    assert set(saved["methods"]) == {"diffusion", "inverted_green", "pix2pix"}
    for method in saved["methods"].values():
        assert list(method["phases"]) == ["early", "late"]
        early = method["phases"]["early"]
        assert {"n", "psnr", "ssim", "ms_ssim", "l1", "vessel_auc", "lesion_error"} <= set(early)
        assert early["n"] == 2 and np.isfinite(early["psnr"]["mean"]) and 0 <= early["vessel_auc"]["mean"] <= 1
        assert early["lesion_error"] and set(early["lesion_error"]) <= set(LESION_TYPES)  # present lesions only
        assert method["median_seconds_per_image"] > 0
    assert [(r["scheduler"], r["steps"]) for r in saved["sweep"]] == [("ddim", 2), ("ddim", 4), ("dpm++", 2),
                                                                       ("dpm++", 4)]
    assert all(r["n"] == 4 and np.isfinite(r["ssim"]) for r in saved["sweep"])
    markdown = (tmp_path / "metrics.md").read_text()
    for heading in ("## Paired metrics", "## Lesion regions", "## Steps vs quality", "pix2pix U-Net", "inverted green",
                    "| dpm++ | 4 |"):
        assert heading in markdown
    assert report["methods"]["diffusion"]["label"] == "diffusion (ddim, 2 steps)"

    reloaded = run(tiny_model, phantom_dir, tmp_path / "again", "--max_samples", "2", "--baselines", "pix2pix",
                   "--pix2pix_checkpoint", str(tmp_path / "pix2pix"), "--batch_size", "3")
    assert metric_means(reloaded, "pix2pix") == pytest.approx(metric_means(report, "pix2pix"))
    # each pair has its own generator, so batching does not change the diffusion output
    assert metric_means(reloaded, "diffusion") == pytest.approx(metric_means(report, "diffusion"), rel=1e-4)


def test_long_layout_and_chosen_scheduler(tiny_model, phantom_dir, tmp_path):
    """A long-layout dataset (one target column, phase names), colour fundus only, on 'train', UniPC, per modality."""
    test = load_dataset(str(phantom_dir))["test"]
    cfp = test.filter(lambda row: row["modality"] == "cfp")
    long = Dataset.from_dict({"source_image": cfp["source_image"], "target_image": cfp["ffa_early"],
                              "phase": ["early"] * len(cfp), "modality": cfp["modality"],
                              "vessel_mask": cfp["vessel_mask"]})
    folder = tmp_path / "long"
    long.to_parquet(str(folder / "data" / "train-00000.parquet"))
    report = run(tiny_model, folder, tmp_path / "out", "--target_image_column", "target_image", "--phase_column",
                 "phase", "--disease_column", "", "--baselines", "inverted_green", "--scheduler", "unipc",
                 "--per_modality")
    assert report["config"]["split"] == "train" and list(report["methods"]) == ["diffusion", "inverted_green"]
    early = report["methods"]["diffusion"]["phases"]["early/cfp"]
    assert early["n"] == 2 and 0 <= early["vessel_auc"]["mean"] <= 1 and early["lesion_error"] == {}
    markdown = (tmp_path / "out" / "metrics.md").read_text()
    assert "| method | phase/modality |" in markdown and "| diffusion (unipc, 2 steps) | early/cfp | 2 |" in markdown


def test_pairs_are_framed_like_the_pipeline_and_their_masks(tiny_pipe, phantom_source):
    """Source squares match the pipeline's own preprocessing; targets and masks line up with them."""
    dataset = load_dataset(str(phantom_source))["train"]
    args = evaluate.parse_args(["--model", "unused", "--train_data_dir", "unused"])
    spec = evaluate.column_spec(args)
    labels = resolve_labels(dataset, spec, tiny_pipe.modalities, tiny_pipe.diseases, tiny_pipe.phases)
    pairs = evaluate.build_pairs(dataset, spec, labels, tiny_pipe, 64, "vessel_mask",
                                 evaluate.lesion_mask_columns(dataset, "mask_"))
    assert len(pairs) == 20 and [p.phase for p in pairs[:2]] == ["early", "late"]
    for pair in pairs[:4]:
        pixels, _ = tiny_pipe.image_processor.preprocess(pair.source(), resolution=64)
        np.testing.assert_allclose(pair.source_square, (pixels[0].permute(1, 2, 0).numpy() + 1) / 2, atol=1e-5)

    def auc(pair, image, mask=None):
        return vessel_auc(image, pair.vessel_mask if mask is None else mask, pair.field_of_view)

    early = [p for p in pairs if p.phase == "early"]
    # the true early angiogram is a good vessel detector against the framed mask, much worse against a shifted one
    aligned = np.mean([auc(p, p.target) for p in early])
    shifted = np.mean([auc(p, p.target, np.roll(p.vessel_mask, 3, axis=1)) for p in early])
    assert aligned > 0.9 and shifted < aligned - 0.15
    # inverted green finds vessels in colour fundus photos (dark in green) and anti-finds them in OCT (bright)
    green = {m: np.mean([auc(p, inverted_green(p.source_square, p.field_of_view)) for p in early if p.modality == m])
             for m in ("cfp", "oct")}
    assert green["cfp"] > 0.55 and green["oct"] < 0.1


def test_pix2pix_trains_on_another_dataset(tiny_model, phantom_dir, phantom_source, tmp_path):
    """A phantom has one split: evaluate one phantom, train pix2pix on another with --pix2pix_train_data_dir."""
    report = run(tiny_model, phantom_dir, tmp_path, "--split", "test", "--max_samples", "1", "--baselines", "pix2pix",
                 "--pix2pix_train_data_dir", str(phantom_source), "--pix2pix_steps", "2")
    assert report["config"]["pix2pix"]["trained_on"] == str(phantom_source)
    assert report["config"]["pix2pix"]["rows"] == 10 and report["config"]["pairs"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheduler", "plms"], "invalid choice: 'plms'"),
        (["--sweep_schedulers", "heun"], "invalid choice: 'heun'"),
        (["--baselines", "cyclegan"], "invalid choice: 'cyclegan'"),
        (["--steps_sweep", "0", "4"], "--steps_sweep values must be >= 1"),
        (["--baselines", "inverted_green", "--pix2pix_checkpoint", "x"], "need 'pix2pix' in --baselines"),
    ],
)
def test_bad_flags_name_the_allowed_values(tiny_model, phantom_dir, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        run(tiny_model, phantom_dir, tmp_path, *extra)
    error = capsys.readouterr().err
    assert message in error
    if "--scheduler" in extra:
        assert all(name in error.split("choose from")[1] for name in evaluate.SCHEDULERS)


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--split", "validation"], r"--split 'validation' is not in the dataset; its splits: \['train', 'test'\]"),
     (["--resolution", "30"], "divisible by 4"),
     (["--target_image_column", "ffa_mid", "--phase_column", "ffa_mid_seconds"], "--target_image_column 'ffa_mid'")],
)
def test_bad_data_flags_raise_clear_errors(tiny_model, phantom_dir, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        run(tiny_model, phantom_dir, tmp_path, "--baselines", *extra)


def test_inverted_green_makes_dark_vessels_bright_and_keeps_the_surround_black():
    source = np.zeros((32, 32, 3), np.float32)
    source[4:28, 4:28] = (0.8, 0.5, 0.2)
    source[16, 4:28, 1] = 0.1  # a vessel: absorbs green
    field_of_view = source.max(axis=2) > 0
    grey = inverted_green(source, field_of_view)
    assert grey.shape == (32, 32) and grey.dtype == np.float32
    assert grey[16, 10] == 1.0 and grey[10, 10] == 0.0 and grey[0, 0] == 0.0
    assert inverted_green(source)[0, 0] == 1.0  # without a field of view the black surround inverts to white


def test_pix2pix_learns_saves_and_reloads(phantom_dir, tmp_path):
    train = load_dataset(str(phantom_dir))["train"]
    spec = ColumnSpec.from_flags("source_image", "ffa_early,ffa_late", "ffa_early_seconds,ffa_late_seconds",
                                 "modality", "disease", None)
    labels = resolve_labels(train, spec, list(MODALITIES), list(DISEASES), dict(PHASES))
    data = PairedFFADataset(train, spec, labels, resolution=32)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=len(data))))

    def error(model: Pix2PixUNet) -> float:
        with torch.no_grad():
            prediction = model(batch["source"], batch["phase_seconds"])
        return l1((prediction[:, 0] + 1).flatten(0, 1) / 2, (batch["target"][:, 0] + 1).flatten(0, 1) / 2)

    untrained = train_pix2pix(data, steps=1, batch_size=4, lr=0.0, seed=0)
    trained = train_pix2pix(data, steps=20, batch_size=4, lr=2e-3, seed=0)
    assert error(trained) < 0.5 * error(untrained)
    assert trained.config.num_down_blocks == 5  # 32 px -> 1 x 1 bottleneck
    trained.save_pretrained(tmp_path / "p2p")
    assert (tmp_path / "p2p" / "diffusion_pytorch_model.safetensors").is_file()
    reloaded = Pix2PixUNet.from_pretrained(tmp_path / "p2p").eval()
    torch.testing.assert_close(error(reloaded), error(trained))
    with pytest.raises(ValueError, match="divisible by 32"):
        trained(torch.zeros(1, 3, 40, 40), torch.tensor([30.0]))


def test_a_modality_drawn_at_a_larger_side_is_scored_at_the_models_own(tiny_pipe, phantom_dir, tmp_path):
    larger = tiny_pipe.default_resolution + tiny_pipe.size_multiple
    model = tmp_path / "model"
    tiny_pipe.save_pretrained(model)
    index = json.loads((model / "model_index.json").read_text())
    (model / "model_index.json").write_text(json.dumps({**index, "modality_resolutions": {"oct": larger}}))
    report = run(model, phantom_dir, tmp_path / "out", "--max_samples", "2", "--baselines")
    config = report["config"]
    assert config["resolution"] == tiny_pipe.default_resolution
    assert config["generated_at"] == {"cfp": tiny_pipe.default_resolution, "oct": larger}
    assert all(np.isfinite(stats["psnr"]["mean"]) for stats in report["methods"]["diffusion"]["phases"].values())
    assert f"(generated at {larger} px for oct)" in (tmp_path / "out" / "metrics.md").read_text()
    chosen = run(model, phantom_dir, tmp_path / "chosen", "--max_samples", "2", "--baselines", "--resolution",
                 str(larger))
    assert chosen["config"]["generated_at"] == {"cfp": larger, "oct": larger}
