"""The domain-adaptation recipe's merge: tables measured in several runs become one report."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "domain_adaptation.py"


def load_recipe():
    spec = importlib.util.spec_from_file_location("domain_adaptation_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_part(directory: Path, rows: dict, seconds: float, command: str) -> str:
    directory.mkdir()
    part = {"pairs": rows, "a_distance": {"books->dvd": 1.7}, "seconds": seconds,
            "settings": {"command": command, "seed": 0, "encoder": "minilm", "max_length": 128, "fit": {},
                         "dapt": {"texts": 2000}}}
    (directory / "domain_adaptation.json").write_text(json.dumps(part))
    return str(directory)


def test_merging_a_merged_table_keeps_every_run_and_later_rows_replace_earlier_ones(tmp_path):
    recipe = load_recipe()
    a = write_part(tmp_path / "a", {"books->dvd": {"source_only": 0.75, "dapt": 0.70}}, 100.0, "run a")
    b = write_part(tmp_path / "b", {"books->dvd": {"mmd": 0.74}}, 50.0, "run b")
    first = tmp_path / "first"
    first.mkdir()
    recipe.merge([a, b], ["source_only", "mmd", "dapt"], first)
    c = write_part(tmp_path / "c", {"books->dvd": {"dapt": 0.76}}, 20.0, "run c")
    final = tmp_path / "final"
    final.mkdir()
    recipe.merge([str(first), c], ["source_only", "mmd", "dapt"], final)

    merged = json.loads((final / "domain_adaptation.json").read_text())
    assert [run["command"] for run in merged["runs"]] == ["run a", "run b", "run c"]
    assert merged["pairs"]["books->dvd"] == {"source_only": 0.75, "dapt": 0.76, "mmd": 0.74}
    report = (final / "report.md").read_text()
    assert "| books->dvd | 1.70 | 75.0 | 74.0* | 76.0 |" in report
    assert (final / "domain_adaptation.png").exists()
