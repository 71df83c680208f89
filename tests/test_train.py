"""train_ffa.py / train_vae.py: learning, exact resume, LoRA output, loading what training wrote, bad arguments."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_phantom
from datasets import load_dataset

from ffa_pipeline import FFADiffusionPipeline
from ffa_pipeline.model_config import build_pipeline

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "train"))

import train_ffa  # noqa: E402
import train_vae  # noqa: E402


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory) -> Path:
    """A tiny phantom dataset (2 eyes x 2 modalities, early + late FFA) written by the project's own CLI."""
    return write_phantom(tmp_path_factory.mktemp("phantom") / "data", 4, ["normal", "diabetic_retinopathy"])


def phantom_args(phantom_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--train_data_dir", str(phantom_dir), "--output_dir", str(output_dir),
        "--target_image_column", "ffa_early,ffa_late", "--phase_column", "ffa_early_seconds,ffa_late_seconds",
        "--resolution", "32", "--train_batch_size", "4", "--seed", "0", *extra,
    ]


def losses(output_dir: Path) -> list[float]:
    lines = (output_dir / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_loss_is_finite_and_decreases(phantom_dir, tmp_path):
    train_ffa.main(["--model_config", "tiny", *phantom_args(phantom_dir, tmp_path, "--max_train_steps", "30",
                                                             "--learning_rate", "2e-3", "--checkpointing_steps", "100",
                                                             "--eye_id_column", "eye_id",
                                                             "--alignment_loss_weight", "0.1")])
    curve = losses(tmp_path)
    assert len(curve) == 30 and np.isfinite(curve).all()
    assert np.mean(curve[-10:]) < np.mean(curve[:10])


def test_resume_continues_the_same_loss_curve(phantom_dir, tmp_path):
    common = ["--model_config", "tiny", "--checkpointing_steps", "3", "--random_flip", "--random_rotation", "5",
              "--use_ema", "--snr_gamma", "5"]
    straight = tmp_path / "straight"
    train_ffa.main([*common, *phantom_args(phantom_dir, straight, "--max_train_steps", "6")])
    resumed = tmp_path / "resumed"
    train_ffa.main([*common, *phantom_args(phantom_dir, resumed, "--max_train_steps", "3")])
    train_ffa.main([*common, *phantom_args(phantom_dir, resumed, "--max_train_steps", "6",
                                           "--resume_from_checkpoint", "latest")])
    np.testing.assert_allclose(losses(resumed), losses(straight), rtol=1e-5)
    assert not list(resumed.glob(".partial-*"))


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "tiny"
    build_pipeline("tiny", seed=1).save_pretrained(path)
    return path


def test_lora_run_writes_an_adapter_that_loads(phantom_dir, base_model, tmp_path):
    train_ffa.main(["--pretrained_ffa_model", str(base_model), "--rank", "4", "--cache_latents",
                    *phantom_args(phantom_dir, tmp_path, "--max_train_steps", "3", "--learning_rate", "1e-2")])
    assert (tmp_path / "lora" / "pytorch_lora_weights.safetensors").is_file()
    pipe = FFADiffusionPipeline.from_pretrained(base_model)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(tmp_path / "lora")
    trained = FFADiffusionPipeline.from_pretrained(tmp_path)
    trained.set_progress_bar_config(disable=True)
    image = np.full((40, 40, 3), 140, np.uint8)
    call = {"num_inference_steps": 2, "output_type": "np"}
    with_lora = pipe(image, generator=torch.Generator().manual_seed(0), **call).images
    fused = trained(image, generator=torch.Generator().manual_seed(0), **call).images
    np.testing.assert_allclose(with_lora, fused, atol=1e-4)
    assert "not for diagnosis" in (tmp_path / "README.md").read_text()


def test_attention_heads_are_regrouped_and_trained(phantom_dir, base_model, tmp_path):
    train_ffa.main(["--pretrained_ffa_model", str(base_model), "--train_full_unet", "--unet_attention_heads", "4", "2",
                    *phantom_args(phantom_dir, tmp_path, "--max_train_steps", "2")])
    trained = FFADiffusionPipeline.from_pretrained(tmp_path)
    assert trained.unet.config.attention_head_dim == [4, 2]
    assert {block.attentions[0].transformer_blocks[0].attn1.heads for block in trained.unet.down_blocks
            if hasattr(block, "attentions")} == {2}
    trained.set_progress_bar_config(disable=True)
    image = trained(np.full((40, 40, 3), 140, np.uint8), num_inference_steps=2, output_type="np").images
    assert np.isfinite(image).all()


def test_regrouping_keeps_the_weights_and_rejects_a_bad_split(base_model):
    unet = FFADiffusionPipeline.from_pretrained(base_model).unet
    regrouped = train_ffa.regroup_attention_heads(unet, [2, 8])
    for name, weight in unet.state_dict().items():
        assert torch.equal(weight, regrouped.state_dict()[name])
    with pytest.raises(ValueError, match=r"--unet_attention_heads \[4, 3\].*32 channels"):
        train_ffa.regroup_attention_heads(unet, [4, 3])
    with pytest.raises(ValueError, match="one count per down block"):
        train_ffa.regroup_attention_heads(unet, [4])


def test_trained_pipeline_loads_without_the_package(phantom_dir, tmp_path):
    train_ffa.main(["--model_config", "tiny", *phantom_args(phantom_dir, tmp_path, "--max_train_steps", "2")])
    script = (
        "import sys; sys.modules['ffa_pipeline'] = None\n"
        "from diffusers import DiffusionPipeline\n"
        f"pipe = DiffusionPipeline.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)\n"
        "print(type(pipe).__name__, pipe.modalities)\n"
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert "FFADiffusionPipeline" in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--source_image_column", "photo"], "--source_image_column 'photo'"),
        (["--resolution", "34"], "divisible by"),
        (["--phase_column", "ffa_early_seconds"], "one phase column per target"),
    ],
)
def test_bad_flags_name_the_flag(phantom_dir, tmp_path, extra, message):
    args = phantom_args(phantom_dir, tmp_path, "--max_train_steps", "1")
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    with pytest.raises(ValueError, match=message):
        train_ffa.main(["--model_config", "tiny", *args])


