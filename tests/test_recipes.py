"""Recipes whose long tables are measured over several runs: the pieces must join into one honest table."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def load_recipe(name: str = "domain_adaptation"):
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", RECIPES / f"{name}.py")
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


def few_shot_result(seeds, settings=None) -> dict:
    return {"dataset": "sst2", "shots": 8, "seeds": seeds, "encoder": "minilm", "evaluation": "872 rows",
            "settings": settings or {"epochs": 8}, "systems": ["nlptl", "setfit"], "command": "python later",
            "per_seed": []}


def test_few_shot_resume_keeps_finished_seeds_and_refuses_other_settings(tmp_path):
    recipe = load_recipe("few_shot")
    earlier = few_shot_result([0, 1, 2], {"epochs": 8})
    earlier["command"] = "python first"
    earlier["per_seed"] = [  # seed 1 lost SetFit (its run was cut short): it must run again
        {"seed": 0, "nlptl": 0.8, "nlptl_seconds": 10.0, "nlptl_cpu_seconds": 20.0,
         "setfit": 0.7, "setfit_seconds": 100.0, "setfit_cpu_seconds": 200.0},
        {"seed": 1, "nlptl": 0.9, "nlptl_seconds": 10.0, "nlptl_cpu_seconds": 20.0}]
    path = tmp_path / "few_shot.json"
    path.write_text(json.dumps(earlier))

    result = few_shot_result([0, 1, 2, 3, 4])
    assert recipe.resumed(path, result) == {0}
    assert [row["seed"] for row in result["per_seed"]] == [0]
    assert result["nlptl"]["mean"] == 0.8 and result["setfit"]["seconds"] == 100.0
    assert result["command"] == "python first ; python later" and result["seeds"] == [0, 1, 2, 3, 4]

    with pytest.raises(SystemExit, match="settings"):
        recipe.resumed(path, few_shot_result([0, 1], {"epochs": 16}))
    assert recipe.resumed(tmp_path / "absent.json", few_shot_result([0])) == set()
