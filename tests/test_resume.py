"""Exact resume: a run killed with SIGKILL mid-epoch and resumed ends bit-identical to an unbroken run."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def child(output_dir, mode, delay, weights, sampling):
    return [sys.executable, "-m", "tests.resume_child", str(output_dir), mode, str(delay), str(weights), sampling]


def run(args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("sampling", ["shuffled", "grouped", "two-sources"])
def test_kill_9_then_resume_is_bit_identical(tmp_path, sampling):
    reference = run(child(tmp_path / "ref", "fresh", 0, tmp_path / "ref.safetensors", sampling))
    assert reference.returncode == 0, reference.stderr[-2000:]

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    victim = subprocess.Popen(child(tmp_path / "run", "fresh", 0.15, tmp_path / "unused.safetensors", sampling),
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = tmp_path / "run" / "checkpoints" / "latest"
    deadline = time.time() + 240
    while time.time() < deadline and not (latest.exists() and latest.read_text().strip() == "checkpoint-6"):
        time.sleep(0.05)
    victim.kill()  # SIGKILL: no cleanup, no final save
    victim.wait()
    assert victim.returncode == -9
    assert latest.read_text().strip() in ("checkpoint-6", "checkpoint-9"), "killed before the second checkpoint"
    assert not (tmp_path / "run" / "model").exists(), "the victim finished before it was killed"

    resumed = run(child(tmp_path / "run", "resume", 0, tmp_path / "resumed.safetensors", sampling))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from step" in resumed.stdout + resumed.stderr
    a, b = load_file(tmp_path / "ref.safetensors"), load_file(tmp_path / "resumed.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] == b[name]).all(), f"{name} differs after resume"


class Interrupted(Exception):
    """Stands in for a crash: raised from inside the training loop."""


def fit_with_early_stopping(run_dir, resume=False, crash_at_batch=None):
    import nlptl
    from nlptl.heads import ClassificationHead
    from tests.fake_encoders import WordEncoder
    from tests.resume_child import LABELS, TEXTS

    encoder = WordEncoder.from_texts(TEXTS, seed=0)
    model = nlptl.TransferModel(encoder, ClassificationHead(2, dropout=0.0), labels=["negative", "positive"])
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.head.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    if crash_at_batch is not None:
        collate, calls = model.head.collate, []

        def crashing_collate(enc, rows):
            calls.append(1)
            if len(calls) == crash_at_batch:
                raise Interrupted
            return collate(enc, rows)

        model.head.collate = crashing_collate
    # Evaluated on flipped labels, so learning the training labels makes later epochs score worse:
    # the best epoch comes early and early stopping must restore it at the end.
    flipped = ["negative" if label == "positive" else "positive" for label in LABELS]
    result = nlptl.fit(model, {"text": TEXTS, "label": LABELS}, {"text": TEXTS, "label": flipped},
                       strategy="full", epochs=4, batch_size=4, learning_rate=1e-4, output_dir=str(run_dir),
                       save_every_steps=3, resume=resume, seed=0, progress=False,
                       early_stopping_metric="accuracy", early_stopping_patience=10)
    return model, result


def test_resume_restores_early_stopping_best_weights_saved_before_the_crash(tmp_path):
    reference_model, reference = fit_with_early_stopping(tmp_path / "ref")
    accuracies = [h["accuracy"] for h in reference.history]
    best_epoch = accuracies.index(max(accuracies)) + 1
    assert best_epoch <= 2 and max(accuracies) > accuracies[-1], f"not the scenario under test: {accuracies}"

    with pytest.raises(Interrupted):  # 12 training batches per epoch, plus the evaluation batches
        fit_with_early_stopping(tmp_path / "run", crash_at_batch=3 * 12 + 2 * 12)
    model, resumed = fit_with_early_stopping(tmp_path / "run", resume=True)
    assert resumed.metrics == reference.metrics
    expected = reference_model.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), f"{name} is not the best epoch's weights"
