"""Bad input to loaders, file readers, saving and run directories: a clear error, and nothing written or removed.

Every case asserts the exception type, that the message names the file or field (and the fix
where there is one), and that the directory it touched is byte-for-byte as before.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import nlptl
from nlptl import checkpoint, rundir
from nlptl.data import check_training_labels, check_training_texts, load_files
from nlptl.encoders.static import StaticEncoder
from tests.tiny import static as tiny


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under ``root`` with its size and content hash: what 'nothing changed' compares."""
    import hashlib

    out = {}
    for path in sorted(Path(root).rglob("*")):
        data = path.read_bytes() if path.is_file() else b""
        out[path.relative_to(root).as_posix()] = (len(data), hashlib.sha1(data).digest())
    return out


class Unchanged:
    """``with Unchanged(dir):`` fails the test when anything under ``dir`` was written, changed or removed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __enter__(self):
        self.before = snapshot(self.root)
        return self

    def __exit__(self, *exc):
        assert snapshot(self.root) == self.before, "files were written or removed"
        return False


def static_encoder(seed: int = 0) -> StaticEncoder:
    rng = np.random.default_rng(seed)
    return StaticEncoder(["the", "cat", "sat", "mat"], rng.normal(size=(4, 8)).astype(np.float32))


@pytest.fixture
def saved_static(tmp_path) -> Path:
    static_encoder().save_pretrained(tmp_path / "enc")
    return tmp_path / "enc"


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    from tests.tiny.transformers import HF_DIR, build_bert

    root = tmp_path_factory.mktemp("bert")
    build_bert(root)
    return root / HF_DIR


def bert_variant(bert_dir: Path, tmp_path: Path, **config_changes) -> Path:
    target = tmp_path / "variant"
    shutil.copytree(bert_dir, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **config_changes}))
    return target


def source_dir(tmp_path: Path) -> Path:
    """Where the valid originals are written, beside the damaged copies the tests make."""
    (tmp_path / "src").mkdir(exist_ok=True)
    return tmp_path / "src"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


# ----- loading never runs code a file names ---------------------------------------------------------

def module_dir(tmp_path: Path, module_class: str, kwargs: dict) -> Path:
    directory = tmp_path / "evil"
    config = {"module_class": module_class, "module_kwargs": kwargs, "module_type": "Net", "image_size": [16, 16],
              "mean": [0.5] * 3, "std": [0.5] * 3, "num_features": 4, "layer_groups": None}
    write(directory / "nlptl_encoder.json", json.dumps({"kind": "module", "config": config}))
    return directory


def test_module_class_is_not_imported_without_trust_remote_code(tmp_path):
    marker = tmp_path / "pwned"
    directory = module_dir(tmp_path, "os:system", {"command": f"touch {marker}"})
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"nlptl_encoder\.json.*'os:system'.*trust_remote_code=True"):
        nlptl.load_encoder(directory)
    assert not marker.exists()


@pytest.mark.parametrize("target, kwargs", [
    ("os:system", {"command": "touch {marker}"}),
    ("builtins:exec", {"source": "open({marker!r}, 'w')"}),
    ("subprocess:Popen", {"args": ["touch", "{marker}"]}),  # a class, but not an nn.Module
])
def test_trusted_module_class_must_be_an_nn_module_before_it_is_called(tmp_path, target, kwargs):
    marker = tmp_path / "pwned"
    kwargs = json.loads(json.dumps(kwargs).replace("{marker}", str(marker)).replace("{marker!r}", repr(str(marker))))
    directory = module_dir(tmp_path, target, kwargs)
    with Unchanged(tmp_path), pytest.raises(TypeError, match=rf"module_class='{target}'.*not a torch\.nn\.Module"):
        nlptl.load_encoder(directory, trust_remote_code=True)
    assert not marker.exists()


def test_no_entry_point_runs_the_module_class_of_a_saved_model(tmp_path):
    """from_pretrained, ``nlptl predict`` and ``nlptl evaluate`` on a run whose encoder names os:system."""
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    tiny_model().save_pretrained(run / "model")
    evil = module_dir(tmp_path, "os:system", {"command": f"touch {marker}"})
    shutil.rmtree(run / "model" / "encoder")
    shutil.copytree(evil, run / "model" / "encoder")
    data = write(tmp_path / "eval.tsv", "text\tlabel\nthe cat\tyes\nthe mat\tno\n")
    with Unchanged(tmp_path):
        with pytest.raises(ValueError, match=r"nlptl_encoder\.json.*'os:system'.*trust_remote_code=True"):
            nlptl.TransferModel.from_pretrained(run / "model")
        line = cli_error(["predict", str(run), "--text", "the cat"])
        assert "'os:system'" in line and "trust" in line, line
        line = cli_error(["evaluate", str(run), "--eval-file", str(data)])
        assert "'os:system'" in line, line
    assert not marker.exists()


def test_trusted_module_class_that_is_not_an_import_path(tmp_path):
    directory = module_dir(tmp_path, "no_colon_here", {})
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"module_class.*'no_colon_here'.*package\.module:Name"):
        nlptl.load_encoder(directory, trust_remote_code=True)


def test_trust_remote_code_must_be_a_bool(saved_static):
    with pytest.raises(TypeError, match="trust_remote_code must be True or False"):
        nlptl.load_encoder(saved_static, trust_remote_code="yes")


def test_saved_attn_implementation_must_be_a_known_one(bert_dir, tmp_path):
    encoder = nlptl.load_encoder(bert_dir)
    encoder.save_pretrained(tmp_path / "saved")
    config_file = tmp_path / "saved" / "nlptl_encoder.json"
    payload = json.loads(config_file.read_text())
    payload["config"]["attn_implementation"] = "kernels-community/flash-attn"  # would fetch code from the hub
    config_file.write_text(json.dumps(payload))
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"nlptl_encoder\.json.*attn_implementation='kernels"):
        nlptl.load_encoder(tmp_path / "saved")


def test_encoder_json_that_is_not_json(saved_static, tmp_path):
    (saved_static / "nlptl_encoder.json").write_text('{"kind": "static", ')
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"nlptl_encoder\.json.*not valid JSON \(line 1"):
        nlptl.load_encoder(saved_static)


def test_encoder_json_with_an_unknown_kind(saved_static, tmp_path):
    (saved_static / "nlptl_encoder.json").write_text('{"kind": "pickle", "config": {}}')
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"nlptl_encoder\.json.*unknown saved kind 'pickle'"):
        nlptl.load_encoder(saved_static)


# ----- damaged weights ------------------------------------------------------------------------------

def test_cut_short_encoder_weights_name_the_file(saved_static, tmp_path):
    weights = saved_static / "encoder.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"encoder\.safetensors.*cut short"):
        nlptl.load_encoder(saved_static)


def test_damaged_encoder_weights_of_the_right_size_name_the_file(saved_static, tmp_path):
    weights = saved_static / "encoder.safetensors"
    weights.write_bytes(b"\xff" * weights.stat().st_size)
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"encoder\.safetensors.*not a readable safetensors"):
        nlptl.load_encoder(saved_static)


def test_nan_in_encoder_weights_names_file_and_tensor(saved_static, tmp_path):
    vectors = static_encoder().embeddings.weight.detach().clone()
    vectors[2, 3] = float("nan")  # what a flipped exponent bit can do
    save_file({"embeddings.weight": vectors, "oov_vectors": torch.zeros(0, 8)}, str(saved_static / "encoder.safetensors"))
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"encoder\.safetensors.*'embeddings\.weight'.*NaN"):
        nlptl.load_encoder(saved_static)


def test_damaged_transformer_weights_name_the_file(bert_dir, tmp_path):
    directory = bert_variant(bert_dir, tmp_path)
    (directory / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"model\.safetensors.*not a readable safetensors"):
        nlptl.load_encoder(directory)


def test_infinite_transformer_weight_names_the_tensor(bert_dir, tmp_path):
    from safetensors.torch import load_file

    directory = bert_variant(bert_dir, tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    state["encoder.layer.1.output.dense.weight"][0, 0] = float("inf")
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"'encoder\.layer\.1\.output\.dense\.weight'.*infinite"):
        nlptl.load_encoder(directory)


# ----- config.json that disagrees with the weights --------------------------------------------------

def test_transformer_config_that_is_not_json(bert_dir, tmp_path):
    directory = bert_variant(bert_dir, tmp_path)
    (directory / "config.json").write_text("{'model_type': 'bert'}")
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"config\.json.*not valid JSON \(line 1, column 2"):
        nlptl.load_encoder(directory)


@pytest.mark.parametrize("changes, message", [
    ({"num_hidden_layers": 3}, r"num_hidden_layers=3.*stop before layer 2"),  # would add a random layer
    ({"num_hidden_layers": 1}, r"num_hidden_layers=1 but model\.safetensors holds layers up to index 1"),
    ({"vocab_size": 200}, r"word_embeddings\.weight is \(86, 32\) in the weights but \(200, 32\).*vocab_size"),
    ({"hidden_size": 64}, r"config\.json disagrees with model\.safetensors.*hidden_size"),
])
def test_transformer_config_that_disagrees_with_the_weights(bert_dir, tmp_path, changes, message):
    directory = bert_variant(bert_dir, tmp_path, **changes)
    with Unchanged(tmp_path), pytest.raises(ValueError, match=message):
        nlptl.load_encoder(directory)


def test_tokenizer_bigger_than_the_embeddings(bert_dir, tmp_path):
    from safetensors.torch import load_file

    directory = bert_variant(bert_dir, tmp_path, vocab_size=50)
    state = load_file(str(directory / "model.safetensors"))
    state["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"][:50].clone()
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"tokenizer has 86 tokens but the model's embeddings have 50"):
        nlptl.load_encoder(directory)


# ----- vector files ---------------------------------------------------------------------------------

def word2vec_lines(tmp_path) -> tuple[int, int, str]:
    header, rest = tiny.write_word2vec(source_dir(tmp_path), binary=False).read_text().split("\n", 1)
    count, dim = map(int, header.split())
    return count, dim, rest


def test_word2vec_text_header_dimension_disagrees_with_rows(tmp_path):
    count, dim, rest = word2vec_lines(tmp_path)
    path = write(tmp_path / "v.txt", f"{count} {dim + 1}\n{rest}")  # used to fall through to the binary reader
    with Unchanged(tmp_path), pytest.raises(ValueError, match=rf"v\.txt' line 2: word 'the' has {dim} numbers but the vectors have {dim + 1}"):
        nlptl.load_encoder(path)


def test_word2vec_text_header_count_disagrees_with_rows(tmp_path):
    count, dim, rest = word2vec_lines(tmp_path)
    path = write(tmp_path / "v.txt", f"{count - 1} {dim}\n{rest}")
    with Unchanged(tmp_path), pytest.raises(ValueError, match=rf"header says {count - 1} words but the file has {count}.*fix"):
        nlptl.load_encoder(path)


def binary_word2vec(tmp_path, count_change: int) -> Path:
    header, rest = tiny.write_word2vec(source_dir(tmp_path), binary=True).read_bytes().split(b"\n", 1)
    count, dim = map(int, header.split())
    return write(tmp_path / "v.bin", f"{count + count_change} {dim}\n".encode() + rest)


def test_word2vec_binary_header_that_undercounts(tmp_path):
    path = binary_word2vec(tmp_path, -3)  # gensim read the first words and silently dropped the rest
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"v\.bin'.*undercounts: fix its count"):
        nlptl.load_encoder(path)


def test_word2vec_binary_header_that_overcounts(tmp_path):
    path = binary_word2vec(tmp_path, +3)
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"v\.bin' is not a valid binary word2vec.*count dim"):
        nlptl.load_encoder(path)


@pytest.mark.parametrize("cut, message", [
    (200, "ends inside the vocabulary"),  # gensim looped forever here
    (2000, "ends before the output matrix"),
    (-3, "cut short"),
])
def test_cut_short_fasttext_bin(tmp_path, cut, message):
    data = tiny.write_fasttext(source_dir(tmp_path)).read_bytes()
    path = write(tmp_path / "ft.bin", data[:cut])
    with Unchanged(tmp_path), pytest.raises(ValueError, match=rf"ft\.bin' starts like a fastText .bin.*{message}"):
        nlptl.load_encoder(path)


def test_fasttext_bin_with_trailing_bytes(tmp_path):
    path = write(tmp_path / "ft.bin", tiny.write_fasttext(source_dir(tmp_path)).read_bytes() + b"\0\0")
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"ft\.bin'.*extra bytes at the end"):
        nlptl.load_encoder(path)


@pytest.mark.parametrize("kind", [None, "glove"])
def test_utf16_vector_file_is_named_as_such(tmp_path, kind):
    text = tiny.write_glove(source_dir(tmp_path)).read_text()
    path = write(tmp_path / "g.txt", text.encode("utf-16"))
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"g\.txt' is UTF-16 text.*iconv"):
        nlptl.load_encoder(path, kind=kind)


# ----- data files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, text", [
    ("d.csv", "text,label,text\na,pos,b\nc,neg,d\n"),
    ("d.tsv", "text\tlabel\tlabel\na\tpos\tx\nc\tneg\ty\n"),
])
def test_duplicate_column_names(tmp_path, name, text):
    path = write(tmp_path / name, text)
    with Unchanged(tmp_path), pytest.raises(ValueError, match=rf"{name}: the header names column '\w+' twice"):
        load_files(train_file=path)


@pytest.mark.parametrize("value, kind", [(["a", "list"], "list"), (42, "int"), ({"a": 1}, "dict"), (True, "bool")])
def test_jsonl_text_that_is_not_a_string(tmp_path, value, kind):
    rows = [{"text": "fine", "label": "pos"}, {"text": value, "label": "neg"}]
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    with Unchanged(tmp_path), pytest.raises(ValueError, match=rf"d\.jsonl: line 2 \(data row 2\) has a {kind} .* text column 'text'"):
        load_files(train_file=path)


def test_json_records_text_that_is_not_a_string(tmp_path):
    path = write(tmp_path / "d.json", json.dumps([{"t": "ok", "label": "a"}, {"t": 3.5, "label": "b"}]))
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"d\.json: record 2 has a float .* text column 't'"):
        load_files(train_file=path, text_column="t")


@pytest.mark.parametrize("labels, match", [
    ([1.0, 0.0], r"label 1\.0 in column 'label' is a float.*write it as the integer 1"),
    ([0.5, 1.5], r"label 0\.5 .* is a float.*integer class ids"),
    ([True, False], r"label True .* is a bool"),
])
def test_float_or_boolean_labels_in_json(tmp_path, labels, match):
    rows = [{"text": f"t{i}", "label": v} for i, v in enumerate(labels)]
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    with Unchanged(tmp_path), pytest.raises(ValueError, match=rf"d\.jsonl: line 1 \(data row 1\): {match}"):
        load_files(train_file=path)


def test_float_labels_in_csv(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\na,1.0\nb,0.0\n")
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"d\.csv: the labels in column 'label' read as floats.*label_names"):
        load_files(train_file=path)


def test_missing_label_names_the_line(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\na,pos\nb,\nc,neg\n")
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"d\.csv: line 3 \(data row 2\) has no label in column 'label'"):
        load_files(train_file=path)


def test_training_file_with_one_class(tmp_path):
    path = write(tmp_path / "d.tsv", "text\tlabel\ngood\tpos\nfine\tpos \n")  # 'pos ' is 'pos' once stripped
    with Unchanged(tmp_path), pytest.warns(UserWarning, match="stripped"), \
            pytest.raises(ValueError, match=r"d\.tsv has only the class 'pos' in its 2 row\(s\).*two classes"):
        load_files(train_file=path)


def test_training_file_with_only_empty_texts(tmp_path):
    path = write(tmp_path / "d.csv", 'text,label\n"",pos\n" ",neg\n')
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"every text in .*d\.csv is empty.*text_column"):
        load_files(train_file=path)


def test_utf16_data_file_without_byte_order_mark(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\na,pos\nb,neg\n".encode("utf-16-le"))
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"d\.csv: looks like UTF-16 text without a byte-order mark"):
        load_files(train_file=path)


@pytest.mark.parametrize("labels", [[1, 1, 1], ["pos"], []])
def test_check_training_labels_for_in_memory_data(labels):
    with pytest.raises(ValueError, match=r"train_data has .*(class|label)"):
        check_training_labels(labels, "train_data")


def test_check_training_texts_for_in_memory_data():
    with pytest.raises(ValueError, match=r"every text in train_data is empty \(2 row"):
        check_training_texts(["", "  "], "train_data")


# ----- saving never deletes what is not ours --------------------------------------------------------

def test_save_into_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path / "my_notes.txt", "precious")
    monkeypatch.chdir(tmp_path)
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"refusing to save into .*working directory.*my-model"):
        static_encoder().save_pretrained(".")


def test_save_into_a_parent_of_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    with Unchanged(tmp_path), pytest.raises(ValueError, match="one of its parents"):
        static_encoder().save_pretrained("..")


def test_save_into_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write(tmp_path / "home" / ".bashrc", "x")
    with Unchanged(tmp_path), pytest.raises(ValueError, match="home directory"):
        static_encoder().save_pretrained(tmp_path / "home")


def test_save_into_a_directory_of_user_files(tmp_path):
    write(tmp_path / "out" / "thesis.tex", "years of work")
    write(tmp_path / "out" / "data" / "x.csv", "a")
    with Unchanged(tmp_path), pytest.raises(FileExistsError, match=r"not a saved nlptl artefact \(no nlptl_encoder\.json\).*'data', 'thesis\.tex'"):
        static_encoder().save_pretrained(tmp_path / "out")


def test_save_over_an_artefact_with_a_user_file_in_it(saved_static, tmp_path):
    write(saved_static / "notes.txt", "mine")
    with Unchanged(tmp_path), pytest.raises(FileExistsError, match=r"besides the saved artefact it holds 'notes\.txt'"):
        static_encoder(1).save_pretrained(saved_static)


def test_save_over_a_legacy_artefact_with_a_user_folder(saved_static, tmp_path):
    (saved_static / "nlptl_files.json").unlink()  # as saved before manifests existed
    write(saved_static / "results" / "run1.json", "{}")
    with Unchanged(tmp_path), pytest.raises(FileExistsError, match=r"it holds 'results/'"):
        static_encoder(1).save_pretrained(saved_static)


def test_save_onto_a_file(tmp_path):
    write(tmp_path / "model", "a file")
    with Unchanged(tmp_path), pytest.raises(FileExistsError, match="it is a file, not a directory"):
        static_encoder().save_pretrained(tmp_path / "model")


def test_failing_save_keeps_the_old_artefact(saved_static, tmp_path):
    encoder = static_encoder(1)
    encoder.config = lambda: {"words": object()}  # not JSON-serialisable: fails halfway through writing
    with Unchanged(tmp_path), pytest.raises(TypeError, match="not JSON serializable"):
        encoder.save_pretrained(saved_static)


# ----- run directories and resume -------------------------------------------------------------------

FINGERPRINT = {"config": {"learning_rate": 1e-3, "strategy": "full", "seed": 0}, "data": {"train": "abc"}}


def fake_checkpoint(out: Path, step: int = 3, fingerprint: dict | None = FINGERPRINT) -> Path:
    """A checkpoint as Accelerate and save_checkpoint lay it out, without training anything."""
    path = out / "checkpoints" / f"checkpoint-{step}"
    path.mkdir(parents=True)
    states = {"step": step, "random_state": random.getstate(), "numpy_random_seed": np.random.get_state(),
              "torch_manual_seed": torch.get_rng_state()}
    torch.save(states, path / "random_states_0.pkl")
    (path / "trainer_state.json").write_text(json.dumps({"epoch": 0, "global_step": step}))
    (out / "checkpoints" / "latest").write_text(path.name)
    if fingerprint is not None:
        rundir.write_fingerprint(out, fingerprint)
    return path


def finished_run(out: Path) -> None:
    """config.json, metrics.json and model/ laid out as a TransferModel saves it (encoder/, head, JSON)."""
    from nlptl.artifacts import save_directory

    def write_model(staging: Path) -> None:
        static_encoder().save_pretrained(staging / "encoder")
        save_file({"weight": torch.zeros(2, 8)}, str(staging / "head.safetensors"))
        (staging / "nlptl_model.json").write_text("{}")

    write(out / "config.json", "{}")
    write(out / "metrics.json", "{}")
    save_directory(out / "model", write_model, "nlptl_model.json")


def test_fresh_run_into_a_directory_with_checkpoints(tmp_path):
    fake_checkpoint(tmp_path / "run")
    with Unchanged(tmp_path), pytest.raises(FileExistsError, match=r"checkpoints/.*--resume.*choose another --output-dir"):
        rundir.check_run_directory(tmp_path / "run", resume=False, fingerprint=FINGERPRINT)


def test_fresh_run_into_a_finished_run(tmp_path):
    finished_run(tmp_path / "run")
    with Unchanged(tmp_path), pytest.raises(FileExistsError, match=r"config\.json, metrics\.json, model.*resume=True"):
        rundir.check_run_directory(tmp_path / "run", resume=False, fingerprint=FINGERPRINT)


def test_resume_without_a_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    with Unchanged(tmp_path), pytest.raises(FileNotFoundError, match=r"holds no complete checkpoint.*save_every_steps"):
        rundir.check_run_directory(tmp_path / "run", resume=True, fingerprint=FINGERPRINT)


def test_resume_a_checkpoint_of_another_run(tmp_path):
    fake_checkpoint(tmp_path / "run")
    changed = {"config": {**FINGERPRINT["config"], "learning_rate": 2e-3}, "data": {"train": "xyz"}}
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"config\.learning_rate: 0\.001 in the checkpoint vs 0\.002 now; data\.train: \"abc\" in the checkpoint vs \"xyz\" now"):
        rundir.check_run_directory(tmp_path / "run", resume=True, fingerprint=changed)


def test_resume_and_overwrite_together(tmp_path):
    fake_checkpoint(tmp_path / "run")
    with Unchanged(tmp_path), pytest.raises(ValueError, match="resume=True and overwrite=True contradict"):
        rundir.check_run_directory(tmp_path / "run", resume=True, fingerprint=FINGERPRINT, overwrite=True)


def test_output_dir_that_is_a_file(tmp_path):
    write(tmp_path / "run", "x")
    with Unchanged(tmp_path), pytest.raises(NotADirectoryError, match="is a file"):
        rundir.check_run_directory(tmp_path / "run", resume=False, fingerprint=FINGERPRINT)


def test_overwrite_refuses_a_model_folder_holding_user_files(tmp_path):
    finished_run(tmp_path / "run")
    write(tmp_path / "run" / "model" / "mine.txt", "x")
    with Unchanged(tmp_path), pytest.raises(FileExistsError, match=r"overwrite=True would delete .*model.*also holds 'mine\.txt'"):
        rundir.check_run_directory(tmp_path / "run", resume=False, fingerprint=FINGERPRINT, overwrite=True)


def test_damaged_fingerprint_file(tmp_path):
    fake_checkpoint(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "run_fingerprint.json").write_text("{not json")
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"run_fingerprint\.json is damaged.*delete the file"):
        rundir.check_run_directory(tmp_path / "run", resume=True, fingerprint=FINGERPRINT)


class FakeAccelerator:
    """Stands in for Accelerator: load_checkpoint must refuse before it reaches load_state."""

    process_index = 0

    def __init__(self) -> None:
        self.loaded = []

    def load_state(self, path: str) -> None:
        self.loaded.append(path)


class RunsCommand:
    """Unpickling this runs a shell command: what a crafted checkpoint file could hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("damage, match", [
    (lambda f: f.write_bytes(f.read_bytes()[:40]), r"random_states_0\.pkl cannot be read as plain training state"),
    (lambda f: f.unlink(), r"random_states_0\.pkl is missing"),
    (lambda f: torch.save({"step": 3}, f), r"random_states_0\.pkl is not an RNG state file"),
    (lambda f: torch.save({**torch.load(f, weights_only=False), "torch_manual_seed": torch.zeros(3, dtype=torch.uint8)}, f),
     r"random_states_0\.pkl: the RNG state is damaged"),
])
def test_damaged_rng_state_is_an_error_not_a_silent_divergence(tmp_path, damage, match):
    path = fake_checkpoint(tmp_path / "run")
    damage(path / "random_states_0.pkl")
    accelerator = FakeAccelerator()
    with Unchanged(tmp_path), pytest.raises((ValueError, FileNotFoundError), match=match):
        checkpoint.load_checkpoint(accelerator, tmp_path / "run")
    assert accelerator.loaded == []


