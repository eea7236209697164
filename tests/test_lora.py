"""strategy="lora": adapters through peft on the tiny transformers, saved in the one artefact, merged, resumed."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nlptl
from nlptl.heads import ClassificationHead
from nlptl.lora import ADAPTER_DIRECTORY, SETTINGS_FILE, add_adapters, adapters_of, merge
from tests.test_cli import cli, last_json_line, sentiment_rows, write_tsv
from tests.test_training import separable_task
from tests.tiny.static import glove
from tests.tiny.transformers import BUILDERS, HF_DIR, build_bert

LABELS = ["negative", "positive"]
LORA = dict(strategy="lora", epochs=6, batch_size=8, learning_rate=1e-2, seed=0, progress=False)
PROBES = ["the movie was good", "the film was bad", "hello world", "a tiny film"]


def bert_model(tmp_path) -> nlptl.TransferModel:
    tmp_path.mkdir(parents=True, exist_ok=True)
    encoder, _ = build_bert(tmp_path)
    return nlptl.TransferModel(encoder, ClassificationHead(2), labels=LABELS)


def base_weights(model) -> dict[str, torch.Tensor]:
    """The HF model's own weights, by their names before any adapter (peft renames W to base_layer.W)."""
    return {k.replace(".base_layer", ""): v.detach().clone() for k, v in model.encoder.model.state_dict().items()
            if ".lora_" not in k}


