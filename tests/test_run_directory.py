"""Runs do not mix, end to end: ``fit``, ``runs.run`` and ``nlptl train`` check their run directory first.

The unit cases of ``nlptl.rundir`` live in test_bad_input.py / test_safety.py; these train for real
(a tiny static encoder) and assert what a user sees: a refused rerun leaves the finished run byte
for byte as it was, ``overwrite`` keeps the user's own files, and a resume with other settings or
other data names what differs.
"""
from __future__ import annotations

import json

import pytest

import nlptl
from nlptl.runs import RunConfig, run
from tests.test_bad_input import Unchanged, snapshot
from tests.test_cli import assert_one_line_error, cli, files, offline, train_args  # noqa: F401 (fixtures)
from tests.test_training import make_model, separable_task

FIT = dict(strategy="full", epochs=2, batch_size=8, learning_rate=1e-2, progress=False, save_every_steps=2)


def test_a_second_fresh_fit_into_the_same_output_dir_is_refused(tmp_path):
    model = make_model("glove", tmp_path)
    data = separable_task(model.encoder)
    out = tmp_path / "run"
    nlptl.fit(model, data, data, output_dir=str(out), **FIT)
    assert (out / "checkpoints" / "run_fingerprint.json").is_file()
    with Unchanged(out), pytest.raises(FileExistsError, match=r"already holds an earlier run .*resume=True .*"
                                                              r"--output-dir.*overwrite=True"):
        nlptl.fit(make_model("glove", tmp_path), data, data, output_dir=str(out), **FIT)


def test_overwrite_replaces_the_run_and_keeps_the_users_files(tmp_path):
    model = make_model("glove", tmp_path)
    data = separable_task(model.encoder)
    out = tmp_path / "run"
    nlptl.fit(model, data, data, output_dir=str(out), **FIT)
    (out / "notes.txt").write_text("mine")
    steps_before = sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*"))
    result = nlptl.fit(make_model("glove", tmp_path), data, data, output_dir=str(out), overwrite=True,
                       **{**FIT, "epochs": 1})
    assert (out / "notes.txt").read_text() == "mine"
    steps_after = sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*"))
    assert steps_after != steps_before  # the one-epoch run's checkpoints, not the earlier run's
    assert len(result.history) == 1
    assert len([json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()
                if '"eval' in line]) == 1  # the log holds only the new run


@pytest.mark.parametrize("change, named", [
    ({"learning_rate": 5e-3}, "settings.learning_rate"),
    ({"batch_size": 4}, "settings.batch_size"),
    ({"seed": 3}, "settings.seed"),
])
def test_resume_with_other_settings_names_what_differs(tmp_path, change, named):
    model = make_model("glove", tmp_path)
    data = separable_task(model.encoder)
    out = tmp_path / "run"
    nlptl.fit(model, data, data, output_dir=str(out), **{**FIT, "epochs": 1})
    with Unchanged(out), pytest.raises(ValueError, match=rf"belong to another run: .*{named}"):
        nlptl.fit(make_model("glove", tmp_path), data, data, output_dir=str(out), resume=True, **{**FIT, **change})


def test_resume_with_other_training_data_names_the_data(tmp_path):
    model = make_model("glove", tmp_path)
    data = separable_task(model.encoder)
    out = tmp_path / "run"
    nlptl.fit(model, data, data, output_dir=str(out), **FIT)
    other = {"text": list(reversed(data["text"])), "label": list(reversed(data["label"]))}
    with Unchanged(out), pytest.raises(ValueError, match=r"belong to another run: train_data\.train: "):
        nlptl.fit(make_model("glove", tmp_path), other, data, output_dir=str(out), resume=True, **FIT)


def test_resume_with_the_same_settings_may_change_what_does_not_matter(tmp_path):
    model = make_model("glove", tmp_path)
    data = separable_task(model.encoder)
    out = tmp_path / "run"
    nlptl.fit(model, data, data, output_dir=str(out), **{**FIT, "save_every_steps": 1})
    result = nlptl.fit(make_model("glove", tmp_path), data, data, output_dir=str(out), resume=True,
                       **{**FIT, "save_every_steps": 1, "eval_batch_size": 3, "save_total_limit": 1})
    assert len(result.history) == FIT["epochs"]


def test_resume_and_overwrite_together_is_a_config_error():
    with pytest.raises(ValueError, match="resume=True and overwrite=True contradict"):
        nlptl.TrainConfig(output_dir="x", resume=True, overwrite=True)


# ----- runs.run and the CLI ---------------------------------------------------------------------


def test_cli_rerun_into_a_finished_run_is_refused_and_leaves_it_untouched(files, tmp_path):
    out = tmp_path / "run"
    code, _, stderr = cli(train_args(files, out, "--baseline", "tfidf_lr"))
    assert code == 0, stderr
    assert {"config.json", "metrics.json"} <= {p.name for p in out.iterdir()}
    with Unchanged(out):
        code, _, stderr = cli(train_args(files, out, "--baseline", "tfidf_lr", "--seed", "8"))
    assert_one_line_error(code, stderr, "already holds an earlier run", "--resume", "--output-dir", "--overwrite")


def test_cli_overwrite_replaces_a_finished_run(files, tmp_path):
    out = tmp_path / "run"
    assert cli(train_args(files, out, "--baseline", "tfidf_lr"))[0] == 0
    (out / "mine.txt").write_text("keep me")
    code, _, stderr = cli(train_args(files, out, "--baseline", "tfidf_lr", "--overwrite"))
    assert code == 0, stderr
    assert (out / "mine.txt").read_text() == "keep me"
    assert "--overwrite" in json.loads((out / "config.json").read_text())["command"]


def test_overwrite_with_an_encoder_that_cannot_load_keeps_the_earlier_run(files, tmp_path):
    """--overwrite deletes the earlier run only once the new model is built: a typo loses nothing."""
    out = tmp_path / "run"
    assert cli(train_args(files, out, "--baseline", "tfidf_lr"))[0] == 0
    with Unchanged(out):
        code, _, stderr = cli(train_args(files, out, "--encoder", str(tmp_path / "no-such-model"), "--overwrite"))
    assert_one_line_error(code, stderr, "no-such-model", "does not exist")


def test_a_run_that_fails_in_training_leaves_no_config_behind(files, tmp_path, monkeypatch):
    """config.json is written when the run has trained: a failed fresh run leaves nothing that looks finished."""
    import nlptl.runs as runs

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(runs, "_tfidf_baseline", broken)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated"):
        run(RunConfig(train_file=str(files["train"]), eval_file=str(files["eval"]), text_column="review",
                      baseline="tfidf_lr", output_dir=str(out)))
    assert not out.exists() or snapshot(out) == {}