def _rewritten(phantom_dir: Path, tmp_path: Path, change) -> Path:
    dataset = load_dataset(str(phantom_dir))["train"]
    changed = change(dataset)
    output = tmp_path / "changed"
    changed.to_parquet(str(output / "data" / "train-00000.parquet"))
    return output


def test_unknown_modality_value_names_the_row(phantom_dir, tmp_path):
    def relabel(dataset):
        return dataset.map(lambda row, i: {"modality": "xray" if i == 2 else row["modality"]}, with_indices=True)

    data = _rewritten(phantom_dir, tmp_path, relabel)
    with pytest.raises(ValueError, match="row 2.*'xray'"):
        train_ffa.main(["--model_config", "tiny", *phantom_args(data, tmp_path / "out", "--max_train_steps", "1")])


def test_corrupt_image_row_names_the_row(phantom_dir, tmp_path):
    from datasets import Image

    def corrupt(dataset):
        dataset = dataset.cast_column("source_image", Image(decode=False))
        return dataset.map(
            lambda row, i: {"source_image": {"bytes": b"not a png" if i == 1 else row["source_image"]["bytes"],
                                             "path": None}},
            with_indices=True,
        ).cast_column("source_image", Image())

    data = _rewritten(phantom_dir, tmp_path, corrupt)
    with pytest.raises(ValueError, match="row 1: column 'source_image'"):
        train_ffa.main(["--model_config", "tiny", *phantom_args(data, tmp_path / "out", "--max_train_steps", "4",
                                                              "--cache_latents")])


def test_two_processes_under_accelerate_launch(phantom_dir, tmp_path):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(ROOT / "train" / "train_ffa.py"), "--model_config", "tiny",
               *phantom_args(phantom_dir, tmp_path, "--max_train_steps", "4", "--train_batch_size", "2")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    curve = losses(tmp_path)
    assert len(curve) == 4 and np.isfinite(curve).all()
    assert FFADiffusionPipeline.from_pretrained(tmp_path).unet is not None


def test_vae_decoder_finetune_reports_metrics(phantom_dir, tmp_path):
    vae_dir = tmp_path / "vae-start"
    build_pipeline("tiny").vae.save_pretrained(vae_dir)
    train_vae.main(["--pretrained_vae_model_name_or_path", str(vae_dir), "--train_data_dir", str(phantom_dir),
                    "--image_column", "ffa_late", "--grey", "--resolution", "32", "--max_train_steps", "5",
                    "--train_batch_size", "2", "--output_dir", str(tmp_path / "out")])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"psnr", "ssim"} <= set(metrics["before"]) and np.isfinite(metrics["after"]["psnr"])
    from diffusers import AutoencoderKL

    start, tuned = AutoencoderKL.from_pretrained(vae_dir), AutoencoderKL.from_pretrained(tmp_path / "out" / "vae")
    torch.testing.assert_close(start.encoder.state_dict(), tuned.encoder.state_dict())
    assert not torch.equal(start.decoder.conv_out.weight, tuned.decoder.conv_out.weight)


def _student_config(tmp_path, **changes):
    """The tiny VAE with half its channels and no attention, written as a --model_config JSON."""
    from ffa_pipeline.model_config import load_model_config

    vae = {**load_model_config("tiny")["vae"], "block_out_channels": [4, 8], "mid_block_add_attention": False}
    path = tmp_path / "student.json"
    path.write_text(json.dumps({"vae": {**vae, **changes}}))
    return str(path)


