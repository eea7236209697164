"""Exact resume: a run killed with SIGKILL mid-epoch and resumed ends bit-identical to an unbroken run."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def child(output_dir, mode, delay, weights, sampling):
    return [sys.executable, "-m", "tests.resume_child", str(output_dir), mode, str(delay), str(weights), sampling]


def run(args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("sampling", ["shuffled", "grouped"])
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