@pytest.mark.parametrize("name", ["random_states_0.pkl", "custom_checkpoint_0.pkl"])
def test_checkpoint_pickle_that_would_run_code_is_refused(tmp_path, name):
    marker = tmp_path / "pwned"
    path = fake_checkpoint(tmp_path / "run")
    with open(path / name, "wb") as f:
        pickle.dump({"state": RunsCommand(marker)}, f, protocol=2)
    accelerator = FakeAccelerator()
    with Unchanged(tmp_path), pytest.raises(ValueError, match=rf"{name} cannot be read as plain training state.*refuses"):
        checkpoint.load_checkpoint(accelerator, tmp_path / "run")
    assert not marker.exists() and accelerator.loaded == []


def test_damaged_best_weights_name_the_file(tmp_path):
    path = fake_checkpoint(tmp_path / "run")
    write(path / "best_weights.safetensors", struct.pack("<Q", 10) + b"not json!!")
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"best_weights\.safetensors.*not a readable safetensors"):
        checkpoint.load_checkpoint(FakeAccelerator(), tmp_path / "run")


def test_tokenizer_file_that_is_not_json(bert_dir, tmp_path):
    directory = bert_variant(bert_dir, tmp_path)
    (directory / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with Unchanged(tmp_path), pytest.raises(ValueError, match=r"tokenizer\.json.*not valid JSON"):
        nlptl.load_encoder(directory)


# ----- heads, fit, predict / answer / tag, and the command line ----------------------------------------

WORDS = ["the cat sat", "the mat", "cat sat on the mat", "the cat"]


def tiny_model() -> nlptl.TransferModel:
    from nlptl.heads import ClassificationHead

    return nlptl.TransferModel(static_encoder(), ClassificationHead(2), labels=["no", "yes"])


def token_head(**options):
    from nlptl.heads import head_class

    return head_class("token-classification")(**options)


@pytest.mark.parametrize("build, error, match", [
    (lambda h: h.ClassificationHead(2.5), ValueError, r"num_labels=2\.5: expected an integer >= 2"),
    (lambda h: h.ClassificationHead("2"), ValueError, r"num_labels='2': expected an integer"),
    (lambda h: h.ClassificationHead(True), ValueError, r"num_labels=True: expected an integer"),
    (lambda h: h.ClassificationHead(1), ValueError, r"num_labels=1.*at least 2 labels"),
    (lambda h: h.ClassificationHead(2, pooling="maximum"), ValueError, r"unknown pooling 'maximum'; choose one of"),
    (lambda h: h.ExtractiveQAHead(n_best=0), ValueError, r"n_best=0: expected an integer >= 1"),
    (lambda h: h.ExtractiveQAHead(stride=1.5), ValueError, r"stride=1\.5: expected an integer >= 0"),
    (lambda h: token_head(num_labels=2.5), ValueError, r"num_labels=2\.5: expected an integer >= 2"),
    (lambda h: token_head(), ValueError, r"give labels=\[tag names\]"),
    (lambda h: token_head(labels="O B-PER"), ValueError, r"labels='O B-PER': expected a list of at least 2 tag"),
    (lambda h: token_head(labels=["O", "B-PER"], num_labels=3), ValueError, r"labels has 2 names but num_labels=3"),
    (lambda h: nlptl.TransferModel("glove", h.ClassificationHead(2)), TypeError, r"encoder must be an nlptl Encoder"),
    (lambda h: nlptl.TransferModel(static_encoder(), h.ClassificationHead(2), heads={"a": h.ClassificationHead(2)}),
     TypeError, r"exactly one of head= .* or heads="),
    (lambda h: nlptl.TransferModel(static_encoder(), heads={"a/b": h.ClassificationHead(2)}), ValueError,
     r"head name 'a/b'"),
])
def test_bad_head_or_model_arguments(build, error, match):
    import nlptl.heads as heads

    with pytest.raises(error, match=match):
        build(heads)


@pytest.mark.parametrize("data, options, error, match", [
    ({"text": WORDS, "label": ["no", "yes"] * 2}, {"epochs": 0}, ValueError, r"epochs=0: expected an integer >= 1"),
    ({"text": WORDS, "label": ["no", "yes"] * 2}, {"gradient_accumulation_steps": 0}, ValueError,
     r"gradient_accumulation_steps=0"),
    ({"text": WORDS, "label": ["no", "yes"] * 2}, {"learning_rate": float("nan")}, ValueError, r"learning_rate=nan"),
    ({"text": WORDS, "label": ["no", "yes"] * 2}, {"warmup_ratio": -0.1}, ValueError, r"warmup_ratio=-0\.1"),
    ({"text": WORDS, "label": ["no", "yes"] * 2}, {"max_grad_norm": 0}, ValueError, r"max_grad_norm=0"),
    ({"text": WORDS, "label": ["no", "yes"] * 2}, {"weight_decay": -1.0}, ValueError, r"weight_decay=-1\.0"),
    ({"text": WORDS, "label": ["no", "yes"] * 2}, {"lr": 1e-3}, TypeError, r"'lr' \(did you mean 'learning_rate'"),
    ({"text": WORDS, "label": ["no", "yes"] * 2}, {"resume": True}, FileNotFoundError, r"no complete checkpoint"),
    ({"text": WORDS, "label": ["yes"] * 4}, {}, ValueError, r"only the class 'yes'.*at least two classes"),
    ({"text": ["", " ", "", ""], "label": ["no", "yes"] * 2}, {}, ValueError, r"every text in train_data column 'text' is empty"),
    ({"text": WORDS, "label": [0.0, 1.0, 0.0, 1.0]}, {}, ValueError, r"label 0.0 in column 'label' is a float.*integer 0"),
    ({"text": WORDS, "label": [True, False, True, False]}, {}, ValueError, r"label True .* is a bool"),
    ({"words": WORDS, "label": ["no", "yes"] * 2}, {}, ValueError, r"'text'"),
])
def test_bad_fit_arguments_write_nothing(tmp_path, data, options, error, match):
    model, run = tiny_model(), tmp_path / "run"
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    with Unchanged(tmp_path), pytest.raises(error, match=match):
        nlptl.fit(model, data, output_dir=run, **options)
    assert not run.exists()
    # the encoder is untouched (an untrained head may be initialised under fit's seed, as fit always does)
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items()), "a refused fit trained"


