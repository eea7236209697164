"""The engine's contract: TrainConfig, objectives, named sources, several heads, weights, seeds, defaults."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nlptl
from nlptl.heads import ClassificationHead
from nlptl.objectives import L2SP, Objective, Supervised
from tests.test_training import NEGATIVE, POSITIVE, make_model, separable_task, snapshot
from tests.tiny import all_builders

BUILDERS = all_builders()
ROOT = Path(__file__).resolve().parents[1]
FOOD = ["people eat bread and cheese", "soup for lunch", "bread and soup", "cheese with bread for lunch"]
WATER = ["the river flows into the sea", "the old mill by the river", "the sea and the river", "river past the mill"]


def food_task(n: int = 32) -> dict:
    return {"text": (FOOD * n)[: n // 2] + (WATER * n)[: n // 2], "label": ["food"] * (n // 2) + ["water"] * (n // 2)}


# ----- TrainConfig ------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, r"epochs=0: expected an integer >= 1"),
    ("learning_rate", -1e-3, r"learning_rate=-0.001: expected a finite number > 0"),
    ("learning_rate", float("nan"), r"learning_rate=nan"),
    ("learning_rate", float("inf"), r"learning_rate=inf"),
    ("max_grad_norm", 0, r"max_grad_norm=0"),
    ("gradient_accumulation_steps", 0, r"gradient_accumulation_steps=0"),
    ("warmup_ratio", 1.5, r"warmup_ratio=1.5: expected a number in \[0, 1\]"),
    ("save_every_steps", 0, r"save_every_steps=0"),
    ("strategy", "freeze_all", r"unknown strategy 'freeze_all'; choose one of .*top_k"),
    ("weight_decay", float("nan"), r"weight_decay=nan"),
    ("batch_size", 0, r"batch_size=0"),
    ("epochs", 2.5, r"epochs=2.5"),
    ("epochs", True, r"epochs=True"),
    ("mixed_precision", "fp8", r"unknown mixed_precision 'fp8'"),
])
def test_train_config_rejects_bad_values_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        nlptl.TrainConfig(**{field: value})


def test_unknown_keyword_is_named_with_a_suggestion(tmp_path):
    model = make_model("glove", tmp_path)
    with pytest.raises(TypeError, match=r"unknown training option\(s\) 'lr' \(did you mean 'learning_rate'\?\)"):
        nlptl.fit(model, separable_task(model.encoder), lr=1e-3)


def test_top_k_beyond_the_encoders_groups_is_refused_before_training(tmp_path):
    model = make_model("bert", tmp_path)
    with pytest.raises(ValueError, match="top_k=99 is larger than the encoder's"):
        nlptl.fit(model, separable_task(model.encoder), config=nlptl.TrainConfig(strategy="top_k", top_k=99))


def test_config_object_and_keywords_train_identically(tmp_path):
    runs = []
    for use_config in (True, False):
        model = make_model("glove", tmp_path)
        data = separable_task(model.encoder)
        options = dict(strategy="feature_extraction", epochs=2, batch_size=8, seed=3, progress=False)
        result = (nlptl.fit(model, data, data, config=nlptl.TrainConfig(**options)) if use_config
                  else nlptl.fit(model, data, data, **options))
        runs.append([h["train_loss"] for h in result.history])
    assert runs[0] == runs[1]


# ----- objectives ------------------------------------------------------------------------------


class Recorder(Objective):
    """Zero loss with a graph: records what it is called with, and must move no weight."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def loss(self, model, batches, step):
        self.calls.append((sorted(batches), step.global_step, step.total_steps))
        out = model(batches["train"])
        return out["logits"].sum() * 0.0, {"seen": float(len(batches))}


