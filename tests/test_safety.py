"""Safe by default: atomic saves survive SIGKILL, runs do not mix, resume recovers, odd encodings are read."""
from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import nlptl
from nlptl import artifacts, checkpoint, rundir
from nlptl.data import load_files
from tests.test_bad_input import FINGERPRINT, fake_checkpoint, finished_run, static_encoder, write
from tests.tiny import static as tiny


def vectors_of(directory: Path) -> np.ndarray:
    return nlptl.load_encoder(directory).embeddings.weight.detach().numpy()


# ----- atomic replacement under SIGKILL -------------------------------------------------------------

def kill_during_saves(directory: Path, kills: int, exchange: bool) -> int:
    """Fork a child that saves two encoders alternately into ``directory``; SIGKILL it at random moments.

    After every kill the directory must load as exactly one of the two encoders. Forking (not a
    fresh interpreter) keeps a kill cycle to milliseconds, so 20+ kills take a few seconds.
    Returns how many kills landed after the child had started saving.
    """
    encoders = [static_encoder(0), static_encoder(1)]
    expected = [e.embeddings.weight.detach().numpy() for e in encoders]
    encoders[0].save_pretrained(directory)
    rng, mid_save = random.Random(0), 0
    for _ in range(kills):
        started = directory.parent.parent / "started"
        started.unlink(missing_ok=True)
        pid = os.fork()
        if pid == 0:  # the child: save forever, until killed
            try:
                if not exchange:
                    artifacts._exchange = lambda a, b: False  # the rename-aside fallback of other systems
                started.touch()
                i = 0
                while True:
                    encoders[i % 2].save_pretrained(directory)
                    i += 1
            finally:
                os._exit(1)
        deadline = time.time() + 10
        while not started.exists() and time.time() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), "the saving child exited on its own: it failed instead of being killed"
        mid_save += started.exists()
        loaded = vectors_of(directory)  # loading recovers an aside copy where the fallback left one
        assert any(np.array_equal(loaded, e) for e in expected), "the directory holds neither save"
    return mid_save


def exchange_supported(where: Path) -> bool:
    a, b = where / "probe-a", where / "probe-b"
    a.mkdir(), b.mkdir()
    try:
        return artifacts._exchange(a, b)
    finally:
        a.rmdir(), b.rmdir()


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "rename-aside-fallback"])
def test_kill_during_save_always_leaves_a_loadable_artefact(tmp_path, exchange):
    if exchange and not exchange_supported(tmp_path):
        pytest.skip("this filesystem cannot exchange directories atomically")
    directory = tmp_path / "out" / "encoder"
    assert kill_during_saves(directory, kills=25, exchange=exchange) == 25
    static_encoder(1).save_pretrained(directory)  # a following save clears what the kills left behind
    assert sorted(p.name for p in directory.parent.iterdir()) == ["encoder"]
    np.testing.assert_array_equal(vectors_of(directory), static_encoder(1).embeddings.weight.detach().numpy())


def test_load_recovers_the_aside_copy_of_an_interrupted_fallback_save(tmp_path):
    directory = tmp_path / "enc"
    static_encoder(0).save_pretrained(directory)
    aside = tmp_path / ".enc.nlptl-aside-x1"
    os.rename(directory, aside)  # what a kill between the fallback's two renames leaves
    np.testing.assert_array_equal(vectors_of(directory), static_encoder(0).embeddings.weight.detach().numpy())
    assert not aside.exists()