def probabilities(model) -> np.ndarray:
    _, probs = model.predict(PROBES, return_probabilities=True)
    return np.array(probs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny BERT trained with LoRA on every layer, and its base weights before training."""
    model = bert_model(tmp_path_factory.mktemp("bert"))
    before = base_weights(model)
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    data = separable_task(model.encoder)
    result = nlptl.fit(model, data, data, **LORA)
    return model, result, before, head_before


def test_lora_learns_and_only_adapters_and_head_change(trained):
    model, result, before, head_before = trained
    assert result.metrics["accuracy"] >= 0.9
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    after = base_weights(model)
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert torch.equal(after[name], value), f"base weight {name} changed"
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())
    lora_b = [p for n, p in model.encoder.model.named_parameters() if ".lora_B." in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b), "B starts at zero and must have trained"
    settings = adapters_of(model.encoder)
    assert (settings.rank, settings.alpha, settings.dropout) == (8, 16.0, 0.1)
    assert [m.rsplit(".", 1)[-1] for m in settings.modules] == ["query", "value"] * 2
    adapter_count = sum(p.numel() for n, p in model.encoder.named_parameters() if ".lora_" in n)
    assert adapter_count == 4 * 8 * (32 + 32)  # 4 linears of 32 -> 32, rank 8: A (8x32) + B (32x8)
    assert result.trainable_parameters == adapter_count + sum(p.numel() for p in model.head.parameters())
    assert result.extra["config"]["learning_rate"] == 1e-2


def test_save_then_load_predicts_identically_and_keeps_the_base_model(trained, tmp_path):
    model, _, before, _ = trained
    model.save_pretrained(tmp_path / "saved")
    settings = json.loads((tmp_path / "saved" / ADAPTER_DIRECTORY / SETTINGS_FILE).read_text())
    assert settings["rank"] == 8 and len(settings["modules"]) == 4
    loaded = nlptl.TransferModel.from_pretrained(tmp_path / "saved")
    assert adapters_of(loaded.encoder) == adapters_of(model.encoder)
    np.testing.assert_array_equal(probabilities(loaded), probabilities(model))
    base = nlptl.load_encoder(tmp_path / "saved" / "encoder")  # the stored base model, without adapters
    assert adapters_of(base) is None
    for name, value in base.model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_merge_folds_adapters_into_the_weights(trained, tmp_path):
    model, _, _, _ = trained
    model.save_pretrained(tmp_path / "lora")
    copy = nlptl.TransferModel.from_pretrained(tmp_path / "lora")
    expected = probabilities(copy)
    assert merge(copy) is copy
    assert adapters_of(copy.encoder) is None
    assert not any(".lora_" in n or "base_layer" in n for n, _ in copy.encoder.model.named_parameters())
    np.testing.assert_allclose(probabilities(copy), expected, atol=1e-5, rtol=0)
    copy.save_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / ADAPTER_DIRECTORY).exists()
    np.testing.assert_allclose(probabilities(nlptl.TransferModel.from_pretrained(tmp_path / "merged")), expected,
                               atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no LoRA adapters"):
        merge(copy)


def test_top_k_lora_caches_the_freeze_line_and_matches_the_plain_run(tmp_path):
    runs = {}
    for cache in (True, False):
        model = bert_model(tmp_path / f"bert-{cache}")
        before = base_weights(model)
        data = separable_task(model.encoder)
        out = tmp_path / f"run-{cache}"
        result = nlptl.fit(model, data, data, **{**LORA, "top_k": 1}, cache_features=cache, output_dir=str(out),
                           mixed_precision="no")  # float32: the check is that the two paths agree to rounding
        assert all(".layer.1." in m for m in adapters_of(model.encoder).modules), "adapters only on the top group"
        assert all(torch.equal(v, before[k]) for k, v in base_weights(model).items())
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        modes = {r["mode"] for r in log if r["type"] == "feature_cache"}
        assert modes == ({"freeze-line states"} if cache else {None})
        runs[cache] = result
    assert runs[True].metrics["accuracy"] >= 0.9
    np.testing.assert_allclose([h["train_loss"] for h in runs[True].history],
                               [h["train_loss"] for h in runs[False].history], atol=1e-5)


@pytest.mark.parametrize("top_k", [None, 1], ids=["all-layers", "top-1-cached"])
def test_resume_after_a_crash_ends_bit_identical(tmp_path, capsys, top_k):
    class Interrupted(Exception):
        pass

    def run(name, resume=False, crash_after=None):
        model = bert_model(tmp_path / f"bert-{name}-{resume}")
        data = separable_task(model.encoder)
        if crash_after is not None:
            collate, calls = model.head.collate, []

            def crashing(encoder, rows):
                calls.append(1)
                if len(calls) > crash_after and (tmp_path / name / "checkpoints" / "latest").exists():
                    raise Interrupted
                return collate(encoder, rows)

            model.head.collate = crashing
        nlptl.fit(model, data, **{**LORA, "epochs": 3, "top_k": top_k}, output_dir=str(tmp_path / name),
                  save_every_steps=5, resume=resume)
        return model

    reference = run("ref").state_dict()
    with pytest.raises(Interrupted):
        run("run", crash_after=7)
    capsys.readouterr()
    resumed = run("run", resume=True).state_dict()
    assert "resumed from step 5" in capsys.readouterr().out
    assert resumed.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(resumed[name], value), f"{name} differs after resume"


@pytest.mark.parametrize("bad, field", [
    (dict(lora_rank=0), "lora_rank"), (dict(lora_rank=2.5), "lora_rank"), (dict(lora_alpha=0), "lora_alpha"),
    (dict(lora_alpha=float("nan")), "lora_alpha"), (dict(lora_dropout=1.0), "lora_dropout"),
    (dict(lora_dropout=-0.1), "lora_dropout"), (dict(lora_target_modules=[]), "lora_target_modules"),
    (dict(lora_target_modules=[3]), "lora_target_modules"), (dict(top_k=0), "top_k"),
])
def test_bad_settings_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        nlptl.TrainConfig(strategy="lora", **bad)


def test_target_modules_from_the_cli_form_and_unknown_names(tmp_path):
    assert nlptl.TrainConfig(strategy="lora", lora_target_modules="query, key,value").lora_target_modules == [
        "query", "key", "value"]
    model = bert_model(tmp_path)
    data = separable_task(model.encoder)
    with pytest.raises(ValueError, match="lora_target_modules: 'q_lin' names no linear layer"):
        nlptl.fit(model, data, **LORA, lora_target_modules=["q_lin"])
    with pytest.raises(ValueError, match="top_k=9 is larger"):
        nlptl.fit(model, data, **LORA, top_k=9)


def test_encoders_without_linears_to_adapt_are_refused(tmp_path):
    encoder, _ = glove(tmp_path)
    model = nlptl.TransferModel(encoder, ClassificationHead(2), labels=LABELS)
    with pytest.raises(ValueError, match=r"strategy='lora' .* 'static' encoder; use strategy='feature_extraction'"):
        nlptl.fit(model, separable_task(encoder), **LORA)


def test_a_model_with_adapters_refuses_other_fine_tuning_and_other_settings(trained):
    model, _, _, _ = trained
    data = separable_task(model.encoder)
    with pytest.raises(ValueError, match=r"strategy='full': this model carries LoRA adapters.*merge"):
        nlptl.fit(model, data, strategy="full", epochs=1, progress=False)
    with pytest.raises(ValueError, match="already carries LoRA adapters"):
        nlptl.fit(model, data, **{**LORA, "lora_rank": 4})


@pytest.mark.parametrize("kind, targets", [("bert", {"query", "value"}), ("roberta", {"query", "value"}),
                                           ("distilbert", {"q_lin", "v_lin"}), ("albert", {"query", "value"}),
                                           ("xlnet", {"layer_1", "layer_2"})])
def test_default_targets_per_architecture_start_as_the_pretrained_model(tmp_path, kind, targets):
    encoder, texts = BUILDERS[kind](tmp_path)
    encoder.eval()
    batch = encoder.preprocess(texts)
    with torch.no_grad():
        expected = encoder(batch).features
    settings = add_adapters(encoder, rank=4)
    assert {m.rsplit(".", 1)[-1] for m in settings.modules} == targets
    with torch.no_grad():
        assert torch.equal(encoder(batch).features, expected), "B starts at zero: the output must not move"


def test_default_learning_rates_suit_lora(tmp_path):
    from nlptl.strategies import default_learning_rates

    model = bert_model(tmp_path)
    assert default_learning_rates("lora", model.encoder, None, None) == (5e-4, 1e-3)
    assert default_learning_rates("lora", model.encoder, 1e-3, None) == (1e-3, 1e-3)


@pytest.mark.parametrize("change, message", [
    (lambda s: {**s, "rank": -1}, "lora_rank=-1"),
    (lambda s: {**s, "modules": ["builtins.eval"]}, "'modules' must list linear layers"),
    (lambda s: {**s, "format": 2}, "exactly"),
])
def test_loading_checks_every_adapter_setting(trained, tmp_path, change, message):
    model, _, _, _ = trained
    model.save_pretrained(tmp_path / "saved")
    settings_file = tmp_path / "saved" / ADAPTER_DIRECTORY / SETTINGS_FILE
    settings_file.write_text(json.dumps(change(json.loads(settings_file.read_text()))))
    with pytest.raises(ValueError, match=message):
        nlptl.TransferModel.from_pretrained(tmp_path / "saved")


def test_cli_trains_lora_and_saves_the_adapters(tmp_path):
    build_bert(tmp_path)
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(24))
    evaluation = write_tsv(tmp_path / "eval.tsv", sentiment_rows(8))
    code, stdout, stderr = cli(["train", "--train-file", str(train), "--eval-file", str(evaluation),
                                "--text-column", "review", "--encoder", str(tmp_path / HF_DIR), "--strategy", "lora",
                                "--lora-rank", "4", "--lora-target-modules", "query,key,value", "--epochs", "2",
                                "--batch-size", "8", "--output-dir", str(tmp_path / "run")])
    assert code == 0, stderr[-2000:]
    assert "accuracy" in last_json_line(stdout)
    saved = json.loads((tmp_path / "run" / "model" / ADAPTER_DIRECTORY / SETTINGS_FILE).read_text())
    assert saved["rank"] == 4 and {m.rsplit(".", 1)[-1] for m in saved["modules"]} == {"query", "key", "value"}
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["strategy"] == "lora" and config["lora_rank"] == 4
    code, stdout, _ = cli(["predict", str(tmp_path / "run"), "--text", "the movie was good"])
    assert code == 0 and stdout.strip()
