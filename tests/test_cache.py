"""The frozen-feature cache changes speed, never results."""
from __future__ import annotations

import json

import pytest
import torch

import nlptl
from nlptl.cache import FeatureCache, cached_output
from nlptl.encoders.base import pool
from nlptl.heads import ClassificationHead
from tests.test_training import BUILDERS, separable_task


def step_losses(run_dir) -> list[float]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"type": "step"' in line]


@pytest.mark.parametrize("kind, pooling", [("bert", "mean"), ("glove", "mean"), ("image-resnet", "mean"),
                                           ("bert", "max"), ("bert", "first"), ("bert", "pooled"),
                                           ("bert", "attention"), ("glove", "attention")])
def test_training_with_and_without_the_cache_gives_the_same_loss_curve(kind, pooling, tmp_path):
    runs = {}
    for cached in (True, False):
        torch.manual_seed(0)
        (tmp_path / f"enc-{cached}").mkdir()
        encoder, _ = BUILDERS[kind](tmp_path / f"enc-{cached}")
        model = nlptl.TransferModel(encoder, ClassificationHead(2, pooling=pooling, dropout=0.2, hidden_size=8),
                                    labels=["negative", "positive"])
        data = separable_task(encoder, n=24)
        result = nlptl.fit(model, data, data, strategy="feature_extraction", epochs=3, batch_size=8,
                           learning_rate=1e-2, progress=False, cache_features=cached, seed=3,
                           output_dir=str(tmp_path / f"run-{cached}"))
        runs[cached] = (step_losses(tmp_path / f"run-{cached}"), result.metrics)
    (with_cache, metrics_cached), (without, metrics_plain) = runs[True], runs[False]
    assert len(with_cache) == len(without) == 9
    torch.testing.assert_close(torch.tensor(with_cache), torch.tensor(without), rtol=1e-4, atol=1e-5)
    assert metrics_cached["accuracy"] == metrics_plain["accuracy"]


@pytest.mark.parametrize("pooling, per_row", [("mean", True), ("max", True), ("first", True), ("attention", False)])
def test_a_parameter_free_pooling_is_cached_as_one_vector_per_row(pooling, per_row, tmp_path):
    encoder, _ = BUILDERS["bert"](tmp_path)
    model = nlptl.TransferModel(encoder, ClassificationHead(2, pooling=pooling), labels=["negative", "positive"])
    rows = model.head.prepare(encoder, separable_task(encoder, n=12), train=True)
    cache = FeatureCache.build(model, rows, batch_size=5, device=torch.device("cpu"))
    tokens = sum(len(r["input"]) for r in rows)
    assert cache.features.shape == ((12 if per_row else tokens), encoder.num_features)
    batch = cache.collate(model.head, encoder, rows[:4])
    encoder.eval()  # the cache is built in eval mode: compare without dropout
    with torch.no_grad():
        plain = pool(encoder(model.head.collate(encoder, rows[:4])), "mean" if pooling == "attention" else pooling)
        from_cache = pool(cached_output(encoder, batch), "mean" if pooling == "attention" else pooling)
    torch.testing.assert_close(from_cache, plain, rtol=1e-5, atol=1e-6)


def test_cache_is_refused_when_every_encoder_group_trains(tmp_path):
    encoder, _ = BUILDERS["glove"](tmp_path)
    model = nlptl.TransferModel(encoder, ClassificationHead(2), labels=["negative", "positive"])
    with pytest.raises(ValueError, match="cache_features=True cannot be honoured: strategy 'full' trains every"):
        nlptl.fit(model, separable_task(encoder, n=8), strategy="full", cache_features=True, progress=False)


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert", "xlnet"])
def test_top_k_trains_from_the_freeze_line_with_the_same_loss_curve(kind, tmp_path):
    runs = {}
    for cached in (None, False):  # None: automatic, on wherever the encoder supports it
        torch.manual_seed(0)
        (tmp_path / f"enc-{cached}").mkdir()
        encoder, _ = BUILDERS[kind](tmp_path / f"enc-{cached}")
        model = nlptl.TransferModel(encoder, ClassificationHead(2, dropout=0.2), labels=["negative", "positive"])
        data = separable_task(encoder, n=24)
        result = nlptl.fit(model, data, data, strategy="top_k", top_k=1, epochs=3, batch_size=8, learning_rate=1e-3,
                           progress=False, cache_features=cached, seed=3, output_dir=str(tmp_path / f"run-{cached}"),
                           mixed_precision="no")  # float32: the check is that the two paths agree to rounding
        runs[cached] = (step_losses(tmp_path / f"run-{cached}"), result.metrics, model.encoder.state_dict())
    log = (tmp_path / "run-None" / "log.jsonl").read_text()
    if kind in ("bert", "roberta", "distilbert"):  # layers applied one after another: the cache is on
        assert '"mode": "freeze-line states"' in log
    else:  # otherwise the log says why it is off, and training is unchanged
        assert '"mode": null' in log and "reason" in log
    (auto, metrics_auto, weights_auto), (plain, metrics_plain, weights_plain) = runs[None], runs[False]
    torch.testing.assert_close(torch.tensor(auto), torch.tensor(plain), rtol=1e-4, atol=1e-5)
    assert metrics_auto["accuracy"] == metrics_plain["accuracy"]
    for name in weights_plain:
        torch.testing.assert_close(weights_auto[name], weights_plain[name], rtol=1e-4, atol=1e-5)