def test_vae_distillation_learns_the_teachers_latent_space(phantom_dir, tmp_path):
    from diffusers import AutoencoderKL

    teacher_dir = tmp_path / "teacher"
    build_pipeline("tiny").vae.save_pretrained(teacher_dir)
    train_vae.main(["--teacher_vae_model_name_or_path", str(teacher_dir), "--model_config", _student_config(tmp_path),
                    "--train_data_dir", str(phantom_dir), "--image_column", "ffa_late", "source_image",
                    "--resolution", "32", "--max_train_steps", "40", "--learning_rate", "2e-3",
                    "--train_batch_size", "4", "--output_dir", str(tmp_path / "out")])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    before, after = metrics["before"]["teacher_agreement"], metrics["after"]["teacher_agreement"]
    assert after["decoder_psnr_vs_teacher"] > before["decoder_psnr_vs_teacher"]
    assert after["relative_latent_rmse"] < before["relative_latent_rmse"]
    teacher = AutoencoderKL.from_pretrained(teacher_dir)
    student = AutoencoderKL.from_pretrained(tmp_path / "out" / "vae")
    assert student.config.scaling_factor == teacher.config.scaling_factor
    assert student.config.block_out_channels == [4, 8] and not student.config.mid_block_add_attention


def test_decoder_only_distillation_keeps_the_teachers_encoder(phantom_dir, tmp_path):
    from ffa_pipeline.light_decoder_vae import LightDecoderAutoencoderKL, load_vae

    teacher_dir = tmp_path / "teacher"
    build_pipeline("tiny").vae.save_pretrained(teacher_dir)
    decoder = {"decoder_block_out_channels": [4, 8], "decoder_norm_num_groups": 2,
               "decoder_mid_block_add_attention": False}
    config = tmp_path / "decoder.json"
    config.write_text(json.dumps({"vae": decoder}))
    common = ["--teacher_vae_model_name_or_path", str(teacher_dir), "--train_decoder_only",
              "--train_data_dir", str(phantom_dir), "--image_column", "ffa_late", "source_image",
              "--resolution", "32", "--learning_rate", "2e-3", "--train_batch_size", "4"]
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({"vae": {**decoder, "block_out_channels": [16, 16]}}))
    with pytest.raises(ValueError, match="may set only .*decoder_block_out_channels.* not \\['block_out_channels'\\]"):
        train_vae.main(common + ["--model_config", str(wider), "--max_train_steps", "1",
                                 "--output_dir", str(tmp_path / "refused")])
    assert not (tmp_path / "refused" / "vae").exists()
    train_vae.main(common + ["--model_config", str(config), "--max_train_steps", "40",
                             "--output_dir", str(tmp_path / "out")])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    before, after = metrics["before"]["teacher_agreement"], metrics["after"]["teacher_agreement"]
    assert after["decoder_psnr_vs_teacher"] > before["decoder_psnr_vs_teacher"] + 1
    assert before["relative_latent_rmse"] == after["relative_latent_rmse"] == 0.0
    teacher, student = load_vae(teacher_dir), load_vae(tmp_path / "out" / "vae")
    assert type(student) is LightDecoderAutoencoderKL and student.config.decoder_block_out_channels == [4, 8]
    torch.testing.assert_close(student.encoder.state_dict(), teacher.encoder.state_dict())
    assert student.config.scaling_factor == teacher.config.scaling_factor


def test_vae_distillation_needs_the_teachers_latent_shape(phantom_dir, tmp_path):
    teacher_dir = tmp_path / "teacher"
    build_pipeline("tiny").vae.save_pretrained(teacher_dir)
    common = ["--teacher_vae_model_name_or_path", str(teacher_dir), "--train_data_dir", str(phantom_dir),
              "--image_column", "ffa_late", "--resolution", "32", "--max_train_steps", "1",
              "--output_dir", str(tmp_path / "out")]
    with pytest.raises(ValueError, match="2 latent channels .* the teacher 4"):
        train_vae.main(common + ["--model_config", _student_config(tmp_path, latent_channels=2)])
    with pytest.raises(SystemExit):
        train_vae.main(common + ["--pretrained_vae_model_name_or_path", str(teacher_dir)])
    assert not (tmp_path / "out" / "vae").exists()


def test_color_jitter_changes_the_inputs_only(phantom_dir):
    from ffa_pipeline.data import ColumnSpec, PairedFFADataset, resolve_labels
    from ffa_pipeline.vocab import DISEASES, MODALITIES, PHASES

    train = load_dataset(str(phantom_dir))["train"]
    spec = ColumnSpec.from_flags("source_image", "ffa_early", "ffa_early_seconds", "modality", "disease", None)
    labels = resolve_labels(train, spec, list(MODALITIES), list(DISEASES), dict(PHASES))
    plain, jittered = (PairedFFADataset(train, spec, labels, resolution=32, color_jitter=strength)
                       for strength in (0.0, 0.5))
    before, after, again = plain[0], jittered[0], jittered[0]
    assert torch.equal(before["target"], after["target"])
    assert not torch.allclose(before["source"], after["source"], atol=0.02)
    assert torch.equal(after["source"], again["source"])  # drawn from the row's seed: reproducible
    outside = before["source"].max(dim=0).values <= -0.96  # the black surround of the field of view stays black
    assert outside.any() and (after["source"][:, outside] == -1).all()