@pytest.mark.parametrize("call, error, match", [
    (lambda m: m.predict("the cat sat"), TypeError, r"inputs is one string; pass a list of texts"),
    (lambda m: m.predict(None), TypeError, r"inputs is None"),
    (lambda m: m.predict(5), TypeError, r"inputs is a int; pass a list"),
    (lambda m: m.predict(["the cat"], batch_size=0), ValueError, r"batch_size=0: expected an integer >= 1"),
    (lambda m: m.predict(["the cat"], batch_size=-3), ValueError, r"batch_size=-3"),
    (lambda m: m.predict(["the cat"], batch_size=True), ValueError, r"batch_size=True"),
    (lambda m: m.predict(["the cat"], head="ner"), (KeyError, ValueError), r"'ner'"),
    (lambda m: m.answer(["who sat?"], ["the cat sat"]), TypeError, r"answer\(\) is for extractive QA; head 'default'"),
    (lambda m: m.tag(["the cat sat"]), TypeError, r"tag\(\) is for token classification"),
])
def test_bad_predict_calls(tmp_path, call, error, match):
    model = tiny_model()
    with Unchanged(tmp_path), pytest.raises(error, match=match):
        call(model)


@pytest.mark.parametrize("call, error, match", [
    (lambda m: m.answer("who sat?", ["the cat sat"]), TypeError, r"questions is one string; pass a list"),
    (lambda m: m.answer(None, ["the cat sat"]), TypeError, r"questions is None"),
    (lambda m: m.answer(["who sat?"], ["the cat sat"], batch_size=0), ValueError, r"batch_size=0"),
    (lambda m: m.answer(["who sat?", "where?"], ["the cat sat"]), ValueError, r"contexts"),
])
def test_bad_answer_calls(bert_dir, tmp_path, call, error, match):
    from nlptl.heads import ExtractiveQAHead

    model = nlptl.TransferModel(nlptl.load_encoder(bert_dir), ExtractiveQAHead())
    with Unchanged(tmp_path), pytest.raises(error, match=match):
        call(model)