def fit_cached(model, train, evaluation, run_dir, **options):
    options.setdefault("cache_max_memory_mb", 0)  # 0: always to disk
    options.setdefault("overwrite", True)  # a rerun replaces the earlier run but keeps its feature_cache/
    options.setdefault("mixed_precision", "no")  # float32 unless a test asks for bf16: the cache key includes it
    return nlptl.fit(model, train, evaluation, strategy="feature_extraction", epochs=2, batch_size=8,
                     learning_rate=1e-2, progress=False, seed=3, output_dir=str(run_dir), **options)


def cache_records(run_dir) -> list[dict]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if '"type": "feature_cache"' in line]


def test_disk_cache_matches_memory_and_is_reused_only_while_nothing_changed(tmp_path):
    torch.manual_seed(0)
    encoder, _ = BUILDERS["bert"](tmp_path)
    train, evaluation = separable_task(encoder, n=16), separable_task(encoder, n=8)

    def fit(run_dir, **options):
        torch.manual_seed(1)
        model = nlptl.TransferModel(encoder, ClassificationHead(2), labels=["negative", "positive"])
        return fit_cached(model, train, evaluation, run_dir, **options)

    in_memory = fit(tmp_path / "memory", cache_max_memory_mb=1e9)
    assert [r["on_disk"] for r in cache_records(tmp_path / "memory")] == [None, None]
    run = tmp_path / "run"
    first = fit(run)
    assert [r["reused"] for r in cache_records(run)] == [False, False]
    assert all(r["on_disk"] for r in cache_records(run))
    assert first.history == in_memory.history  # memory-mapped features train exactly like in-memory ones
    assert fit(run).history == first.history
    assert [r["reused"] for r in cache_records(run)] == [True, True]

    with torch.no_grad():  # one changed weight: a new cache, never the stale one
        encoder.model.embeddings.word_embeddings.weight[5, 0] += 1.0
    fit(run)
    assert [r["reused"] for r in cache_records(run)] == [False, False]

    encoder.max_length = 12  # a changed preprocessing setting: a new cache too
    fit(run)
    assert [r["reused"] for r in cache_records(run)] == [False, False]
    assert len(list((run / "feature_cache").iterdir())) == 6  # 3 versions x (train, eval)

    fit(run, mixed_precision="bf16")  # features encoded under bf16 autocast are another cache, not the float32 one
    assert [r["reused"] for r in cache_records(run)] == [False, False]
    assert len(list((run / "feature_cache").iterdir())) == 8

    torch.manual_seed(1)  # a head that pools differently stores other vectors: a new cache as well
    fit_cached(nlptl.TransferModel(encoder, ClassificationHead(2, pooling="max"), labels=["negative", "positive"]),
               train, evaluation, run)
    assert [r["reused"] for r in cache_records(run)] == [False, False]


def test_freeze_line_cache_pads_its_batches_like_the_token_ids_under_pad_to_multiple_of(tmp_path):
    """With pad_to_multiple_of the cached states and the ids are padded alike, and training is unchanged."""
    runs = {}
    for cached in (None, False):
        torch.manual_seed(0)
        (tmp_path / f"enc-{cached}").mkdir()
        encoder, _ = BUILDERS["bert"](tmp_path / f"enc-{cached}")
        encoder.pad_to_multiple_of = 8
        model = nlptl.TransferModel(encoder, ClassificationHead(2, dropout=0.2), labels=["negative", "positive"])
        data = separable_task(encoder, n=24)
        if cached is None:
            rows = model.head.prepare(encoder, data, train=True)
            cache = FeatureCache.build(model, rows, batch_size=8, device=torch.device("cpu"), boundary=1)
            batch = cache.collate(model.head, encoder, rows[:5])
            assert batch["input_ids"].shape[1] % 8 == 0
            assert batch["cached_boundary"].shape[:2] == batch["input_ids"].shape
        nlptl.fit(model, data, strategy="top_k", top_k=1, epochs=2, batch_size=8, learning_rate=1e-3, progress=False,
                  cache_features=cached, seed=3, output_dir=str(tmp_path / f"run-{cached}"), mixed_precision="no")
        runs[cached] = step_losses(tmp_path / f"run-{cached}")
    assert '"mode": "freeze-line states"' in (tmp_path / "run-None" / "log.jsonl").read_text()
    torch.testing.assert_close(torch.tensor(runs[None]), torch.tensor(runs[False]), rtol=1e-4, atol=1e-5)