def test_bad_color_jitter_names_the_value(phantom_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_ffa.parse_args(["--model_config", "tiny", *phantom_args(phantom_dir, tmp_path), "--color_jitter", "2"])
    assert "--color_jitter must be in [0, 1], got 2.0" in capsys.readouterr().err


def test_input_representation_flag_is_recorded_and_used(phantom_dir, tmp_path):
    train_ffa.main(["--model_config", "tiny", *phantom_args(phantom_dir, tmp_path, "--max_train_steps", "2",
                                                             "--input_representation", "grey_ridges")])
    config = json.loads((tmp_path / "condition_encoder" / "config.json").read_text())
    assert config["input_representation"] == "grey_ridges"
    assert FFADiffusionPipeline.from_pretrained(tmp_path).input_representation == "grey_ridges"
    from ffa_pipeline.data import ColumnSpec, PairedFFADataset, resolve_labels
    from ffa_pipeline.vocab import DISEASES, MODALITIES, PHASES

    train = load_dataset(str(phantom_dir))["train"]
    spec = ColumnSpec.from_flags("source_image", "ffa_early", "ffa_early_seconds", "modality", "disease", None)
    labels = resolve_labels(train, spec, list(MODALITIES), list(DISEASES), dict(PHASES))
    rgb, ridges = (PairedFFADataset(train, spec, labels, resolution=32, input_representation=name)[0]
                   for name in ("rgb", "grey_ridges"))
    assert torch.equal(rgb["target"], ridges["target"]) and not torch.equal(rgb["source"], ridges["source"])


def test_native_resolution_ridges_flag_is_recorded_and_used(phantom_dir, tmp_path, capsys):
    """Sources of a listed modality get their ridge maps at their own resolution (64 px phantoms, a 32 px model)."""
    train_ffa.main(["--model_config", "tiny", *phantom_args(phantom_dir, tmp_path, "--max_train_steps", "1",
                    "--input_representation", "grey_ridges", "--native_resolution_ridges", "oct")])
    assert FFADiffusionPipeline.from_pretrained(tmp_path).native_resolution_ridges == ["oct"]
    with pytest.raises(ValueError, match=r"unknown modalities \['uwf'\]; allowed: \['cfp', 'oct', 'uwf_slo'\]"):
        train_ffa.main(["--model_config", "tiny", *phantom_args(phantom_dir, tmp_path / "bad",
                        "--native_resolution_ridges", "uwf")])
    from ffa_pipeline.data import ColumnSpec, PairedFFADataset, resolve_labels
    from ffa_pipeline.vocab import DISEASES, MODALITIES, PHASES

    train = load_dataset(str(phantom_dir))["train"]
    spec = ColumnSpec.from_flags("source_image", "ffa_early", "ffa_early_seconds", "modality", "disease", None)
    labels = resolve_labels(train, spec, list(MODALITIES), list(DISEASES), dict(PHASES))
    plain, native = (PairedFFADataset(train, spec, labels, resolution=32, input_representation="grey_ridges",
                                      native_ridge_modality_ids=ids) for ids in ((), [MODALITIES.index("oct")]))
    for row, modality in enumerate(train["modality"]):
        before, after = plain[row], native[row]
        assert torch.equal(before["target"], after["target"])
        assert torch.allclose(before["source"][0], after["source"][0], atol=1e-5)  # the same grey channel
        assert torch.equal(before["source"], after["source"]) == (modality != "oct")


def test_a_local_dataset_written_again_is_read_again(tmp_path):
    """datasets' cache served a regenerated phantom (a folder whose card lists `configs`) as the old one; the trainers
    must see the folder as it is now. Plain `load_dataset` returns [1, 1, 1] twice here (datasets 5.2)."""
    import shutil

    from datasets import Dataset

    from ffa_pipeline.data import load_dataset_fresh

    folder = tmp_path / "data"
    card = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n---\n"
    for value in (1, 2):
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "data").mkdir(parents=True)
        Dataset.from_dict({"x": [value] * 3}).to_parquet(folder / "data" / "train-00000-of-00001.parquet")
        (folder / "README.md").write_text(card)
        assert load_dataset_fresh(str(folder))["train"]["x"] == [value] * 3


