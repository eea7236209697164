"""Strategies, the training loop, and the saved artefact, on tiny offline encoders of each kind."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nlptl
from nlptl.heads import ClassificationHead
from nlptl.strategies import apply_freezing, parameter_groups
from tests.tiny import all_builders

BUILDERS = all_builders()
ENCODERS = ["glove", "bert", "image-resnet"]  # one static, one transformer, one image encoder

# Animals vs. everything else, in words the tiny static vectors know (tests/tiny/static.py).
POSITIVE = ["the cat sat on the mat", "a dog chased the cat", "the bird sang in the tree", "dogs and cats are pets"]
NEGATIVE = ["people eat bread and cheese", "soup for lunch", "the river flows into the sea", "children play football"]


def separable_task(encoder, n: int = 32):
    """A task any encoder can learn: sentiment words for text, bright vs dark images."""
    if encoder.modality == "text":
        texts = (POSITIVE * n)[: n // 2] + (NEGATIVE * n)[: n // 2]
        return {"text": texts, "label": ["positive"] * (n // 2) + ["negative"] * (n // 2)}
    from PIL import Image

    rng = np.random.default_rng(0)
    bright = [Image.fromarray(rng.integers(160, 255, (20, 20, 3), dtype=np.uint8)) for _ in range(n // 2)]
    dark = [Image.fromarray(rng.integers(0, 90, (20, 20, 3), dtype=np.uint8)) for _ in range(n // 2)]
    return {"image": bright + dark, "label": ["positive"] * (n // 2) + ["negative"] * (n // 2)}


def make_model(kind: str, tmp_path, **head_options) -> nlptl.TransferModel:
    torch.manual_seed(0)
    encoder, _ = BUILDERS[kind](tmp_path)
    return nlptl.TransferModel(encoder, ClassificationHead(2, **head_options), labels=["negative", "positive"])


def snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


STRATEGY_ARGS = {
    "feature_extraction": dict(strategy="feature_extraction", learning_rate=5e-3),
    "top_k": dict(strategy="top_k", top_k=1, learning_rate=5e-3),
    "full": dict(strategy="full", learning_rate=2e-3),
    "gradual_unfreezing": dict(strategy="gradual_unfreezing", learning_rate=2e-3),
}


@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("strategy", list(STRATEGY_ARGS))
def test_each_strategy_learns_a_separable_task(kind, strategy, tmp_path):
    model = make_model(kind, tmp_path, hidden_size=16)
    data = separable_task(model.encoder)
    before = nlptl.evaluate(model, data)
    result = nlptl.fit(model, data, data, epochs=10, batch_size=8, progress=False, warmup_ratio=0.0,
                       head_learning_rate=5e-2, **STRATEGY_ARGS[strategy])
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0], f"training loss did not fall: {losses}"
    assert result.metrics["accuracy"] >= 0.9 and result.metrics["accuracy"] > before["accuracy"]


@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("strategy", ["feature_extraction", "top_k"])
def test_frozen_parameters_stay_bit_identical_and_never_reach_the_optimizer(kind, strategy, tmp_path, monkeypatch):
    model = make_model(kind, tmp_path)
    groups = model.encoder.layer_groups()
    frozen_groups = groups if strategy == "feature_extraction" else groups[:-1]
    frozen = {id(p) for _, modules in frozen_groups for m in modules for p in m.parameters()}
    before = snapshot(model.encoder)
    captured = []
    real_adamw = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda groups, **kw: captured.append(groups) or real_adamw(groups, **kw))
    data = separable_task(model.encoder)
    nlptl.fit(model, data, strategy=strategy, top_k=1, epochs=2, batch_size=8, learning_rate=1e-2, progress=False)
    in_optimizer = {id(p) for g in captured[0] for p in g["params"]}
    assert in_optimizer and not (in_optimizer & frozen)
    after = model.encoder.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    frozen_names = {n for n, p in model.encoder.named_parameters() if id(p) in frozen}
    assert not (changed & frozen_names), f"frozen parameters changed: {sorted(changed & frozen_names)[:5]}"
    if strategy == "top_k":
        assert changed, "the top group should have trained"


def test_gradual_unfreezing_unfreezes_one_group_per_epoch_from_the_top(tmp_path):
    model = make_model("bert", tmp_path)
    names = model.encoder.group_names()
    data = separable_task(model.encoder)
    result = nlptl.fit(model, data, data, strategy="gradual_unfreezing", epochs=4, batch_size=8,
                       learning_rate=1e-3, progress=False, output_dir=str(tmp_path / "run"))
    seen = [h["trainable_groups"] for h in result.history]
    assert seen == [[], names[-1:], names[-2:], names[-3:]]
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert log.count('"type": "unfreeze"') == 3


def test_discriminative_learning_rates_decay_towards_the_input(tmp_path):
    model = make_model("bert", tmp_path)
    apply_freezing(model, len(model.encoder.layer_groups()))
    groups = parameter_groups(model, learning_rate=1e-3, head_learning_rate=1e-2, discriminative_decay=0.5)
    rates = {g["name"].removesuffix(".no_decay"): g["lr"] for g in groups}
    names = model.encoder.group_names()
    assert rates["head"] == 1e-2 and rates[names[-1]] == 1e-3
    assert rates[names[-2]] == pytest.approx(5e-4) and rates[names[0]] == pytest.approx(1e-3 * 0.5 ** (len(names) - 1))


@pytest.mark.parametrize("kind", ["glove", "bert"])
def test_save_and_load_give_identical_predictions(kind, tmp_path):
    model = make_model(kind, tmp_path, pooling="attention")
    data = separable_task(model.encoder)
    nlptl.fit(model, data, strategy="full", epochs=2, batch_size=8, learning_rate=1e-2, progress=False)
    texts = ["the cat", "bread and soup", "", "a dog ate cheese"]
    labels, probs = model.predict(texts, return_probabilities=True)
    model.save_pretrained(tmp_path / "saved")
    reloaded = nlptl.TransferModel.from_pretrained(tmp_path / "saved")
    labels2, probs2 = reloaded.predict(texts, return_probabilities=True)
    assert labels == labels2 and set(labels) <= {"negative", "positive"}
    np.testing.assert_array_equal(probs, probs2)
    assert reloaded.training_info["strategy"] == "full"
    files = {p.name for p in (tmp_path / "saved").rglob("*") if p.is_file()}
    assert not {f for f in files if f.endswith((".bin", ".pkl", ".pt"))}, f"pickle files in the artefact: {files}"


def test_run_directory_holds_model_metrics_and_log(tmp_path):
    model = make_model("glove", tmp_path)
    data = separable_task(model.encoder)
    nlptl.fit(model, data, data, strategy="feature_extraction", epochs=2, batch_size=8, learning_rate=1e-2,
              progress=False, output_dir=str(tmp_path / "run"))
    run = tmp_path / "run"
    assert (run / "model" / "nlptl_model.json").is_file() and (run / "metrics.json").is_file()
    lines = (run / "log.jsonl").read_text().splitlines()
    assert sum('"type": "step"' in line for line in lines) == 8  # 32 rows / 8 per batch * 2 epochs
    assert sum('"type": "eval"' in line for line in lines) == 2


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    model = make_model("glove", tmp_path)
    data = separable_task(model.encoder)
    result = nlptl.fit(model, data, data, strategy="feature_extraction", epochs=30, batch_size=8,
                       learning_rate=5e-2, early_stopping_metric="accuracy", early_stopping_patience=2,
                       progress=False)
    assert result.stopped_early and len(result.history) < 30
    assert result.metrics["accuracy"] == max(h["accuracy"] for h in result.history)


@pytest.mark.parametrize("metric, eval_data, message", [
    ("acc", True, r"early_stopping_metric='acc' \(CLI: --early-stopping-metric\) is not a metric this evaluation "
                  r"reports; choose one of \['eval_loss', 'accuracy', 'macro_f1', 'mcc'\]"),
    ("accuracy", False, r"early_stopping_metric='accuracy' .* needs eval_data"),
])
def test_an_early_stopping_metric_that_cannot_be_measured_fails_before_training(tmp_path, metric, eval_data, message):
    model = make_model("glove", tmp_path)
    data = separable_task(model.encoder)
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        nlptl.fit(model, data, data if eval_data else None, epochs=2, early_stopping_metric=metric,
                  output_dir=str(run), progress=False)
    assert not run.exists()  # refused before the run directory (checkpoints, log) was created


# ----- bad input ------------------------------------------------------------------------------------

@pytest.fixture
def tiny_model(tmp_path):
    return make_model("glove", tmp_path)


@pytest.mark.parametrize("data, options, message", [
    ({"sentence": ["a"], "label": ["positive"]}, {}, r"missing column\(s\) 'text' \(set text_column=\).*columns \['sentence', 'label'\]"),
    ({"text": ["a"], "stars": ["positive"]}, {}, r"missing column\(s\) 'label' \(set label_column=\)"),
    ({"text": ["a", "b"], "label": ["positive", "neutral"]}, {}, r"row 1: label 'neutral' is not one of"),
    ({"text": [], "label": []}, {}, "train_data is empty"),
    ({"text": ["the cat"], "label": ["positive"]}, {"strategy": "freeze_all"}, "unknown strategy 'freeze_all'.*top_k"),
    ({"text": ["the cat"], "label": ["positive"]}, {"strategy": "top_k", "top_k": 99}, "top_k=99 is larger than"),
    ({"review": ["a"], "label": ["positive"]}, {"text_column": "review", "label_column": "stars"},
     r"missing column\(s\) 'stars'"),
])
def test_bad_training_input_names_the_field(tiny_model, data, options, message):
    with pytest.raises(ValueError, match=message):
        nlptl.fit(tiny_model, data, progress=False, **options)


def test_resume_without_a_checkpoint_says_so(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no complete checkpoint"):
        nlptl.fit(tiny_model, {"text": ["the cat", "the dog"], "label": ["positive", "negative"]}, resume=True,
                  output_dir=str(tmp_path / "empty"), progress=False)


def test_qa_model_save_and_load_give_identical_answers(tmp_path):
    from nlptl.heads import ExtractiveQAHead

    torch.manual_seed(0)
    encoder, _ = BUILDERS["bert"](tmp_path)
    model = nlptl.TransferModel(encoder, ExtractiveQAHead(stride=8, max_answer_length=5))
    context = "the movie was good and the film was really long . " * 3  # longer than one window
    answer_start = context.index("really long")
    data = {"id": ["q1", "q2"], "question": ["what was the film ?", "what was the movie ?"],
            "context": [context, context],
            "answers": [{"text": ["really long"], "answer_start": [answer_start]},
                        {"text": ["good"], "answer_start": [context.index("good")]}]}
    nlptl.fit(model, data, strategy="full", epochs=2, batch_size=4, learning_rate=1e-3, progress=False)
    questions, contexts = data["question"], data["context"]
    before = model.answer(questions, contexts)
    model.save_pretrained(tmp_path / "qa")
    after = nlptl.TransferModel.from_pretrained(tmp_path / "qa").answer(questions, contexts)
    assert before == after
    for answer, context in zip(after, contexts):
        assert context[answer["start"]:answer["end"]] == answer["answer"]
