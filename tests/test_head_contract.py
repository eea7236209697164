"""One contract for every task head (as tests/test_encoder_contract.py is for encoders).

Every task in ``nlptl.heads.TASKS`` needs an entry in ``EXAMPLES``: a way to build its head and
a tiny dataset. A head defined outside nlptl joins through ``register_task`` and trains through
``fit`` without any change to the engine, which the last tests show.
"""
from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn

import nlptl
from nlptl.heads import TASKS, ClassificationHead, Head, head_class, register_task
from tests.test_training import NEGATIVE, POSITIVE
from tests.tiny import all_builders

BUILDERS = all_builders()
CONTEXT = "the movie was good and the film was really long ."
QA_DATA = {"id": ["q1", "q2", "q3"], "question": ["what was the film ?", "what was the movie ?", "what ?"],
           "context": [CONTEXT] * 3,
           "answers": [{"text": ["really long"], "answer_start": [CONTEXT.index("really long")]},
                       {"text": ["good"], "answer_start": [CONTEXT.index("good")]},
                       {"text": ["the movie"], "answer_start": [0]}]}
TEXT_DATA = {"text": POSITIVE[:2] + NEGATIVE[:2], "label": ["positive", "positive", "negative", "negative"]}

NER_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
NER_DATA = {"tokens": [["the", "cat", "sat", "on", "the", "mat"], ["hello", "world"], ["a", "dog", "in", "the", "park"]],
            "tags": [["O", "B-PER", "O", "O", "B-LOC", "I-LOC"], ["B-PER", "I-PER"], ["O", "B-PER", "O", "O", "B-LOC"]]}


# task -> [(case id, head factory, labels, data)]
EXAMPLES: dict[str, list[tuple[str, Any, Any, dict]]] = {
    "text-classification": [
        ("mean", lambda: ClassificationHead(2), ["negative", "positive"], TEXT_DATA),
        ("attention+hidden", lambda: ClassificationHead(2, pooling="attention", hidden_size=8),
         ["negative", "positive"], TEXT_DATA),
        ("multi-label", lambda: ClassificationHead(2, multi_label=True), ["negative", "positive"],
         {"text": TEXT_DATA["text"], "label": [["positive"], ["positive", "negative"], ["negative"], []]}),
    ],
    "extractive-qa": [("windows", lambda: head_class("extractive-qa")(stride=4, max_length=16), None, QA_DATA)],
    "token-classification": [
        ("first-piece", lambda: head_class("token-classification")(labels=NER_TAGS), None, NER_DATA),
        ("bilstm-windows", lambda: head_class("token-classification")(labels=NER_TAGS, lstm_hidden=8, stride=2,
                                                                      max_length=8), None, NER_DATA),
    ],
    "prototype-classification": [
        ("prototypes", lambda: head_class("prototype-classification")(2, trainable=True), ["negative", "positive"],
         TEXT_DATA),
    ],
}
CASES = [pytest.param(task, factory, labels, data, id=f"{task}-{name}")
         for task, cases in EXAMPLES.items() for name, factory, labels, data in cases]


def test_every_registered_task_has_contract_examples():
    assert set(TASKS) <= set(EXAMPLES) | {"toy-regression"}, f"add EXAMPLES for {set(TASKS) - set(EXAMPLES)}"


def build(task, factory, labels, tmp_path):
    torch.manual_seed(0)
    encoder, _ = BUILDERS["bert"](tmp_path)
    head = factory()
    assert head.task == task and head_class(task) is type(head)
    return nlptl.TransferModel(encoder, head, labels=labels)


@pytest.mark.parametrize("task, factory, labels, data", CASES)
def test_forward_gives_per_example_losses_and_gather_keys(task, factory, labels, data, tmp_path):
    model = build(task, factory, labels, tmp_path).eval()
    head = model.head
    rows = head.prepare(model.encoder, data, train=True)
    assert [r["row_index"] for r in rows] == list(range(len(rows)))
    batch = head.collate(model.encoder, rows)
    out = model(batch)
    assert out["losses"].shape == (len(rows),) and torch.isfinite(out["losses"]).all()
    assert out["loss"].item() == pytest.approx(out["losses"].mean().item())
    for key in head.gather_keys:
        assert out[key].shape[0] == len(rows), key
    # per example means per example: a row's loss does not depend on its batch mates
    alone = [model(head.collate(model.encoder, [row]))["losses"].item() for row in rows]
    np.testing.assert_allclose(out["losses"].detach().numpy(), alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("task, factory, labels, data", CASES)
def test_config_rebuilds_the_head_and_metrics_are_floats(task, factory, labels, data, tmp_path):
    model = build(task, factory, labels, tmp_path).eval()
    config = model.head.config()
    json.dumps(config)  # JSON-serialisable, as the artefact stores it
    twin = type(model.head)(**config)
    twin.build(model.encoder)
    assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in model.head.state_dict().items()}
    metrics = nlptl.evaluate(model, data)
    assert metrics and all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("task, factory, labels, data", CASES)