def test_several_data_folders_train_as_one(phantom_dir, tmp_path):
    """The phantom and real angiograms with their rendered photos (make_angiogram_pairs.py) in one run; the second
    folder has other extra columns and fills one phase per row."""
    import make_angiogram_pairs
    from test_angiogram_pairs import write_layout

    pairs = tmp_path / "pairs"
    make_angiogram_pairs.main(["--input", str(write_layout(tmp_path / "ffa_real")), "--output_dir", str(pairs),
                               "--resolution", "64", "--phases", "arterial", "early", "late", "--diagnosis_phase",
                               "late"])
    out = tmp_path / "out"
    train_ffa.main(["--model_config", "tiny", *phantom_args(phantom_dir, out, "--max_train_steps", "2",
                                                            "--cache_latents")[2:],
                    "--train_data_dir", str(phantom_dir), str(pairs), str(pairs), "--max_train_samples", "3"])
    assert len(losses(out)) == 2
    card = (out / "README.md").read_text()
    assert f"Training data: {phantom_dir}, {pairs}, {pairs}" in card


def test_a_folder_without_the_columns_is_named(phantom_dir, tmp_path):
    from datasets import Dataset

    other = tmp_path / "other"
    Dataset.from_dict({"x": [1, 2]}).to_parquet(other / "data" / "train-00000-of-00001.parquet")
    with pytest.raises(ValueError, match=f"{other}: --source_image_column 'source_image' is not a column"):
        train_ffa.main(["--model_config", "tiny", *phantom_args(phantom_dir, tmp_path / "out", "--max_train_steps",
                                                                "1")[2:], "--train_data_dir", str(phantom_dir),
                        str(other)])


def test_a_folder_without_a_train_split_is_named(phantom_dir, tmp_path):
    from datasets import Dataset

    held_out = tmp_path / "held_out"
    Dataset.from_dict({"x": [1, 2]}).to_parquet(held_out / "data" / "test-00000-of-00001.parquet")
    with pytest.raises(ValueError, match=r"held_out: no 'train' split to train on; its splits: \['test'\]"):
        train_ffa.main(["--model_config", "tiny", *phantom_args(phantom_dir, tmp_path / "out", "--max_train_steps",
                                                                "1")[2:], "--train_data_dir", str(held_out)])


def _with_loss_masks(phantom_dir: Path, tmp_path: Path, mask_of) -> Path:
    """The phantom with a `loss_mask` column: `mask_of(row)` -> the row's mask image."""
    from datasets import Image

    def add(dataset):
        masks = [Image().encode_example(np.asarray(mask_of(row))) for row in dataset]
        return dataset.add_column("loss_mask", masks, feature=Image())

    return _rewritten(phantom_dir, tmp_path, add)


def test_loss_mask_is_framed_and_augmented_as_the_target(phantom_dir, tmp_path):
    from ffa_pipeline.data import ColumnSpec, PairedFFADataset, resolve_labels

    # the mask: the target inverted; what framing and rotation bring in counts (white), where the target is black
    data = _with_loss_masks(phantom_dir, tmp_path, lambda row: 255 - np.asarray(row["ffa_early"].convert("L")))
    train = load_dataset(str(data))["train"]
    spec = ColumnSpec.from_flags("source_image", "ffa_early", "ffa_early_seconds", "modality", "disease", None,
                                 "loss_mask")
    labels = resolve_labels(train, spec, ["cfp", "oct", "uwf_slo"], ["normal", "diabetic_retinopathy"],
                            {"early": 30.0})
    dataset = PairedFFADataset(train, spec, labels, resolution=32, random_flip=True, random_rotation=10,
                               random_scale=0.1)
    for row in range(len(dataset)):
        item = dataset[row]
        assert item["loss_mask"].shape == (1, 32, 32)
        torch.testing.assert_close(item["loss_mask"][0], (1 - item["target"][0]) / 2)


def test_masked_loss_is_the_mean_error_over_the_mask(tiny_pipe):
    """Per sample: the two halves' masked losses average to the unmasked loss; an all-black mask gives 0."""
    from argparse import Namespace

    from diffusers import DDPMScheduler

    latent = tiny_pipe.vae.config.latent_channels
    side = tiny_pipe.default_resolution // tiny_pipe.vae_scale_factor
    batch = {"target": torch.randn(1, latent, side, side), "source": torch.randn(1, latent, side, side),
             "partner": torch.zeros(1, latent, side, side), "modality": torch.tensor([0]),
             "disease": torch.tensor([0]), "phase_seconds": torch.tensor([30.0]), "has_partner": torch.tensor([False]),
             "partner_modality": torch.tensor([0])}
    models = {"unet": tiny_pipe.unet, "condition_encoder": tiny_pipe.condition_encoder,
              "disease_embedding": tiny_pipe.disease_embedding}
    args = Namespace(noise_offset=0.0, conditioning_dropout_prob=0.0, alignment_loss_weight=0.0, snr_gamma=None)
    scheduler = DDPMScheduler.from_config(tiny_pipe.scheduler.config)

    def loss(mask: torch.Tensor | None) -> float:
        masked = batch if mask is None else {**batch, "loss_mask": mask[None, None]}
        with torch.no_grad():
            return train_ffa.training_loss(masked, tiny_pipe, models, scheduler, args, torch.Generator().manual_seed(0),
                                           cached=True)[0].item()

    left = torch.zeros(2 * side, 2 * side)  # the mask at twice the latents' size, as pixels are
    left[:, :side] = 1
    assert loss(left) != pytest.approx(loss(1 - left))
    assert (loss(left) + loss(1 - left)) / 2 == pytest.approx(loss(None), rel=1e-5)
    assert loss(torch.zeros(2 * side, 2 * side)) == 0.0


