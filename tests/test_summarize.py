"""experiments/summarize.py: the experiments' README tables from evaluate.py reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "summarize.py"
spec = importlib.util.spec_from_file_location("summarize", SCRIPT)
summarize = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summarize)


def stats(n: int, value: float) -> dict:
    metric = {"mean": value, "std": 0.0, "n": n}
    return {"n": n, **{key: metric for key in summarize.METRICS}}


def write_report(folder: Path, groups: dict, baseline: bool) -> Path:
    methods = {"diffusion": {"label": "diffusion", "phases": groups}}
    if baseline:
        methods["inverted_green"] = {"label": "inverted green", "phases": groups}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"methods": methods}))
    return folder


def test_rows_per_run_then_baselines_once(tmp_path):
    first = write_report(tmp_path / "a", {"early": stats(2, 0.5)}, baseline=True)
    second = write_report(tmp_path / "b", {"early": stats(2, 0.7)}, baseline=False)
    lines = summarize.summarize([("A", first), ("B", second)]).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| A", "| B", "| baseline: inverted green"]


def test_pooling_by_modality_weights_by_pairs(tmp_path):
    groups = {"early/cfp": stats(1, 0.2), "late/cfp": stats(3, 0.6), "early/oct": stats(2, 0.9)}
    table = summarize.summarize([("A", write_report(tmp_path / "a", groups, baseline=False))], by="modality")
    rows = {line.split(" | ")[1]: line.split(" | ") for line in table.splitlines()[2:]}
    assert rows["cfp"][2] == "4" and rows["cfp"][4] == "0.500"  # SSIM (1 x 0.2 + 3 x 0.6) / 4
    assert rows["oct"][2] == "2" and rows["oct"][4] == "0.900"


def test_bad_argument_names_the_value(tmp_path, capsys):
    with pytest.raises(SystemExit):
        summarize.main([f"A={tmp_path}"])
    assert str(tmp_path) in capsys.readouterr().err