def test_custom_objective_gets_the_named_batches_and_a_zero_loss_moves_no_weight(tmp_path):
    model = make_model("bert", tmp_path)
    data = separable_task(model.encoder, n=16)
    model.initialize_fresh_heads()
    objective = Recorder()
    nlptl.fit(model, data, objective=objective, epochs=2, batch_size=8, weight_decay=0.0, progress=False,
              output_dir=str(tmp_path / "run"), seed=0)
    before = snapshot(model)
    # the model saved at the end holds the weights fit started from (fresh heads initialise under the seed)
    reloaded = nlptl.TransferModel.from_pretrained(tmp_path / "run" / "model")
    assert [c[0] for c in objective.calls] == [["train"]] * 4
    assert [c[1] for c in objective.calls] == [0, 1, 2, 3] and objective.calls[0][2] == 4
    for name, value in reloaded.state_dict().items():
        assert torch.equal(value, before[name]), f"{name} moved under a zero loss"
    steps = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
             if '"type": "step"' in line]
    assert all(s["seen"] == 1.0 for s in steps)


def test_objective_parameters_train_in_their_own_group(tmp_path):
    class WithParameter(Supervised):
        def setup(self, model):
            self.scale = torch.nn.Parameter(torch.ones(()))

        def loss(self, model, batches, step):
            value, logged = super().loss(model, batches, step)
            return value * self.scale, logged

    model = make_model("glove", tmp_path)
    objective = WithParameter()
    nlptl.fit(model, separable_task(model.encoder), objective=objective, strategy="feature_extraction", epochs=2,
              batch_size=8, progress=False)
    assert objective.scale.item() != 1.0


def test_unlabelled_source_needs_an_objective_that_uses_it(tmp_path):
    model = make_model("glove", tmp_path)
    labelled = separable_task(model.encoder)
    with pytest.raises(ValueError, match=r"missing column\(s\) 'label'"):
        nlptl.fit(model, {"source": labelled, "target": {"text": NEGATIVE}}, progress=False)


def test_sampling_all_gives_every_source_to_every_step(tmp_path):
    class Both(Recorder):
        sampling = "all"
        uses_unlabelled = True

        def loss(self, model, batches, step):
            self.calls.append((sorted(batches), step.global_step, step.total_steps))
            assert "labels" in batches["source"] and "labels" not in batches["target"]
            return model(batches["source"])["losses"].mean()

    model = make_model("glove", tmp_path)
    objective = Both()
    nlptl.fit(model, {"source": separable_task(model.encoder, 16), "target": {"text": FOOD * 10}},
              objective=objective, strategy="feature_extraction", epochs=1, batch_size=4, progress=False)
    assert [c[0] for c in objective.calls] == [["source", "target"]] * 4  # epoch = the first source's 16 rows


# ----- per-example weights ---------------------------------------------------------------------


def test_zero_weights_on_flipped_labels_still_train_to_high_accuracy(tmp_path):
    flipped = np.random.default_rng(0).permutation(40)[:16]  # the same 40% of rows in both runs
    results = {}
    for weighted in (True, False):
        model = make_model("glove", tmp_path)
        clean = separable_task(model.encoder, n=40)
        labels = list(clean["label"])
        for i in flipped:
            labels[i] = "negative" if labels[i] == "positive" else "positive"
        noisy = {"text": clean["text"], "label": labels,
                 "weight": [0.0 if i in set(flipped.tolist()) else 1.0 for i in range(40)]}
        result = nlptl.fit(model, noisy, clean, strategy="full", epochs=15, batch_size=8, learning_rate=1e-2,
                           weight_column="weight" if weighted else None, progress=False)
        results[weighted] = result.metrics["accuracy"]
    assert results[True] >= 0.9, results
    assert results[False] < 0.9, results


@pytest.mark.parametrize("weights, message", [
    ([1.0, -1.0] * 8, "weights must be finite and >= 0"),
    ([float("nan")] * 16, "weights must be finite"),
    ([0.0] * 16, "is all zeros"),
])
def test_bad_weights_are_named(tmp_path, weights, message):
    model = make_model("glove", tmp_path)
    data = {**separable_task(model.encoder, 16), "w": weights}
    with pytest.raises(ValueError, match=f"weight_column='w'.*{message}"):
        nlptl.fit(model, data, weight_column="w", progress=False)