def test_a_loss_mask_column_trains_beside_folders_without_it(phantom_dir, tmp_path):
    """All-white masks train exactly as no mask; a folder without the column trains beside one with it (every pixel
    counts there); a column that no folder has is named."""
    def run(name: str, *folders: Path, mask: bool = True) -> list[float]:
        flags = ["--loss_mask_column", "loss_mask"] if mask else []
        train_ffa.main(["--model_config", "tiny", *phantom_args(phantom_dir, tmp_path / name, "--max_train_steps",
                                                                "2")[2:], "--train_data_dir", *map(str, folders),
                        "--cache_latents", *flags])
        return losses(tmp_path / name)

    side = load_dataset(str(phantom_dir))["train"][0]["source_image"].size[0]
    white = _with_loss_masks(phantom_dir, tmp_path / "white", lambda row: np.full((side, side), 255, np.uint8))
    assert np.allclose(run("white", white), run("plain", phantom_dir, mask=False), rtol=1e-5)
    mixed = run("mixed", white, phantom_dir)
    assert len(mixed) == 2 and np.isfinite(mixed).all()
    with pytest.raises(ValueError, match=r"--loss_mask_column 'loss_mask' is not a column of any dataset; columns: "
                                         r"\[.*'source_image'"):
        run("none", phantom_dir)


def test_data_is_trained_at_the_side_the_model_draws_its_modalities_at(phantom_dir, tmp_path):
    pipe = build_pipeline("tiny", seed=0)
    larger = pipe.default_resolution + pipe.size_multiple
    pipe.register_to_config(modality_resolutions={"oct": larger})
    args = ["--model_config", "tiny", *phantom_args(phantom_dir, tmp_path)]
    without_side = args[:args.index("--resolution")] + args[args.index("--resolution") + 2:]
    data = train_ffa.load_data(train_ffa.parse_args(without_side), pipe)
    oct_rows = data.labels["modality"] == pipe.modalities.index("oct")
    assert oct_rows.any() and not oct_rows.all()
    assert set(data.sides[oct_rows]) == {larger} and set(data.sides[~oct_rows]) == {pipe.default_resolution}
    assert data[int(np.flatnonzero(oct_rows)[0])]["source"].shape[-1] == larger
    assert data[int(np.flatnonzero(~oct_rows)[0])]["target"].shape[-1] == pipe.default_resolution
    assert set(train_ffa.load_data(train_ffa.parse_args(args), pipe).sides) == {32}


def test_sides_batch_apart_every_row_once_an_epoch():
    from ffa_pipeline.data import SideBatchSampler

    sides = np.array([32] * 7 + [64] * 3)
    sampler = SideBatchSampler(sides, batch_size=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2 + 1
    assert all(len(batch) == 4 and len(set(sides[batch])) == 1 for batch in batches)
    assert set(sum(batches, [])) == set(range(10))
    assert list(sampler) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    from accelerate.data_loader import BatchSamplerShard  # what `accelerate launch` gives each of 2 processes

    shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=i)) for i in range(2)]
    assert all(len(batch) == 4 and len(set(sides[batch])) == 1 for shard in shards for batch in shard)
    assert set(sum(shards[0] + shards[1], [])) == set(range(10))


@pytest.mark.parametrize("cached", [False, True])
def test_a_run_trains_each_modality_at_its_side(phantom_dir, tmp_path, cached):
    """A model that draws OCT larger than photos trains on both in one run, each batch at one side, and resumes
    with the same batches."""
    pipe = build_pipeline("tiny", seed=0)
    larger = pipe.default_resolution + pipe.size_multiple
    pipe.register_to_config(modality_resolutions={"oct": larger})
    pipe.save_pretrained(tmp_path / "start")
    args = phantom_args(phantom_dir, tmp_path / "out", "--pretrained_ffa_model", str(tmp_path / "start"),
                        "--train_batch_size", "2", "--checkpointing_steps", "2", *(["--cache_latents"] * cached))
    args = args[:args.index("--resolution")] + args[args.index("--resolution") + 2:]
    train_ffa.main([*args, "--max_train_steps", "3"])
    train_ffa.main([*args, "--max_train_steps", "5", "--resume_from_checkpoint", "latest"])
    curve = losses(tmp_path / "out")  # steps 1-3, then 3-5 again from the checkpoint of step 2
    assert len(curve) == 6 and np.isfinite(curve).all() and curve[2] == curve[3]
    trained = FFADiffusionPipeline.from_pretrained(tmp_path / "out")
    assert trained.resolution_for("oct") == larger


