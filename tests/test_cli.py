"""The ``nlptl`` command line: --help, a tiny train -> evaluate -> predict -> report, and one-line errors.

Commands run in-process through ``nlptl.cli.main(argv)`` (it returns the exit code); one test runs the
installed console script to prove the entry point. Models are the tiny BERT and tiny GloVe of
tests/tiny, the data a 24-row TSV pair written here, so the whole file stays well under a minute.

A renamed label column (``--label-column stars``) has its own test.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from nlptl.cli import main
from tests.tiny.static import write_glove
from tests.tiny.transformers import HF_DIR, build_bert

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABELS = ["1", "5"]  # the star ratings of the TSV files; numeric labels sort numerically
# Words both tiny vocabularies know (BERT's WORDS and the GloVe corpus), so each encoder sees real tokens.
GOOD = ["the movie was really good", "a good film and the cat sat on the mat", "the film was good really good",
        "hello world the movie is good"]
BAD = ["the film was bad", "not good and the dog sat in the river", "a bad movie about nothing",
       "the movie is not good bad"]


def write_tsv(path: Path, rows: list[tuple[str, str]], header: str = "review\tlabel") -> Path:
    path.write_text(header + "\n" + "".join(f"{text}\t{label}\n" for text, label in rows), encoding="utf-8")
    return path


def sentiment_rows(n: int) -> list[tuple[str, str]]:
    """n rows alternating the two classes, texts cycling through each class's sentences."""
    return [(GOOD[i // 2 % len(GOOD)], "5") if i % 2 == 0 else (BAD[i // 2 % len(BAD)], "1") for i in range(n)]


def cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``nlptl argv`` in-process as the console script would (sys.argv set); (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setattr(sys, "argv", ["nlptl", *argv])
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def last_json_line(stdout: str) -> dict:
    """The last stdout line as JSON (training may print progress notes above it)."""
    return json.loads(stdout.strip().splitlines()[-1])


PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm redraws (transformers' "Loading weights"), not messages


def assert_one_line_error(code: int, stderr: str, *expected: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not PROGRESS_BAR.search(line)]
    assert code != 0
    assert len(lines) == 1, f"expected exactly one stderr line, got {lines}"
    assert lines[0].startswith("nlptl: error: "), lines[0]
    for text in expected:
        assert text in lines[0], f"{text!r} missing from {lines[0]!r}"
    return lines[0]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No hub: a path that would reach for a dataset or model must fail fast, not hang."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("NLPTL_DATA_DIR", raising=False)
    monkeypatch.delenv("NLPTL_DEBUG", raising=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {"train": write_tsv(root / "train.tsv", sentiment_rows(24)),
            "eval": write_tsv(root / "eval.tsv", sentiment_rows(8)),
            "eval_stars": write_tsv(root / "eval_stars.tsv", sentiment_rows(8), header="review\tstars")}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bert")
    build_bert(root)
    return root / HF_DIR


def train_args(files: dict[str, Path], output_dir: Path, *extra: str) -> list[str]:
    return ["train", "--train-file", str(files["train"]), "--eval-file", str(files["eval"]),
            "--text-column", "review", "--label-column", "label", "--batch-size", "8", "--seed", "7",
            "--output-dir", str(output_dir), *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, files, bert_dir) -> dict[str, dict]:
    """Three trained runs, shared by the tests below: top_k transfer, TF-IDF baseline, from-scratch baseline."""
    root = tmp_path_factory.mktemp("runs")
    settings = {
        "top_k": ["--encoder", str(bert_dir), "--strategy", "top_k", "--top-k", "1", "--epochs", "2",
                  "--learning-rate", "1e-3"],
        "tfidf": ["--baseline", "tfidf_lr"],
        "scratch": ["--encoder", str(bert_dir), "--baseline", "from_scratch", "--epochs", "1",
                    "--learning-rate", "1e-3"],
    }
    results = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        for name, extra in settings.items():
            argv = train_args(files, root / name, *extra)
            code, stdout, stderr = cli(argv)
            results[name] = {"dir": root / name, "argv": argv, "code": code, "stdout": stdout, "stderr": stderr}
    return results


# ----- --help ---------------------------------------------------------------------------------------

HELP_FLAGS = {
    None: ["train", "evaluate", "predict", "report", "encoders", "datasets"],
    "train": ["--dataset", "--train-file", "--eval-file", "--text-column", "--label-column", "--encoder",
              "--encoder-kind", "--strategy", "--top-k", "--epochs", "--batch-size", "--learning-rate",
              "--baseline", "--resume", "--seed", "--output-dir", "feature_extraction", "gradual_unfreezing",
              "tfidf_lr", "from_scratch"],
    "evaluate": ["run", "--dataset", "--split", "--eval-file", "--text-column", "--label-column"],
    "predict": ["run", "--text", "--input-file"],
    "report": ["runs", "--output", "--title"],
    "encoders": ["usage: nlptl encoders"],
    "datasets": ["usage: nlptl datasets"],
}


@pytest.mark.parametrize("command", list(HELP_FLAGS), ids=lambda c: c or "nlptl")
def test_help_exits_zero_and_names_the_documented_flags(command, capsys):
    argv = ([command] if command else []) + ["--help"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in HELP_FLAGS[command]:
        assert flag in text, f"`nlptl {' '.join(argv)}` does not mention {flag}"


def test_console_script_is_installed_and_runs():
    scripts = [ep for ep in entry_points(group="console_scripts") if ep.name == "nlptl"]
    if not scripts:
        pytest.skip("nlptl is not installed in this interpreter (no console_scripts entry)")
    assert scripts[0].value == "nlptl.cli:main"
    script = Path(sys.executable).with_name("nlptl")
    assert script.is_file(), f"the entry point is declared but {script} is missing; reinstall with pip install -e ."
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: nlptl" in done.stdout and "train" in done.stdout


def test_encoders_and_datasets_list_what_the_flags_accept(capsys):
    assert main(["encoders"]) == 0
    kinds = capsys.readouterr().out
    assert "transformer" in kinds and "glove" in kinds
    assert main(["datasets"]) == 0
    names = capsys.readouterr().out
    for name in ("sst2", "ag_news", "squad"):
        assert name in names


# ----- train -> evaluate -> predict -> report ---------------------------------------------------------

@pytest.mark.parametrize("name", ["top_k", "tfidf", "scratch"])
def test_train_writes_a_complete_run_directory(runs, name):
    result = runs[name]
    assert result["code"] == 0, result["stderr"]
    run = result["dir"]
    summary = last_json_line(result["stdout"])
    assert summary["run"] == str(run) and 0.0 <= summary["accuracy"] <= 1.0
    for file in ("metrics.json", "config.json", "predictions.json"):
        assert (run / file).is_file(), f"{name}: {file} missing"
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 7
    assert config["command"].startswith("nlptl train") and "--train-file" in config["command"]
    assert config["text_column"] == "review" and config["label_column"] == "label"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metrics"]["accuracy"] == summary["accuracy"]
    assert metrics["train_size"] == 24 and metrics["eval_size"] == 8
    predictions = json.loads((run / "predictions.json").read_text())
    assert predictions["labels"] == LABELS and len(predictions["predictions"]) == 8
    assert predictions["references"] == [1, 0] * 4  # "5" (id 1) first, as in the eval file


def test_transfer_run_saves_the_model_and_a_step_log(runs):
    run = runs["top_k"]["dir"]
    assert (run / "model").is_dir()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "step" for r in log) == 2 * 3  # 2 epochs x 24 rows / batch 8
    assert [r["epoch"] for r in log if r["type"] == "eval"] == [1, 2]
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"]  # top_k=1 froze the rest
    config = json.loads((run / "config.json").read_text())
    assert config["strategy"] == "top_k" and config["top_k"] == 1


def test_baselines_are_recorded_as_such(runs):
    tfidf, scratch = runs["tfidf"]["dir"], runs["scratch"]["dir"]
    assert json.loads((tfidf / "config.json").read_text())["baseline"] == "tfidf_lr"
    assert not (tfidf / "model").exists()  # TF-IDF + LR is not a TransferModel
    assert json.loads((scratch / "config.json").read_text())["baseline"] == "from_scratch"
    assert (scratch / "model").is_dir()
    metrics = json.loads((scratch / "metrics.json").read_text())
    assert metrics["trainable_parameters"] == metrics["total_parameters"]  # strategy "full" from random weights


def test_evaluate_prints_metrics_and_writes_them_into_the_run(runs, files):
    """Evaluation reads its own file, whose label column may be named differently from training's."""
    run = runs["top_k"]["dir"]
    code, stdout, stderr = cli(["evaluate", str(run), "--eval-file", str(files["eval_stars"]),
                                "--text-column", "review", "--label-column", "stars", "--batch-size", "4"])
    assert code == 0, stderr
    metrics = last_json_line(stdout)
    written = list(run.glob("eval-*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text()) == metrics
    # The saved model on the same eval file scores what training reported for its last epoch.
    trained = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["accuracy"] == pytest.approx(trained["accuracy"])


def test_evaluate_on_a_named_dataset_reads_the_folder_the_run_was_trained_from(bert_dir, tmp_path):
    # The README's `nlptl evaluate runs/sst2-fe --dataset sst2 --split validation` after a run trained
    # with --data-dir: offline, without the run's folder, the dataset would be looked up on the hub.
    data_dir = tmp_path / "data"
    (data_dir / "sst2").mkdir(parents=True)
    rows = [(text, "1" if label == "5" else "0") for text, label in sentiment_rows(16)]
    for split in ("train", "validation"):
        write_tsv(data_dir / "sst2" / f"{split}.tsv", rows, header="sentence\tlabel")
    run = tmp_path / "run"
    code, _, stderr = cli(["train", "--dataset", "sst2", "--data-dir", str(data_dir), "--encoder", str(bert_dir),
                           "--epochs", "1", "--batch-size", "8", "--output-dir", str(run)])
    assert code == 0, stderr
    code, stdout, stderr = cli(["evaluate", str(run), "--dataset", "sst2", "--split", "validation"])
    assert code == 0, stderr
    trained = json.loads((run / "metrics.json").read_text())["metrics"]
    assert last_json_line(stdout)["accuracy"] == pytest.approx(trained["accuracy"])
    assert (run / "eval-sst2-validation.json").is_file()


def test_a_named_dataset_without_an_evaluation_split_says_which_flag_gives_one(bert_dir, tmp_path):
    # e.g. `--dataset amazon_reviews --domain books`: the local copy holds one 'train' split only
    data_dir = tmp_path / "data"
    (data_dir / "sst2").mkdir(parents=True)
    write_tsv(data_dir / "sst2" / "train.tsv", [("a good film", "1"), ("a bad film", "0")], header="sentence\tlabel")
    argv = ["train", "--dataset", "sst2", "--data-dir", str(data_dir), "--encoder", str(bert_dir),
            "--output-dir", str(tmp_path / "run")]
    code, _, stderr = cli(argv)
    line = assert_one_line_error(code, stderr, "'sst2' has no evaluation split here", "--eval-file")
    assert "None" not in line and "--eval-split" not in line  # no other split to name
    write_tsv(data_dir / "sst2" / "validation.tsv", [("fine", "1")], header="sentence\tlabel")
    code, _, stderr = cli(argv + ["--eval-split", "test"])
    assert_one_line_error(code, stderr, "no 'test' split", "--eval-split with one of ['validation']")
    assert not (tmp_path / "run").exists()


def test_predict_prints_one_json_line_per_text(runs, tmp_path):
    run = runs["top_k"]["dir"]
    texts = ["the movie was really good", "a bad film", "hello"]
    more = tmp_path / "more.txt"
    more.write_text("the film was bad\n\nnot good\n", encoding="utf-8")
    code, stdout, stderr = cli(["predict", str(run), "--text", texts[0], "--text", texts[1], "--text", texts[2],
                                "--input-file", str(more)])
    assert code == 0, stderr
    lines = [json.loads(line) for line in stdout.strip().splitlines()]
    assert [line["text"] for line in lines] == texts + ["the film was bad", "not good"]  # blank line skipped
    for line in lines:
        assert line["label"] in LABELS
        assert sorted(line["probabilities"]) == LABELS
        assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert line["label"] == max(line["probabilities"], key=line["probabilities"].get)


def test_predict_without_texts_is_a_one_line_error(runs):
    code, _, stderr = cli(["predict", str(runs["top_k"]["dir"])])
    assert_one_line_error(code, stderr, "--text", "--input-file")


def test_missing_input_file_report_onto_a_file_and_a_zero_max_length_are_one_line_errors(runs, files, bert_dir,
                                                                                         tmp_path):
    code, _, stderr = cli(["predict", str(runs["top_k"]["dir"]), "--input-file", str(tmp_path / "nope.txt")])
    assert_one_line_error(code, stderr, "--input-file", "nope.txt", "no such file")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    code, _, stderr = cli(["report", str(runs["tfidf"]["dir"]), "--output", str(a_file)])
    assert_one_line_error(code, stderr, "is a file; pass a directory")
    assert a_file.read_text() == "mine"
    # --max-length 0 was taken as "not given" and trained at the model's limit
    code, _, stderr = cli(train_args(files, tmp_path / "run", "--encoder", str(bert_dir), "--max-length", "0"))
    assert_one_line_error(code, stderr, "max_length=0")
    assert not (tmp_path / "run").exists()


def test_report_compares_the_runs(runs, tmp_path):
    dirs = [str(runs[name]["dir"]) for name in ("top_k", "tfidf", "scratch")]
    out = tmp_path / "report"
    code, stdout, stderr = cli(["report", *dirs, "--output", str(out), "--title", "tiny reviews"])
    assert code == 0, stderr
    assert str(out / "report.md") in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["title"] == "tiny reviews"
    assert [entry["name"] for entry in report["runs"]] == ["top_k", "tfidf", "scratch"]
    markdown = (out / "report.md").read_text()
    assert "tiny reviews" in markdown and all(name in markdown for name in ("top_k", "tfidf", "scratch"))
    assert "learning_curves" in report["plots"] and "confusion_matrix" in report["plots"]
    for file_name in report["plots"].values():
        assert (out / file_name).read_bytes().startswith(PNG_SIGNATURE), file_name


def test_glove_feature_extraction_run_uses_the_frozen_feature_cache(files, tmp_path):
    glove = write_glove(tmp_path)
    run = tmp_path / "glove-run"
    code, stdout, stderr = cli(train_args(files, run, "--encoder", str(glove), "--encoder-kind", "glove",
                                          "--strategy", "feature_extraction", "--epochs", "2",
                                          "--learning-rate", "1e-2"))
    assert code == 0, stderr
    assert "cached frozen features" in stdout  # the encoder ran once, not every epoch
    assert 0.0 <= last_json_line(stdout)["accuracy"] <= 1.0
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"]  # only the head trains
    code, stdout, stderr = cli(["predict", str(run), "--text", "the cat sat on the mat"])
    assert code == 0, stderr
    assert last_json_line(stdout)["label"] in LABELS


def test_train_with_a_renamed_label_column(files, bert_dir, tmp_path):
    """A review file whose labels sit in a column called "stars", as the --label-column help invites."""
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(24), header="review\tstars")
    run = tmp_path / "stars"
    code, stdout, stderr = cli(["train", "--train-file", str(train), "--eval-file", str(files["eval_stars"]),
                                "--text-column", "review", "--label-column", "stars", "--encoder", str(bert_dir),
                                "--strategy", "top_k", "--top-k", "1", "--epochs", "1", "--batch-size", "8",
                                "--output-dir", str(run)])
    assert code == 0, stderr
    assert json.loads((run / "predictions.json").read_text())["labels"] == LABELS
    code, stdout, stderr = cli(["predict", str(run), "--text", "the movie was really good"])
    assert code == 0 and last_json_line(stdout)["label"] in LABELS


def test_config_records_the_command_given_to_main(files, tmp_path):
    """A program calling main(argv) (a recipe, a notebook, a test) gets its own command in config.json."""
    run = tmp_path / "tfidf"
    assert main(train_args(files, run, "--baseline", "tfidf_lr")) == 0
    assert "--train-file" in json.loads((run / "config.json").read_text())["command"]


# ----- errors: non-zero exit, exactly one line "nlptl: error: ..." -------------------------------------

def test_missing_column_lists_the_columns_present(files, bert_dir, tmp_path):
    argv = train_args(files, tmp_path / "run", "--encoder", str(bert_dir))
    argv[argv.index("--text-column") + 1] = "body"
    code, _, stderr = cli(argv)
    assert_one_line_error(code, stderr, "'body'", "review", "label")


def test_unknown_dataset_lists_the_known_ones(bert_dir, tmp_path):
    code, _, stderr = cli(["train", "--dataset", "nope", "--encoder", str(bert_dir),
                           "--output-dir", str(tmp_path / "run")])
    assert_one_line_error(code, stderr, "'nope'", "sst2", "ag_news")


def test_file_whose_content_contradicts_its_extension(files, bert_dir, tmp_path):
    wrong = tmp_path / "train.json"
    wrong.write_text(files["train"].read_text(), encoding="utf-8")  # TSV text under a .json name
    argv = train_args(files, tmp_path / "run", "--encoder", str(bert_dir))
    argv[argv.index("--train-file") + 1] = str(wrong)
    code, _, stderr = cli(argv)
    assert_one_line_error(code, stderr, "train.json", ".tsv")


def test_eval_label_never_seen_in_training(files, bert_dir, tmp_path):
    odd = write_tsv(tmp_path / "eval.tsv", sentiment_rows(4) + [("the movie was fine", "3")])
    argv = train_args(files, tmp_path / "run", "--encoder", str(bert_dir))
    argv[argv.index("--eval-file") + 1] = str(odd)
    code, _, stderr = cli(argv)
    assert_one_line_error(code, stderr, "'3'", "row 5", str(LABELS))


def test_resume_without_a_checkpoint(files, bert_dir, tmp_path):
    code, _, stderr = cli(train_args(files, tmp_path / "run", "--encoder", str(bert_dir), "--epochs", "1",
                                     "--resume"))
    assert_one_line_error(code, stderr, "no complete checkpoint")


def test_evaluate_on_a_directory_that_is_not_a_run(files, tmp_path):
    not_a_run = tmp_path / "notes"
    not_a_run.mkdir()
    code, _, stderr = cli(["evaluate", str(not_a_run), "--eval-file", str(files["eval_stars"]),
                           "--text-column", "review", "--label-column", "stars"])
    assert_one_line_error(code, stderr, str(not_a_run), "holds no model/ folder")
    assert list(not_a_run.iterdir()) == []  # no eval file written into a folder that is not a run


@pytest.mark.parametrize("command", [["predict", "--text", "what a film"], ["evaluate", "--dataset", "sst2"]])
def test_a_run_directory_that_does_not_exist_is_named_as_missing(command, tmp_path):
    # What a user sees after a train command failed before writing anything (e.g. the model was offline).
    missing = tmp_path / "runs" / "sst2-fe"
    code, _, stderr = cli([command[0], str(missing), *command[1:]])
    assert_one_line_error(code, stderr, f"run directory '{missing}' does not exist")
    assert not (tmp_path / "runs").exists()


def test_traceback_on_request_with_nlptl_debug(bert_dir, tmp_path, monkeypatch):
    """NLPTL_DEBUG=1 trades the one-line message for the exception itself, as the module docstring says."""
    monkeypatch.setenv("NLPTL_DEBUG", "1")
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        main(["train", "--dataset", "nope", "--encoder", str(bert_dir), "--output-dir", str(tmp_path / "run")])


@pytest.mark.parametrize("flags", [["--adaptation", "coral"], ["--adaptation", "importance"],
                                   ["--adaptation", "self_training", "--epochs", "20", "--learning-rate", "0.05",
                                    "--head-learning-rate", "0.05"],  # a source model that predicts both classes
                                   ["--shots", "4", "--method", "contrastive"]])
def test_train_with_adaptation_or_few_shot_flags(tmp_path, flags):
    glove = write_glove(tmp_path)
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(16))
    dev = write_tsv(tmp_path / "dev.tsv", sentiment_rows(8))
    target = tmp_path / "target.jsonl"
    target.write_text("".join(json.dumps({"review": text}) + "\n" for text in GOOD + BAD), encoding="utf-8")
    adaptation = flags[0] == "--adaptation"
    code, out, err = cli(["train", "--train-file", str(train), "--eval-file", str(dev), "--text-column", "review",
                          "--encoder", str(glove), "--encoder-kind", "glove", "--strategy", "full", "--epochs", "2",
                          "--batch-size", "4", "--output-dir", str(tmp_path / "run"), *flags,
                          *(["--unlabeled-file", str(target)] if adaptation else [])])
    assert code == 0, err
    assert 0.0 <= last_json_line(out)["accuracy"] <= 1.0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    if flags[1] == "coral":
        assert metrics["extra"]["objective"]["name"] == "CORAL" and set(metrics["extra"]["sources"]) == {"source", "target"}
    elif flags[1] == "importance":
        assert config["applied"]["weight_column"] == "importance_weight"
    elif flags[1] == "self_training":  # three rounds on the target's pseudo-labels; the last fit is the run's
        rounds = metrics["extra"]["self_training_rounds"]
        assert [r["fraction"] for r in rounds] == [0.2, 0.4, 0.6] and all(r["pseudo_rows"] > 0 for r in rounds)
        assert (tmp_path / "run" / "log.jsonl").exists() and config["applied"]["epochs"] == 20
    else:
        assert metrics["extra"]["objective"]["name"] == "ContrastivePairs" and metrics["train_size"] == 8
        # the few-shot defaults fill what the command left out; --epochs 2, given, is kept
        assert (config["applied"]["epochs"], config["applied"]["learning_rate"]) == (2, 1e-4)
        assert config["applied"]["head_learning_rate"] == 1e-2


def test_adaptation_without_an_unlabeled_file_is_one_line_error(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(8))
    code, _, err = cli(["train", "--train-file", str(train), "--eval-file", str(train), "--encoder", "x",
                        "--adaptation", "dann", "--output-dir", str(tmp_path / "run")])
    assert_one_line_error(code, err, "--unlabeled-file")
    assert not (tmp_path / "run").exists()


def test_token_classification_trains_and_predicts_spans_from_conll_files(tmp_path):
    glove = write_glove(tmp_path)
    sentences = [[("the", "O"), ("cat", "B-ANIMAL"), ("sat", "O")], [("a", "O"), ("dog", "B-ANIMAL"), ("ate", "O")]]
    conll = tmp_path / "train.conll"
    conll.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in sentences * 6) + "\n", encoding="utf-8")
    code, out, err = cli(["train", "--task", "token-classification", "--train-file", str(conll), "--eval-file",
                          str(conll), "--encoder", str(glove), "--encoder-kind", "glove", "--lstm-hidden", "8",
                          "--strategy", "full", "--epochs", "20", "--batch-size", "4", "--learning-rate", "1e-2",
                          "--output-dir", str(tmp_path / "ner")])
    assert code == 0, err
    assert last_json_line(out)["f1"] >= 0.9
    code, out, err = cli(["predict", str(tmp_path / "ner"), "--text", "the cat sat"])
    assert code == 0, err
    spans = json.loads(out.strip().splitlines()[-1])["entities"]
    assert [(s["entity"], s["text"], s["start"], s["end"]) for s in spans] == [("ANIMAL", "cat", 4, 7)]


def test_label_template_adds_one_labelled_sentence_per_description_to_the_training_rows(tmp_path):
    glove = write_glove(tmp_path)
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(16))
    dev = write_tsv(tmp_path / "dev.tsv", sentiment_rows(8))
    code, out, err = cli(["train", "--train-file", str(train), "--eval-file", str(dev), "--text-column", "review",
                          "--encoder", str(glove), "--encoder-kind", "glove", "--strategy", "full", "--epochs", "2",
                          "--batch-size", "4", "--output-dir", str(tmp_path / "run"), "--shots", "4",
                          "--method", "contrastive", "--label-template", "the movie was {}",
                          "--label-descriptions", '{"5": ["good", "really good"], "1": "bad"}'])
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert metrics["train_size"] == 4 * 2 + 3  # the shots, then "the movie was bad / good / really good"
    assert config["label_template"] == "the movie was {}" and config["label_descriptions"]["1"] == "bad"


@pytest.mark.parametrize("flags, expected", [
    (["--label-descriptions", "{positive: good}"], "--label-descriptions is not JSON"),
    (["--label-template", "a review"], "needs a '{}'"),
    (["--label-descriptions", '{"5": ["good"]}'], "give --label-template too"),
    (["--label-template", "a {} review", "--label-descriptions", '{"5": [1, 2]}'], "label_descriptions="),
    (["--label-template", "a {} review", "--label-descriptions", '{"great": ["good"]}'], "not in labels"),
])
def test_bad_label_template_flags_are_one_line_errors_before_any_output(tmp_path, flags, expected):
    glove = write_glove(tmp_path)
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(8))
    code, _, err = cli(["train", "--train-file", str(train), "--eval-file", str(train), "--text-column", "review",
                        "--encoder", str(glove), "--encoder-kind", "glove", "--output-dir", str(tmp_path / "run"),
                        *flags])
    assert_one_line_error(code, err, expected)
    assert not (tmp_path / "run").exists()