# ----- several heads (hard parameter sharing) --------------------------------------------------


@pytest.mark.parametrize("sampling", ["proportional", "temperature", "round_robin"])
def test_two_tasks_on_one_encoder_each_learn_and_reload_identically(tmp_path, sampling):
    torch.manual_seed(0)
    encoder, _ = BUILDERS["bert"](tmp_path)
    model = nlptl.TransferModel(encoder, heads={"animals": ClassificationHead(2), "topic": ClassificationHead(2)},
                                labels={"animals": ["negative", "positive"], "topic": ["food", "water"]})
    animals, topic = separable_task(encoder), food_task()
    result = nlptl.fit(model, {"animals": animals, "topic": topic}, {"animals": animals, "topic": topic},
                       task_sampling=sampling, epochs=6, batch_size=8, learning_rate=2e-3, progress=False)
    assert result.metrics["animals/accuracy"] >= 0.85 and result.metrics["topic/accuracy"] >= 0.85, result.metrics
    texts = ["the cat sat", "soup and bread", "the river"]
    model.save_pretrained(tmp_path / "mt")
    reloaded = nlptl.TransferModel.from_pretrained(tmp_path / "mt")
    for head in ("animals", "topic"):
        a, pa = model.predict(texts, head=head, return_probabilities=True)
        b, pb = reloaded.predict(texts, head=head, return_probabilities=True)
        assert a == b
        np.testing.assert_array_equal(pa, pb)
    assert reloaded.predict(["soup"], head="topic")[0] in ("food", "water")
    with pytest.raises(KeyError, match="no head 'sst2'"):
        reloaded.predict(texts, head="sst2")


def test_source_without_a_matching_head_is_named(tmp_path):
    torch.manual_seed(0)
    encoder, _ = BUILDERS["glove"](tmp_path)
    model = nlptl.TransferModel(encoder, heads={"a": ClassificationHead(2), "b": ClassificationHead(2)})
    with pytest.raises(ValueError, match="data source 'c' matches none of the heads"):
        nlptl.fit(model, {"a": separable_task(encoder), "c": food_task()}, progress=False)


# ----- L2-SP -----------------------------------------------------------------------------------


def test_l2sp_with_a_large_alpha_stays_much_closer_to_the_pretrained_weights(tmp_path):
    distances = {}
    for alpha in (0.0, 10.0):
        model = make_model("bert", tmp_path)
        start = snapshot(model.encoder)
        nlptl.fit(model, separable_task(model.encoder), objective=L2SP(alpha=alpha, beta=0.0), epochs=4,
                  batch_size=8, learning_rate=1e-2, progress=False)
        distances[alpha] = math.sqrt(sum(((p.detach() - start[n]) ** 2).sum().item()
                                         for n, p in model.encoder.named_parameters()))
    assert distances[10.0] < 0.5 * distances[0.0], distances


def test_l2sp_turns_adamw_decay_off(tmp_path, monkeypatch):
    captured = []
    real_adamw = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda groups, **kw: captured.append(groups) or real_adamw(groups, **kw))
    model = make_model("glove", tmp_path)
    nlptl.fit(model, separable_task(model.encoder), objective=L2SP(), epochs=1, progress=False)
    assert all(g["weight_decay"] == 0.0 for g in captured[0])


def test_l2sp_rejects_a_negative_alpha():
    with pytest.raises(ValueError, match="L2SP alpha=-1"):
        L2SP(alpha=-1)


# ----- seeds, defaults, early stopping, precision ------------------------------------------------


