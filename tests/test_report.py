"""Evaluation reports from run directories: files, verdicts, flags, plots and bad input."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from nlptl.report import write_report  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVAL, OTHER_EVAL = "e" * 64, "f" * 64
LABELS = ["negative", "neutral", "positive"]


def make_run(root: Path, name: str, accuracy: float, *, baseline: str | None = None, strategy: str = "full",
             train_size: int = 200, trainable: int = 22_700_000, history: bool = True, eval_print: str = EVAL,
             task: str = "text-classification", predictions: dict | None = None) -> Path:
    """A run directory as nlptl.runs writes it; classification scores as fractions, like nlptl.metrics."""
    run = root / name
    run.mkdir(parents=True)
    config = {"name": name, "task": task, "dataset": "toy-sentiment", "train_file": None, "eval_file": None,
              "encoder": None if baseline == "tfidf_lr" else "tiny-bert", "encoder_kind": None,
              "strategy": strategy, "baseline": baseline, "seed": 13, "fit": {"epochs": 3, "learning_rate": 2e-5},
              "environment": {"python": "3.11.2", "torch": "2.13.0", "nlptl": "0.1.0", "cpu_count": 2},
              "data_fingerprint": {"train": f"{train_size:064x}", "eval": eval_print},
              "command": f"nlptl train --name {name} --seed 13"}
    if task == "extractive-qa":
        metrics = {"exact_match": accuracy - 10, "f1": accuracy}
        epochs = [{"epoch": e, "train_loss": 3.0 / e, "f1": accuracy - 10 / e} for e in (1, 2, 3)]
    else:
        fraction = accuracy / 100
        metrics = {"accuracy": fraction, "macro_f1": fraction - 0.05, "mcc": fraction - 0.3}
        epochs = [{"epoch": e, "train_loss": 1.2 / e, "accuracy": fraction - 0.1 / e, "eval_loss": 0.9 / e,
                   "trainable_groups": ["head"]} for e in (1, 2, 3)]
    record = {"metrics": metrics, "history": epochs if history else [], "train_seconds": 125.0,
              "trainable_parameters": trainable, "total_parameters": 22_713_000, "peak_memory_mb": 812.4,
              "train_size": train_size, "eval_size": 12}
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.json").write_text(json.dumps(record))
    if task != "extractive-qa":
        predictions = predictions or {"labels": LABELS, "references": [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2],
                                      "predictions": [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2]}
        (run / "predictions.json").write_text(json.dumps(predictions))
    return run


@pytest.fixture
def runs(tmp_path) -> dict[str, Path]:
    root = tmp_path / "runs"
    return {
        "scratch": make_run(root, "scratch", 70.0, baseline="from_scratch", trainable=22_713_000),
        "tfidf": make_run(root, "tfidf", 65.0, baseline="tfidf_lr", trainable=1_503, history=False),
        "full": make_run(root, "full", 88.0, strategy="full"),
        "frozen": make_run(root, "frozen", 60.0, strategy="feature_extraction", trainable=2_307),
        "full-50": make_run(root, "full-50", 75.0, strategy="full", train_size=50),
    }


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The comparison table (the first one in the file) as run name -> cells."""
    table = markdown.split("## Results", 1)[1].split("\n\n#", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]  # skip header and ---
    return {cells[0]: cells for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows)}


def test_report_writes_markdown_json_and_readable_pngs(runs, tmp_path):
    out = tmp_path / "report"
    path = write_report(list(runs.values()), out, title="Toy sentiment")
    assert path == out / "report.md"
    report = json.loads((out / "report.json").read_text())
    assert set(report["plots"].values()) == {"learning_curves.png", "confusion_matrix.png", "per_class.png",
                                             "size_curve.png"}
    for file_name in report["plots"].values():
        assert (out / file_name).read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(out / file_name) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 300
            assert len(set(image.convert("L").getdata())) > 10, f"{file_name} looks blank"
        assert f"]({file_name})" in path.read_text()  # embedded in the markdown
    assert not list(out.glob(".*tmp"))  # no temporary files left behind
    markdown = path.read_text()
    assert markdown.startswith("# Toy sentiment\n")
    assert "## Reproducibility" in markdown
    for run in runs:
        assert f"nlptl train --name {run} --seed 13" in markdown
    assert "e" * 64 in markdown and "Seed: 13" in markdown and "torch 2.13.0" in markdown