@pytest.mark.parametrize("call, error, match", [
    (lambda m: m.tag("the cat sat"), TypeError, r"texts is one string; pass a list"),
    (lambda m: m.tag(None), TypeError, r"texts is None"),
    (lambda m: m.tag(["the cat sat"], batch_size=0), ValueError, r"batch_size=0"),
])
def test_bad_tag_calls(tmp_path, call, error, match):
    model = nlptl.TransferModel(static_encoder(), token_head(labels=["O", "B-ANIMAL", "I-ANIMAL"]))
    with Unchanged(tmp_path), pytest.raises(error, match=match):
        call(model)


def cli_error(argv: list[str]) -> str:
    """Run ``nlptl argv`` in-process; assert it failed with exactly one ``nlptl: error:`` line; return it."""
    import contextlib
    import io

    from nlptl.cli import main
    from tests.test_cli import assert_one_line_error

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse refused a flag's value before any command ran
            code = exit.code
    return assert_one_line_error(code, stderr.getvalue())


@pytest.fixture
def train_files(tmp_path) -> list[str]:
    from tests.test_cli import sentiment_rows, write_tsv
    from tests.tiny.static import write_glove

    data = tmp_path / "data"
    data.mkdir()
    train = write_tsv(data / "train.tsv", sentiment_rows(8))
    return ["train", "--train-file", str(train), "--eval-file", str(train), "--text-column", "review",
            "--encoder", str(write_glove(data)), "--encoder-kind", "glove", "--epochs", "1", "--batch-size", "4"]