def test_seed_fixes_the_run_whether_the_head_was_built_before_fit_or_inside(tmp_path):
    histories = []
    for build_early in (True, False):
        encoder, _ = BUILDERS["bert"](tmp_path)
        torch.manual_seed(1234 if build_early else 99)  # whatever the RNG did before fit must not matter
        model = nlptl.TransferModel(encoder, ClassificationHead(2), labels=["negative", "positive"])
        if build_early:
            torch.randn(100)  # more RNG use between building and fit
        data = separable_task(encoder)
        result = nlptl.fit(model, data, data, epochs=2, batch_size=8, seed=5, progress=False)
        histories.append((result.history, snapshot(model)))
    assert histories[0][0] == histories[1][0]
    for name, value in histories[0][1].items():
        assert torch.equal(value, histories[1][1][name]), name


SEEDED_SCRIPT = """
import json, sys
import nlptl
from nlptl.heads import ClassificationHead
from tests.test_training import separable_task
encoder = nlptl.load_encoder(sys.argv[1])  # pretrained weights from disk; nothing seeded by hand
model = nlptl.TransferModel(encoder, ClassificationHead(2), labels=["negative", "positive"])
data = separable_task(encoder)
result = nlptl.fit(model, data, data, epochs=2, batch_size=8, seed=0, progress=False)
print(json.dumps(result.history))
"""


def test_two_processes_with_the_same_seed_and_no_manual_seeding_agree(tmp_path):
    encoder, _ = BUILDERS["bert"](tmp_path)
    encoder.save_pretrained(tmp_path / "pretrained")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    outputs = []
    for run in range(2):
        done = subprocess.run([sys.executable, "-c", SEEDED_SCRIPT, str(tmp_path / "pretrained")], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout.strip().splitlines()[-1])
    assert outputs[0] == outputs[1]


def test_strategy_aware_default_learning_rates(tmp_path):
    from nlptl.strategies import default_learning_rates

    bert = make_model("bert", tmp_path).encoder
    glove = make_model("glove", tmp_path).encoder
    assert default_learning_rates("feature_extraction", bert, None, None) == (1e-2, 1e-2)  # a head alone
    assert default_learning_rates("feature_extraction", glove, None, None) == (1e-2, 1e-2)
    assert default_learning_rates("full", bert, None, None) == (5e-5, 1e-3)
    assert default_learning_rates("top_k", bert, None, None) == (5e-5, 1e-3)
    assert default_learning_rates("full", glove, None, None) == (1e-3, 1e-2)  # vectors 1e-3, the head over them 1e-2
    assert default_learning_rates("full", bert, 2e-5, None) == (2e-5, 2e-5)  # a given rate is kept
    assert default_learning_rates("feature_extraction", bert, 3e-3, None) == (3e-3, 3e-3)
    assert default_learning_rates("full", glove, None, 5e-3) == (1e-3, 5e-3)
    assert default_learning_rates("full", bert, None, None, encoder_rate=1e-4) == (1e-4, 1e-3)  # the head's rate
    assert default_learning_rates("full", bert, 2e-5, None, encoder_rate=1e-4) == (2e-5, 2e-5)
    assert default_learning_rates("full", glove, None, None, encoder_rate=1e-4) == (1e-3, 1e-2)  # vectors keep theirs


def test_feature_extraction_defaults_fit_a_small_set_in_the_default_three_epochs(tmp_path):
    """The CLI's defaults (3 epochs, batch 32) on 256 rows are 24 steps: the head-only default rate must fit
    them, where the old 1e-3 underfitted (GloVe on 4,000 SST-2 rows: 0.568 at 1e-3, 0.687 at 1e-2) and the
    fine-tuning rate 2e-5 stayed at chance."""
    accuracies, losses = {}, {}
    for rate in (None, 1e-3, 2e-5):  # the strategy's default, the old head default, the old fine-tuning default
        model = make_model("glove", tmp_path)
        data = separable_task(model.encoder, 256)
        result = nlptl.fit(model, data, data, strategy="feature_extraction", epochs=3, batch_size=32,
                           learning_rate=rate, progress=False)
        accuracies[rate], losses[rate] = result.metrics["accuracy"], result.history[-1]["train_loss"]
        if rate is None:
            assert result.extra["config"]["learning_rate"] == 1e-2
    assert accuracies[None] == 1.0 and accuracies[None] >= accuracies[1e-3] + 0.1, accuracies
    assert losses[None] < losses[1e-3] - 0.1 and accuracies[2e-5] <= 0.6, (losses, accuracies)