def test_every_built_in_head_declares_the_metrics_it_reports(task, factory, labels, data, tmp_path):
    # fit checks early_stopping_metric against these names before training (tests/test_training.py)
    model = build(task, factory, labels, tmp_path).eval()
    declared = model.head.metric_names()
    assert declared is not None
    if not getattr(model.head, "multi_label", False):
        assert model.head.primary_metric in declared
    reported = set(nlptl.evaluate(model, data)) - {"eval_loss"}
    assert reported <= set(declared), f"reported but not declared: {reported - set(declared)}"


@pytest.mark.parametrize("task, factory, labels, data", CASES)
def test_save_and_load_give_identical_outputs(task, factory, labels, data, tmp_path):
    model = build(task, factory, labels, tmp_path).eval()
    model.save_pretrained(tmp_path / "saved")
    twin = nlptl.TransferModel.from_pretrained(tmp_path / "saved")
    rows = model.head.prepare(model.encoder, data, train=False)
    batch = model.head.collate(model.encoder, rows)
    with torch.no_grad():
        a, b = model(batch), twin(batch)
    for key in model.head.gather_keys:
        assert torch.equal(a[key], b[key]), key
    assert twin.head.task == task and twin.labels == model.labels


@pytest.mark.parametrize("task, factory, labels, data", CASES)
def test_fit_trains_every_head(task, factory, labels, data, tmp_path):
    model = build(task, factory, labels, tmp_path)
    result = nlptl.fit(model, data, data, epochs=3, batch_size=2, learning_rate=1e-3, progress=False)
    assert len(result.history) == 3 and result.history[-1]["train_loss"] < result.history[0]["train_loss"]


# ----- a task defined here, outside nlptl -----------------------------------------------------------


class ToyRegressionHead(Head):
    """Mean-pooled features -> one number, squared error: a task nlptl does not ship."""

    task: ClassVar[str] = "toy-regression"
    gather_keys: ClassVar[tuple[str, ...]] = ("prediction",)

    def _build(self, num_features: int) -> None:
        self.out = nn.Linear(num_features, 1)

    def config(self) -> dict[str, Any]:
        return {}

    def forward(self, output, batch):
        pooled = nlptl.encoders.pool(output, "mean")  # (B, D)
        prediction = self.out(pooled).squeeze(-1)  # (B,)
        result = {"prediction": prediction, "features": pooled}
        if "target" in batch:
            result["losses"] = (prediction - batch["target"]) ** 2
        return result

    def prepare(self, encoder, dataset, train, text_column="text", target_column="target"):
        from nlptl.heads.data import as_dataset

        dataset = as_dataset(dataset, "data")
        inputs = [encoder.build_inputs(encoder.truncate(t, None)) for t in encoder.tokenize(dataset[text_column])]
        rows = [{"input": x, "row_index": i} for i, x in enumerate(inputs)]
        if target_column in dataset.column_names:
            for row, y in zip(rows, dataset[target_column]):
                row["target"] = float(y)
        return rows

    def collate(self, encoder, rows):
        batch = encoder.collate([r["input"] for r in rows])
        if "target" in rows[0]:
            batch["target"] = torch.tensor([r["target"] for r in rows])
        batch["row_index"] = torch.tensor([r["row_index"] for r in rows])
        return batch

    def compute_metrics(self, rows, outputs, dataset):
        predicted = np.array([float(p) for p in outputs["prediction"]])
        return {"mse": float(np.mean((predicted - np.array([r["target"] for r in rows])) ** 2))}


def test_a_head_registered_from_a_test_file_trains_saves_and_loads(tmp_path):
    register_task("toy-regression", ToyRegressionHead)
    try:
        torch.manual_seed(0)
        encoder, _ = BUILDERS["glove"](tmp_path)
        model = nlptl.TransferModel(encoder, ToyRegressionHead())
        data = {"text": POSITIVE * 4 + NEGATIVE * 4, "target": [3.0] * 16 + [-3.0] * 16}
        result = nlptl.fit(model, data, data, strategy="full", epochs=30, batch_size=8, learning_rate=3e-2,
                           early_stopping_metric="mse", progress=False)
        assert result.metrics["mse"] < 1.0, result.metrics  # early stopping kept the lowest mse (a loss-like name)
        assert result.metrics["mse"] == min(h["mse"] for h in result.history)
        model.save_pretrained(tmp_path / "toy")
        twin = nlptl.TransferModel.from_pretrained(tmp_path / "toy")
        assert type(twin.head) is ToyRegressionHead
        assert nlptl.evaluate(twin, data)["mse"] == pytest.approx(nlptl.evaluate(model, data)["mse"])
    finally:
        TASKS.pop("toy-regression", None)


def test_register_task_refuses_a_mismatched_name():
    with pytest.raises(ValueError, match="set it to 'other-name'"):
        register_task("other-name", ToyRegressionHead)