def test_guidance_target_is_the_pipelines_guided_prediction(tiny_pipe):
    """The distillation target is what the pipeline's two-branch image guidance computes at the same scale; a
    student equal to its teacher learns nothing at scale 1."""
    from argparse import Namespace

    from diffusers import DDPMScheduler

    latent = tiny_pipe.vae.config.latent_channels
    side = tiny_pipe.default_resolution // tiny_pipe.vae_scale_factor
    generator = torch.Generator().manual_seed(0)
    source, noisy = torch.randn(2, 2, latent, side, side, generator=generator)
    modality, disease, phase = torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([20.0, 300.0])
    timesteps, keep = torch.tensor([999, 400]), torch.tensor([False, False])
    teacher = train_ffa.frozen_teacher(tiny_pipe)
    batch = {"modality": modality, "disease": disease, "phase_seconds": phase}
    with torch.no_grad():
        target = train_ffa.guided_teacher_prediction(teacher, noisy, timesteps, source, batch, keep, keep, 2.5)
        tiny_pipe._image_guidance_scale, tiny_pipe._label_guidance_scale = 2.5, 1.0
        branches = tiny_pipe._guidance_branches()
        shared, context, labels = tiny_pipe._conditioning(source, modality, disease, phase, branches)
        predictions = tiny_pipe.unet(torch.cat([noisy.repeat(2, 1, 1, 1), shared], dim=1), timesteps.repeat(2),
                                     encoder_hidden_states=context, class_labels=labels, return_dict=False)[0]
    assert branches == ("full", "labels_only")
    torch.testing.assert_close(target, tiny_pipe._combine_guidance(predictions, branches))

    models = {"unet": tiny_pipe.unet, "condition_encoder": tiny_pipe.condition_encoder,
              "disease_embedding": tiny_pipe.disease_embedding, "teacher": teacher}
    cached = {"target": noisy, "source": source, "partner": torch.zeros_like(source), "has_partner": keep,
              "partner_modality": modality, **batch}
    scheduler = DDPMScheduler.from_config(tiny_pipe.scheduler.config)

    def loss(scale: float) -> float:
        args = Namespace(noise_offset=0.0, conditioning_dropout_prob=0.2, alignment_loss_weight=0.0, snr_gamma=None,
                         guidance_distillation_scale=scale)
        with torch.no_grad():
            return train_ffa.training_loss(cached, tiny_pipe, models, scheduler, args,
                                           torch.Generator().manual_seed(0), cached=True)[0].item()

    assert loss(1.0) == pytest.approx(0.0, abs=1e-10)
    assert loss(2.5) > 0