def test_early_stopping_on_eval_loss_keeps_its_minimum(tmp_path):
    model = make_model("glove", tmp_path)
    data = separable_task(model.encoder)
    # a rate so high the loss falls, then rises: the minimum is not the last epoch
    result = nlptl.fit(model, data, data, strategy="full", epochs=12, batch_size=8, learning_rate=3.0,
                       schedule="constant", warmup_ratio=0.0, early_stopping_metric="eval_loss",
                       early_stopping_patience=12, progress=False)
    losses = [h["eval_loss"] for h in result.history]
    assert result.metrics["eval_loss"] == min(losses)
    assert np.argmin(losses) != len(losses) - 1 or len(set(losses)) == 1, losses


def test_fp16_on_cpu_is_an_error_and_bf16_is_applied(tmp_path):
    model = make_model("glove", tmp_path)
    data = separable_task(model.encoder)
    with pytest.raises(ValueError, match="fp16.*needs a GPU"):
        nlptl.fit(model, data, mixed_precision="fp16", progress=False)
    result = nlptl.fit(model, data, mixed_precision="bf16", epochs=1, progress=False)  # a second precision: fine
    assert result.extra["config"]["mixed_precision"] == "bf16"
    assert model.training_info["mixed_precision"] == "bf16"


@pytest.mark.parametrize("native", [True, False])
def test_default_precision_is_bf16_only_where_the_cpu_has_it_and_records_what_it_applied(tmp_path, monkeypatch,
                                                                                         native):
    import nlptl.devices

    monkeypatch.setattr(nlptl.devices, "cpu_has_native_bf16", lambda: native)
    applied = "bf16" if native else "no"
    assert nlptl.devices.resolve_precision("auto", "cpu") == applied
    assert nlptl.devices.resolve_precision("no", "cpu") == "no"  # an explicit choice is kept as given
    model = make_model("glove", tmp_path)
    result = nlptl.fit(model, separable_task(model.encoder), epochs=1, progress=False, cpu=True)
    assert result.extra["config"]["mixed_precision"] == applied  # the run says what it ran, not "auto"
    assert model.training_info["mixed_precision"] == applied


# ----- several sources resume exactly ------------------------------------------------------------


def test_two_sources_resume_from_a_checkpoint_bit_identically(tmp_path):
    def train(out, resume=False, epochs=2):
        model = make_model("bert", tmp_path)
        data = {"animals": separable_task(model.encoder, 24), "extra": separable_task(model.encoder, 16)}
        nlptl.fit(model, data, task_sampling="temperature", epochs=epochs, batch_size=4, output_dir=str(out),
                  save_every_steps=3, resume=resume, seed=0, progress=False)
        return snapshot(model)

    reference = train(tmp_path / "ref")
    # the same run stopped after its first epoch (10 steps: the checkpoint at step 9 is mid-epoch-free)
    train(tmp_path / "run", epochs=2)
    state = tmp_path / "run" / "checkpoints"
    checkpoints = sorted(state.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    (state / "latest").write_text(checkpoints[0].name)  # go back to an earlier, mid-run checkpoint
    import shutil

    shutil.rmtree(tmp_path / "run" / "model")
    resumed = train(tmp_path / "run", resume=True)
    for name, value in reference.items():
        assert torch.equal(value, resumed[name]), name
