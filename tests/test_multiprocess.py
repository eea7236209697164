"""Two processes under ``accelerate launch`` evaluate exactly like one, with no duplicated rows."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def launch(processes: int, out: Path) -> dict:
    # On CPU, `accelerate launch --cpu` starts several processes only through mpirun; `--multi_gpu`
    # with ACCELERATE_USE_CPU=1 starts them with torchrun and the gloo backend instead.
    env = dict(os.environ, PYTHONPATH=str(ROOT), ACCELERATE_USE_CPU="1")
    mode = ["--multi_gpu"] if processes > 1 else ["--cpu"]
    args = [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "-m", "tests.ddp_child", str(out)]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.multiprocess
def test_two_processes_evaluate_like_one(tmp_path):
    one = launch(1, tmp_path / "one.json")
    two = launch(2, tmp_path / "two.json")
    assert (one["processes"], two["processes"]) == (1, 2)
    # evaluation of the same weights: identical metrics (evaluate_rows also checks no row is duplicated)
    assert one["before"]["accuracy"] == two["before"]["accuracy"]
    assert one["before"]["macro_f1"] == pytest.approx(two["before"]["macro_f1"])
    for run in (one, two):  # both train: the loss falls
        assert run["losses"][-1] < run["losses"][0]