def test_guidance_distillation_run_learns_the_guided_prediction(phantom_dir, base_model, tmp_path):
    """A short distillation run lowers its loss and saves a model that draws with one branch by default."""
    train_ffa.main(["--pretrained_ffa_model", str(base_model), "--train_full_unet", "--guidance_distillation_scale",
                    "3", "--cache_latents", *phantom_args(phantom_dir, tmp_path, "--max_train_steps", "30",
                                                          "--learning_rate", "2e-3", "--checkpointing_steps", "100")])
    curve = losses(tmp_path)
    assert np.isfinite(curve).all() and np.mean(curve[-10:]) < np.mean(curve[:10])
    pipe = FFADiffusionPipeline.from_pretrained(tmp_path)
    assert pipe.config.default_image_guidance_scale == 1.0
    assert "Guidance-distilled" in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model_config", "tiny", "--guidance_distillation_scale", "2"], "give --pretrained_ffa_model"),
        (["--pretrained_ffa_model", "m", "--guidance_distillation_scale", "0.5"],
         "--guidance_distillation_scale must be >= 1, got 0.5"),
        (["--pretrained_ffa_model", "m", "--guidance_distillation_scale", "2", "--prediction_type", "epsilon"],
         "drop --prediction_type epsilon"),
    ],
)
def test_bad_guidance_distillation_flags_are_named(phantom_dir, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        train_ffa.parse_args([*phantom_args(phantom_dir, tmp_path), *extra])
    assert message in capsys.readouterr().err


def test_step_distillation_target_lands_where_two_teacher_steps_go():
    """One DDIM step of diffusers' own scheduler, at the student's half of the steps, with the target as the model
    output, reaches the sample that two teacher steps reach (both prediction types, with and without image
    guidance); a student equal to its teacher
    has a non-zero loss (it must learn to skip a step)."""
    from argparse import Namespace
    from copy import deepcopy

    from diffusers import DDIMScheduler, DDPMScheduler

    tiny_pipe = build_pipeline("tiny", seed=0)
    latent = tiny_pipe.vae.config.latent_channels
    side = tiny_pipe.default_resolution // tiny_pipe.vae_scale_factor
    generator = torch.Generator().manual_seed(0)
    source, noisy = torch.randn(2, 2, latent, side, side, generator=generator)
    keep = torch.tensor([False, False])
    batch = {"modality": torch.tensor([0, 1]), "disease": torch.tensor([1, 0]),
             "phase_seconds": torch.tensor([20.0, 300.0])}
    teacher = train_ffa.frozen_teacher(tiny_pipe)
    for prediction_type, guidance in (("epsilon", 1.0), ("v_prediction", 1.0), ("v_prediction", 2.0)):
        settings = {k: v for k, v in tiny_pipe.scheduler.config.items() if not k.startswith("_")}
        tiny_pipe.register_modules(scheduler=DDIMScheduler(**{**settings, "prediction_type": prediction_type,
                                                              "timestep_spacing": "trailing"}))
        tiny_pipe.register_to_config(default_num_inference_steps=4, default_image_guidance_scale=guidance,
                                     default_label_guidance_scale=1.0)
        schedule = train_ffa.teacher_step_schedule(tiny_pipe)
        for first in (0, 2):
            index = torch.tensor([first, first])
            with torch.no_grad():
                target = train_ffa.two_step_teacher_target(teacher, schedule, index, noisy, source, batch, keep, keep)
                scheduler = deepcopy(tiny_pipe.scheduler)
                scheduler.set_timesteps(4)
                sample = noisy
                for t in scheduler.timesteps[first:first + 2]:
                    prediction = train_ffa.guided_teacher_prediction(teacher, sample, t.repeat(2), source, batch,
                                                                     keep, keep, guidance)
                    sample = scheduler.step(prediction, t, sample).prev_sample
                student = deepcopy(tiny_pipe.scheduler)
                student.set_timesteps(2)
                assert student.timesteps[first // 2] == scheduler.timesteps[first]
                landed = student.step(target, student.timesteps[first // 2], noisy).prev_sample
            torch.testing.assert_close(landed, sample, rtol=1e-4, atol=1e-4)

    models = {"unet": tiny_pipe.unet, "condition_encoder": tiny_pipe.condition_encoder,
              "disease_embedding": tiny_pipe.disease_embedding, "teacher": teacher, "step_schedule": schedule}
    cached = {"target": noisy, "source": source, "partner": torch.zeros_like(source), "has_partner": keep,
              "partner_modality": batch["modality"], **batch}
    args = Namespace(noise_offset=0.0, conditioning_dropout_prob=0.2, alignment_loss_weight=0.0, snr_gamma=None)
    with torch.no_grad():
        loss = train_ffa.training_loss(cached, tiny_pipe, models, DDPMScheduler.from_config(tiny_pipe.scheduler.config),
                                       args, torch.Generator().manual_seed(0), cached=True)[0].item()
    assert loss > 0


def test_step_distillation_run_halves_the_default_steps(phantom_dir, tmp_path):
    """A short run from a model sampling in 4 steps lowers its loss and saves a model that samples in 2."""
    teacher = tmp_path / "teacher"
    pipe = build_pipeline("tiny", seed=1)
    pipe.register_to_config(default_num_inference_steps=4, default_image_guidance_scale=2.0,
                            default_label_guidance_scale=1.0)
    pipe.save_pretrained(teacher)
    output = tmp_path / "student"
    train_ffa.main(["--pretrained_ffa_model", str(teacher), "--train_full_unet", "--step_distillation",
                    "--cache_latents", *phantom_args(phantom_dir, output, "--max_train_steps", "30",
                                                     "--learning_rate", "2e-3", "--checkpointing_steps", "100")])
    curve = losses(output)
    assert np.isfinite(curve).all() and np.mean(curve[-10:]) < np.mean(curve[:10])
    assert FFADiffusionPipeline.from_pretrained(output).config.default_num_inference_steps == 2
    assert "Step-distilled" in (output / "README.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model_config", "tiny", "--step_distillation"], "give --pretrained_ffa_model"),
        (["--pretrained_ffa_model", "m", "--step_distillation", "--prediction_type", "epsilon"],
         "drop --prediction_type epsilon"),
        (["--pretrained_ffa_model", "m", "--step_distillation", "--guidance_distillation_scale", "2"],
         "one thing at a time"),
    ],
)
def test_bad_step_distillation_flags_are_named(phantom_dir, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        train_ffa.parse_args([*phantom_args(phantom_dir, tmp_path), *extra])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"default_num_inference_steps": 3}, "it has 3, an odd number"),
        ({"default_label_guidance_scale": 1.5}, "label guidance is 1.5 (allowed: 1)"),
        ({"default_image_guidance_scale": 2.0, "default_guidance_interval": [0.0, 0.5]},
         "guidance interval is [0.0, 0.5]"),
    ],
)
def test_a_teacher_the_step_distillation_cannot_follow_is_named(settings, message):
    pipe = build_pipeline("tiny", seed=0)
    pipe.register_to_config(**{"default_num_inference_steps": 4, "default_image_guidance_scale": 1.0,
                               "default_label_guidance_scale": 1.0, **settings})
    with pytest.raises(ValueError, match=re.escape(message)):
        train_ffa.teacher_step_schedule(pipe)