def test_save_replaces_an_earlier_save_and_accepts_an_empty_directory(tmp_path):
    (tmp_path / "enc").mkdir()
    static_encoder(0).save_pretrained(tmp_path / "enc")
    static_encoder(1).save_pretrained(tmp_path / "enc")
    np.testing.assert_array_equal(vectors_of(tmp_path / "enc"), static_encoder(1).embeddings.weight.detach().numpy())
    manifest = json.loads((tmp_path / "enc" / "nlptl_files.json").read_text())["files"]
    assert set(manifest) == {"encoder.safetensors", "nlptl_encoder.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]


def test_legacy_artefact_without_a_manifest_is_replaced(tmp_path):
    static_encoder(0).save_pretrained(tmp_path / "enc")
    (tmp_path / "enc" / "nlptl_files.json").unlink()
    static_encoder(1).save_pretrained(tmp_path / "enc")
    np.testing.assert_array_equal(vectors_of(tmp_path / "enc"), static_encoder(1).embeddings.weight.detach().numpy())


def test_transformer_save_replaces_its_earlier_save(tmp_path):
    from tests.tiny.transformers import build_bert

    encoder, texts = build_bert(tmp_path)
    encoder.save_pretrained(tmp_path / "saved")
    encoder.save_pretrained(tmp_path / "saved")  # tokenizer and HF files are all in the manifest
    reloaded = nlptl.load_encoder(tmp_path / "saved")
    torch.testing.assert_close(reloaded.encode(texts), encoder.encode(texts))


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask-022", "umask-027"])
def test_written_files_and_saved_directories_get_the_umasks_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        artifacts.write_text_atomically(tmp_path / "metrics.json", "{}")
        static_encoder(0).save_pretrained(tmp_path / "enc")
    finally:
        os.umask(old)
    # what open() and mkdir() give, not mkstemp's 0600 / mkdtemp's 0700 (a model others could not read)
    assert mode(tmp_path / "metrics.json") == 0o666 & ~umask
    assert mode(tmp_path / "enc") == 0o777 & ~umask


def test_replacing_keeps_the_permissions_the_user_set(tmp_path):
    artifacts.write_text_atomically(tmp_path / "metrics.json", "{}")
    os.chmod(tmp_path / "metrics.json", 0o640)
    artifacts.write_text_atomically(tmp_path / "metrics.json", '{"a": 1}')
    static_encoder(0).save_pretrained(tmp_path / "enc")
    os.chmod(tmp_path / "enc", 0o750)
    static_encoder(1).save_pretrained(tmp_path / "enc")
    assert (mode(tmp_path / "metrics.json"), mode(tmp_path / "enc")) == (0o640, 0o750)
    assert (tmp_path / "metrics.json").read_text() == '{"a": 1}'


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="stopped"):
        with artifacts.replaced_atomically(path, "w") as f:
            f.write("new, half written")
            raise RuntimeError("stopped")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_write_text_atomically_stays_importable_from_checkpoint(tmp_path):
    checkpoint.write_text_atomically(tmp_path / "a.json", "{}")
    assert (tmp_path / "a.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


# ----- encodings ------------------------------------------------------------------------------------

def test_vector_files_with_a_utf8_byte_order_mark_are_read(tmp_path):
    glove = tiny.write_glove(tmp_path)
    word2vec = tiny.write_word2vec(tmp_path, binary=False)
    for path in (glove, word2vec):
        bom = write(tmp_path / f"bom-{path.name}", b"\xef\xbb\xbf" + path.read_bytes())
        assert nlptl.load_encoder(bom).words == nlptl.load_encoder(path).words


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_data_files_with_a_byte_order_mark_are_read(tmp_path, encoding):
    path = write(tmp_path / "d.csv", "text,label\ngood film,pos\nbad film,neg\n".encode(encoding))
    ds = load_files(train_file=path)["train"]
    assert ds["text"] == ["good film", "bad film"] and ds.features["label"].names == ["neg", "pos"]


def test_labels_with_surrounding_spaces_are_stripped_with_a_warning(tmp_path):
    path = write(tmp_path / "d.tsv", "text\tlabel\na\tpos\nb\tpos \nc\tneg\n")
    with pytest.warns(UserWarning, match=r"1 label value\(s\) in column 'label' have surrounding spaces.*'pos '"):
        ds = load_files(train_file=path)["train"]
    assert ds.features["label"].names == ["neg", "pos"] and list(ds["label"]) == [1, 1, 0]


# ----- run directories and resume -------------------------------------------------------------------

def test_overwrite_removes_only_the_earlier_runs_nlptl_files(tmp_path):
    run = tmp_path / "run"
    fake_checkpoint(run)
    finished_run(run)
    write(run / "log.jsonl", "{}\n")
    write(run / "eval-validation.json", "{}")
    write(run / "feature_cache" / "abc" / "index.json", "{}")
    write(run / "my_notes.md", "keep me")
    write(run / "checkpoints" / "README", "mine too")
    rundir.check_run_directory(run, resume=False, fingerprint=FINGERPRINT, overwrite=True)
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == [
        "checkpoints", "checkpoints/README", "feature_cache", "feature_cache/abc", "feature_cache/abc/index.json",
        "my_notes.md"]


def test_fresh_run_in_an_empty_or_cache_only_directory_is_fine(tmp_path):
    rundir.check_run_directory(tmp_path / "new", resume=False, fingerprint=FINGERPRINT)
    write(tmp_path / "cached" / "feature_cache" / "x.npy", "x")
    rundir.check_run_directory(tmp_path / "cached", resume=False, fingerprint=FINGERPRINT)


def test_resume_with_the_same_fingerprint_passes(tmp_path):
    fake_checkpoint(tmp_path / "run")
    same = json.loads(json.dumps(FINGERPRINT))
    rundir.check_run_directory(tmp_path / "run", resume=True, fingerprint=same)


def test_resume_without_a_recorded_fingerprint_warns(tmp_path):
    fake_checkpoint(tmp_path / "run", fingerprint=None)
    with pytest.warns(UserWarning, match="records no run fingerprint"):
        rundir.check_run_directory(tmp_path / "run", resume=True, fingerprint=FINGERPRINT)


@pytest.mark.parametrize("pointer", [None, "garbage \x00", "checkpoint-9", "../../etc"])
def test_damaged_or_missing_latest_falls_back_to_the_newest_complete_checkpoint(tmp_path, pointer):
    run = tmp_path / "run"
    fake_checkpoint(run, step=3)
    newest = fake_checkpoint(run, step=6)
    (run / "checkpoints" / "checkpoint-9").mkdir()  # a save killed before its trainer_state.json
    latest = run / "checkpoints" / "latest"
    if pointer is None:
        latest.unlink()
        assert checkpoint.latest_checkpoint(run) == newest
    else:
        latest.write_text(pointer)
        with pytest.warns(UserWarning, match="not a complete checkpoint; resuming from the newest complete one"):
            assert checkpoint.latest_checkpoint(run) == newest


def test_unparsable_trainer_state_is_not_a_complete_checkpoint(tmp_path):
    run = tmp_path / "run"
    older = fake_checkpoint(run, step=3)
    newer = fake_checkpoint(run, step=6)
    (newer / "trainer_state.json").write_text('{"epoch": ')
    with pytest.warns(UserWarning, match="checkpoint-6"):
        path, state = checkpoint.read_trainer_state(run)
    assert path == older and state["global_step"] == 3


def test_valid_checkpoint_reaches_load_state(tmp_path):
    from tests.test_bad_input import FakeAccelerator

    path = fake_checkpoint(tmp_path / "run")
    accelerator = FakeAccelerator()
    state, best = checkpoint.load_checkpoint(accelerator, tmp_path / "run")
    assert accelerator.loaded == [str(path)] and state["global_step"] == 3 and best is None


# ----- recipes and benchmarks write their tables through the atomic writers --------------------------

def test_every_recipe_and_benchmark_writes_its_files_through_the_atomic_writers():
    """A script killed mid-write must leave the earlier table whole: no direct write_text or savefig(path)."""
    import ast

    root = Path(__file__).resolve().parents[1]
    scripts = sorted([*(root / "recipes").glob("*.py"), *(root / "benchmarks").rglob("*.py")])
    assert any(p.parent.name == "recipes" for p in scripts) and any("benchmarks" in p.parts for p in scripts)
    for path in scripts:
        tree = ast.parse(path.read_text(), filename=str(path))
        atomic_targets = {item.optional_vars.id for node in ast.walk(tree) if isinstance(node, ast.With)
                          for item in node.items if isinstance(item.context_expr, ast.Call)
                          and getattr(item.context_expr.func, "id", None) == "replaced_atomically"
                          and isinstance(item.optional_vars, ast.Name)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            assert node.func.attr not in ("write_text", "write_bytes"), f"{where} writes a file in place"
            if node.func.attr == "savefig":
                target = node.args[0] if node.args else None
                assert isinstance(target, ast.Name) and target.id in atomic_targets, \
                    f"{where} saves a figure in place; save into `with replaced_atomically(path) as f`"