@pytest.mark.parametrize("flags, match", [
    (["--epochs", "0"], r"epochs"),
    (["--gradient-accumulation-steps", "0"], r"gradient.accumulation.steps"),
    (["--learning-rate", "nan"], r"learning.rate"),
    (["--learning-rate=-1e-3"], r"learning.rate"),
    (["--warmup-ratio", "2"], r"warmup.ratio"),
    (["--batch-size", "0"], r"batch.size"),
    (["--max-grad-norm", "0"], r"max.grad.norm"),
    (["--strategy", "freeze_all"], r"strategy"),
    (["--mixed-precision", "fp16"], r"fp16"),
    (["--label-column", "stars"], r"'stars'"),
])
def test_bad_train_flags_are_one_line_errors_that_write_nothing(tmp_path, train_files, flags, match):
    run = tmp_path / "run"
    with Unchanged(tmp_path):
        line = cli_error([*train_files, "--output-dir", str(run), *flags])
    assert re.search(match, line), line
    assert not run.exists()


def test_missing_train_file_is_a_one_line_error(tmp_path, train_files):
    argv = [*train_files, "--output-dir", str(tmp_path / "run")]
    argv[argv.index("--train-file") + 1] = str(tmp_path / "nope.tsv")
    with Unchanged(tmp_path):
        line = cli_error(argv)
    assert "nope.tsv" in line and not (tmp_path / "run").exists()


def test_failing_rerun_into_a_finished_run_leaves_it_byte_for_byte(tmp_path, train_files):
    from tests.test_cli import cli

    run = tmp_path / "run"
    code, _, stderr = cli([*train_files, "--output-dir", str(run)])
    assert code == 0, stderr
    assert {"config.json", "metrics.json", "model"} <= {p.name for p in run.iterdir()}
    with Unchanged(tmp_path):
        cli_error([*train_files, "--output-dir", str(run)])                       # a fresh run: refused
        cli_error([*train_files, "--output-dir", str(run), "--epochs", "0"])      # bad value: refused first
        cli_error(["predict", str(run), "--text", "the cat", "--batch-size", "0"])  # predict: bad batch size
