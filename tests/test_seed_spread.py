"""experiments/seed_spread.py: counts over seeds of what the real-photo check finds, beside the paired metrics."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "seed_spread.py"
spec = importlib.util.spec_from_file_location("seed_spread", SCRIPT)
seed_spread = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed_spread)


def write_seed(folder: Path, seed: int, fovea_offset: float, disc_offset: float, psnr: float,
               ridges: float = 0.6) -> None:
    skimage = {"fovea_offset": fovea_offset, "fovea_darkness_as_real_angiograms": 0.4, "vessel_contrast_output": 2.0}
    check = {seed_spread.SKIMAGE: {phase: skimage for phase in seed_spread.PHASES}}
    for eye in seed_spread.UWF_EYES:
        check[f"UWF test {eye} (SLO)"] = {phase: {"disc_offset_vs_real": disc_offset, "fine_vessel_ridge_auc": ridges,
                                                  "fine_vessel_ridge_auc_flipped_control": 0.5}
                                          for phase in seed_spread.PHASES}
    views = {name: {"fovea_offset": fovea_offset} for name in ("whole", "left 70%", "right 70%", "bottom 70%")}
    check[seed_spread.REGISTERED] = {f"uwf_test_{eye}": views for eye in seed_spread.REGISTERED_EYES}
    vessels = {phase: {"ridge_auc": ridges + 0.05, "ridge_auc_flipped_control": 0.6} for phase in seed_spread.PHASES}
    check[seed_spread.REGISTERED_VESSELS] = {f"uwf_test_{eye}": vessels for eye in seed_spread.REGISTERED_EYES}
    metric = {"psnr": {"mean": psnr}, "ms_ssim": {"mean": 0.5}}
    evaluation = {"methods": {"diffusion": {"phases": {phase: metric for phase in seed_spread.PHASES}}}}
    for name, report, file in (("rpc", check, "real_photo_check.json"), ("eval", evaluation, "metrics.json")):
        (folder / f"{name}-seed{seed}").mkdir(parents=True)
        (folder / f"{name}-seed{seed}" / file).write_text(json.dumps(report))


def test_counts_over_seeds(tmp_path: Path) -> None:
    write_seed(tmp_path, 0, fovea_offset=0.01, disc_offset=0.05, psnr=20.0)
    write_seed(tmp_path, 1, fovea_offset=0.30, disc_offset=0.20, psnr=22.0, ridges=0.7)
    table = seed_spread.table([("run", tmp_path)], seeds=[0, 1]).splitlines()
    assert len(table) == 3 and table[2].startswith("| run |")
    cells = [cell.strip() for cell in table[2].strip("|").split("|")]
    assert cells[1] == "2 of 4"  # the skimage fovea: found early and late with seed 0 only
    assert cells[4] == "6 of 12 (2 / 2 / 2)"  # each eye's disc found in both phases with seed 0 only
    assert cells[5] == "1 of 2, 3 of 6 / 1 of 2, 3 of 6"
    assert cells[6] == "21.00 / 21.00"
    assert cells[8:] == ["0.650 (0.500)", "0.700 (0.600)"]  # vessel ridges: means over seeds, eyes and phases


def test_missing_seed_names_the_file(tmp_path: Path) -> None:
    write_seed(tmp_path, 0, fovea_offset=0.01, disc_offset=0.05, psnr=20.0)
    with pytest.raises(FileNotFoundError, match="rpc-seed1"):
        seed_spread.table([("run", tmp_path)], seeds=[0, 1])


def test_bad_run_argument() -> None:
    with pytest.raises(SystemExit):
        seed_spread.main(["no-equals-sign"])