def test_negative_transfer_flags_exactly_the_transfer_run_below_scratch(runs, tmp_path):
    write_report(list(runs.values()), tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    flags = {run["name"]: run["negative_transfer"] for run in report["runs"]}
    assert flags == {"scratch": False, "tfidf": False, "full": False, "frozen": True, "full-50": False}
    assert report["negative_transfer_runs"] == ["frozen"]
    frozen = next(run for run in report["runs"] if run["name"] == "frozen")
    assert frozen["compared_with"] == ["scratch"] and frozen["gain_vs_scratch"] == pytest.approx(-10.0)
    assert report["best_run"] == "full"
    markdown = (tmp_path / "report" / "report.md").read_text()
    summary = markdown.split("## Results")[0]
    assert "Best: **full**" in summary and "Transfer helped" in summary
    assert re.search(r"Negative transfer\*\*: frozen \(60\.00 vs 70\.00\)", summary)
    rows = table_rows(markdown)
    assert "NEGATIVE TRANSFER" in rows["frozen"][-1]
    assert [name for name, cells in rows.items() if "NEGATIVE TRANSFER" in cells[-1]] == ["frozen"]


def test_table_has_one_row_per_run_with_its_numbers(runs, tmp_path):
    rows = table_rows(write_report(list(runs.values()), tmp_path / "report").read_text())
    assert list(rows) == ["scratch", "tfidf", "full", "frozen", "full-50"]
    # Run | Strategy | accuracy | macro_f1 | mcc | vs scratch | time | params | memory | size | flags
    assert rows["full"][1:] == ["full", "**88.00**", "83.00", "58.00", "+18.00", "2m 05s", "22.7M", "812", "200",
                                "best"]
    assert rows["tfidf"][1:4] == ["tfidf_lr (baseline)", "65.00", "60.00"] and rows["tfidf"][7] == "1.5k"
    assert rows["tfidf"][5] == "" and rows["scratch"][5] == ""  # baselines are not compared with scratch
    assert rows["frozen"][1:3] == ["feature_extraction", "60.00"] and rows["frozen"][5] == "-10.00"
    assert rows["full-50"][9] == "50"


def test_per_class_scores_of_the_best_run(tmp_path):
    root = tmp_path / "runs"
    worse = {"labels": LABELS, "references": [0, 1, 2], "predictions": [2, 2, 2]}
    runs = [make_run(root, "scratch", 40.0, baseline="from_scratch", predictions=worse), make_run(root, "full", 90.0)]
    write_report(runs, tmp_path / "report")
    per_class = json.loads((tmp_path / "report" / "report.json").read_text())["per_class"]
    assert per_class["run"] == "full" and per_class["labels"] == LABELS
    assert per_class["confusion_matrix"] == [[3, 1, 0], [0, 2, 2], [0, 0, 4]]
    assert per_class["precision"] == pytest.approx([100.0, 200 / 3, 200 / 3])
    assert per_class["recall"] == pytest.approx([75.0, 50.0, 100.0])
    assert per_class["support"] == [4, 4, 4]


def test_size_curve_only_when_a_strategy_has_several_sizes(runs, tmp_path):
    out = tmp_path / "report"
    write_report(list(runs.values()), out)
    assert (out / "size_curve.png").is_file()
    same_size = [path for name, path in runs.items() if name != "full-50"]  # sizes differ only across strategies
    write_report(same_size, out)
    assert not (out / "size_curve.png").exists()  # the earlier report's plot is removed, not left stale
    assert "size_curve" not in json.loads((out / "report.json").read_text())["plots"]
    assert "size_curve.png" not in (out / "report.md").read_text()


def test_transfer_is_only_compared_with_scratch_on_the_same_eval_data(tmp_path):
    root = tmp_path / "runs"
    runs = [make_run(root, "scratch", 70.0, baseline="from_scratch"),
            make_run(root, "other-eval", 50.0, eval_print=OTHER_EVAL)]
    write_report(runs, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["negative_transfer_runs"] == []
    assert report["runs"][1]["gain_vs_scratch"] is None
    assert "no from-scratch baseline on the same eval data" in report["summary"]


def test_transfer_is_compared_with_scratch_on_the_same_or_nearest_smaller_labelled_size(tmp_path):
    root = tmp_path / "runs"
    runs = [make_run(root, "scratch-200", 70.0, baseline="from_scratch"),
            make_run(root, "scratch-50", 55.0, baseline="from_scratch", train_size=50),
            make_run(root, "full-50", 62.0, train_size=50),  # below scratch-200, above scratch-50
            make_run(root, "full-1000", 68.0, train_size=1000),  # no scratch at 1000; nearest smaller is 200
            make_run(root, "full-20", 40.0, train_size=20)]  # scratch only on more labels: not judged
    write_report(runs, tmp_path / "report")
    entries = {run["name"]: run for run in json.loads((tmp_path / "report" / "report.json").read_text())["runs"]}
    assert entries["full-50"]["compared_with"] == ["scratch-50"] and not entries["full-50"]["negative_transfer"]
    assert entries["full-1000"]["compared_with"] == ["scratch-200"] and entries["full-1000"]["negative_transfer"]
    assert entries["full-20"]["compared_with"] == [] and not entries["full-20"]["negative_transfer"]


def test_question_answering_report_ranks_on_f1_without_class_plots(tmp_path):
    root = tmp_path / "runs"
    runs = [make_run(root, "scratch", 30.0, baseline="from_scratch", task="extractive-qa"),
            make_run(root, "full", 80.0, task="extractive-qa")]
    markdown = write_report(runs, tmp_path / "report").read_text()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["primary_metric"] == "f1" and report["best_run"] == "full"
    assert set(report["plots"]) == {"learning_curves"}
    assert table_rows(markdown)["full"][2:4] == ["**80.00**", "70.00"]  # f1, then exact_match; not rescaled
    assert "Transfer helped" in report["summary"]


@pytest.mark.parametrize("missing", ["metrics.json", "config.json"])
def test_run_directory_without_its_files_is_named_in_the_error(runs, tmp_path, missing):
    (runs["frozen"] / missing).unlink()
    with pytest.raises(FileNotFoundError, match=rf"frozen.*has no {missing}"):
        write_report(list(runs.values()), tmp_path / "report")
    assert not (tmp_path / "report").exists()  # nothing written for bad input


def test_runs_of_different_tasks_are_refused(tmp_path):
    root = tmp_path / "runs"
    runs = [make_run(root, "clf", 80.0), make_run(root, "qa", 70.0, task="extractive-qa")]
    with pytest.raises(ValueError, match="different tasks.*extractive-qa.*text-classification"):
        write_report(runs, tmp_path / "report")


def test_empty_list_is_refused(tmp_path):
    with pytest.raises(ValueError, match="non-empty list of run directories"):
        write_report([], tmp_path / "report")


def test_a_failing_report_leaves_the_previous_one_intact(runs, tmp_path):
    out = tmp_path / "report"
    before = write_report(list(runs.values()), out).read_text()
    broken = make_run(tmp_path / "more", "broken", 95.0, predictions={"labels": LABELS, "references": [0, 7],
                                                                      "predictions": [0, 1]})
    with pytest.raises(ValueError, match=r"broken.*predictions\.json.*7"):
        write_report([*runs.values(), broken], out)
    assert (out / "report.md").read_text() == before
    assert not list(out.glob(".*tmp"))


def test_a_crash_while_writing_never_leaves_a_half_written_markdown(runs, tmp_path, monkeypatch):
    import nlptl.report

    out = tmp_path / "report"
    before = write_report(list(runs.values()), out).read_text()

    def crash(report):
        raise RuntimeError("simulated crash while rendering")

    monkeypatch.setattr(nlptl.report, "render_markdown", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_report(list(runs.values())[:3], out)
    assert (out / "report.md").read_text() == before
    assert not list(out.glob(".*tmp"))


def test_token_classification_report_has_the_per_type_table_and_the_entity_confusion(tmp_path):
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-LOC", "O"]]
    guess = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "O", "B-LOC", "B-PER"]]  # LOC read as ORG, ORG missed, a spurious PER
    run = make_run(tmp_path / "runs", "ner", 50.0, task="token-classification",
                   predictions={"labels": ["O", "B-PER", "I-PER", "B-LOC", "B-ORG"], "references": gold,
                                "predictions": guess})
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["metrics"] = {"f1": 0.5, "precision": 0.5, "recall": 0.5, "macro_f1": 0.4, "token_accuracy": 0.75}
    (run / "metrics.json").write_text(json.dumps(metrics))
    write_report([run], tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    breakdown = report["per_class"]
    assert breakdown["unit"] == "entity type" and breakdown["labels"] == ["LOC", "ORG", "PER"]
    assert breakdown["support"] == [2, 1, 1]
    assert breakdown["recall"] == [50.0, 0.0, 100.0]  # one LOC of two, no ORG, the PER
    assert breakdown["confusion_labels"] == ["LOC", "ORG", "PER", "O"]
    assert breakdown["confusion_matrix"] == [[1, 1, 0, 0],   # gold LOC: one found, one typed as ORG
                                             [0, 0, 0, 1],   # gold ORG: missed
                                             [0, 0, 1, 0],   # gold PER: found
                                             [0, 0, 1, 0]]   # a spurious PER
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Per-entity type scores: ner" in markdown and "Entity-type confusion" in markdown
    assert (tmp_path / "report" / "confusion_matrix.png").read_bytes().startswith(PNG_SIGNATURE)
