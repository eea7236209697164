"""Few-, one- and zero-shot transfer on tiny offline models: shot draws, pairs, prototypes, templates."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nlptl
from nlptl.fewshot import (ContrastivePairs, PrototypeHead, add_label_sentences, label_embeddings, label_sentences,
                           prototypes, sample_pairs, sample_shots, select_pseudo_labels, self_train, zero_shot)
from nlptl.heads import ClassificationHead
from tests.tiny import all_builders

BUILDERS = all_builders()
GOOD = ["the film was good", "a really good movie", "good good film", "the movie is good", "a good tiny film"]
BAD = ["the film was bad", "a really bad movie", "bad bad film", "the movie is bad", "not a good film"]


@pytest.fixture
def encoder(tmp_path):
    torch.manual_seed(0)
    return BUILDERS["bert"](tmp_path)[0].eval()


def table(n_per_class: int = 5) -> dict:
    return {"text": (GOOD * 4)[:n_per_class] + (BAD * 4)[:n_per_class],
            "label": ["positive"] * n_per_class + ["negative"] * n_per_class}


# ----- shots --------------------------------------------------------------------------------------

def test_sample_shots_draws_k_per_class_the_same_for_the_same_seed():
    data = {"text": [f"t{i}" for i in range(60)], "label": [i % 3 if i < 30 else i % 2 for i in range(60)]}
    first, again, other = (sample_shots(data, 4, seed) for seed in (7, 7, 8))
    assert sorted(np.bincount(first["label"]).tolist()) == [4, 4, 4]
    assert first["text"] == again["text"]
    assert first["text"] != other["text"]
    with pytest.raises(ValueError, match="class 2 has 10 row"):
        sample_shots(data, 11, 0)


# ----- pairs --------------------------------------------------------------------------------------

def test_pairs_are_seeded_balanced_and_bounded():
    labels = torch.tensor([0] * 30 + [1] * 20 + [2] * 14)  # B = 64, unbalanced classes
    draw = lambda seed, cap=None: sample_pairs(labels, 10, cap, torch.Generator().manual_seed(seed))
    left, right, target = draw(0)
    assert all(torch.equal(a, b) for a, b in zip((left, right, target), draw(0)))
    assert not torch.equal(right, draw(1)[1])
    assert len(left) <= 64 * 10 and (left != right).all()
    assert torch.equal(target == 1, labels[left] == labels[right])  # targets say whether the classes agree
    for anchor in range(64):  # every anchor: as many positives as negatives, at most 10 in all
        mine = target[left == anchor]
        assert (mine == 1).sum() == (mine == 0).sum() and len(mine) <= 10
    capped = draw(0, cap=100)[2]
    assert len(capped) == 100 and (capped == 1).sum() == 50


def test_pairs_skip_a_lone_anchor_and_a_one_class_batch():
    left, _, _ = sample_pairs(torch.tensor([0, 0, 0, 1]), 4, None, torch.Generator().manual_seed(0))
    assert 3 not in left.tolist()  # class 1 has no partner, so no pair is anchored at it
    assert len(sample_pairs(torch.tensor([1, 1, 1]), 4, None, torch.Generator().manual_seed(0))[0]) == 0


def test_contrastive_pairs_trains_through_fit_and_its_loss_falls(encoder, tmp_path):
    model = nlptl.TransferModel(encoder, ClassificationHead(2), labels=["negative", "positive"])
    data = table(5)
    result = nlptl.fit(model, data, data, objective=ContrastivePairs(pairs_per_example=6), epochs=12,
                       batch_size=10, learning_rate=1e-3, head_learning_rate=1e-2, warmup_ratio=0.0,
                       progress=False, output_dir=str(tmp_path / "run"))
    steps = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    pair_losses = [s["train/pair_loss"] for s in steps if s["type"] == "step"]
    assert np.mean(pair_losses[-3:]) < 0.8 * np.mean(pair_losses[:3])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert all(s["train/pairs"] == 60 for s in steps if s["type"] == "step")  # 10 anchors x 6, every step
    assert result.extra["objective"]["pairs_per_example"] == 6
    assert result.metrics["accuracy"] >= 0.9


def test_the_head_is_refitted_by_logistic_regression_on_the_tuned_features(encoder):
    from sklearn.linear_model import LogisticRegression

    from nlptl.fewshot.contrastive import pooled_features

    model = nlptl.TransferModel(encoder, ClassificationHead(2), labels=["negative", "positive"])
    data = table(5)
    result = nlptl.fit(model, data, data, objective=ContrastivePairs(pairs_per_example=4, refit_c=0.5), epochs=2,
                       batch_size=10, learning_rate=1e-3, progress=False)
    assert set(result.extra["metrics_before_finish"]) == set(result.metrics)  # scored again after the refit
    rows = model.head.prepare(encoder, data, train=False)
    features, labels = pooled_features(model, model.default_head, rows)
    expected = LogisticRegression(C=0.5, max_iter=1000).fit(features, labels).decision_function(features)
    model.eval()
    with torch.no_grad():
        logits = model.head.classifier(torch.from_numpy(features)).numpy()  # (N, 2)
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], expected, rtol=1e-4, atol=1e-4)
    assert result.extra["objective"]["refit_c"] == 0.5


def test_refit_head_true_refuses_a_head_it_cannot_refit(encoder):
    model = nlptl.TransferModel(encoder, ClassificationHead(2, hidden_size=8), labels=["negative", "positive"])
    with pytest.raises(ValueError, match="refit_head=True needs a single-label ClassificationHead"):
        nlptl.fit(model, table(5), objective=ContrastivePairs(pairs_per_example=4, refit_head=True), epochs=1,
                  batch_size=10, progress=False)
    with pytest.raises(ValueError, match="refit_c"):
        ContrastivePairs(refit_c=0)


def test_contrastive_pairs_refuses_too_few_pairs_per_example():
    with pytest.raises(ValueError, match="pairs_per_example=1"):
        ContrastivePairs(pairs_per_example=1)


# ----- prototypes ---------------------------------------------------------------------------------

def test_prototypes_are_the_class_means_of_normalised_support_features(encoder):
    data = table(3)
    head = prototypes(encoder, data["text"], data["label"])
    assert head.labels == ["negative", "positive"]
    features = encoder.encode(data["text"])
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    expected = np.stack([unit[3:].mean(0), unit[:3].mean(0)])  # sorted names: negative, positive
    np.testing.assert_allclose(head.prototypes.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_support_text_is_closest_to_its_own_class_prototype_in_one_shot(encoder):
    head = prototypes(encoder, ["the film was good", "the river flows"], ["good", "other"])
    model = nlptl.TransferModel(encoder, head, labels=head.labels)
    assert head.predict(model, ["the film was good", "the river flows"]) == ["good", "other"]


def test_prototype_head_saves_and_reloads_with_identical_predictions(encoder, tmp_path):
    data = table(3)
    head = prototypes(encoder, data["text"], data["label"], temperature=0.1)
    model = nlptl.TransferModel(encoder, head, labels=head.labels)
    model.save_pretrained(tmp_path / "model")
    loaded = nlptl.TransferModel.from_pretrained(tmp_path / "model")
    assert type(loaded.head) is PrototypeHead and loaded.head.temperature == 0.1
    texts = GOOD + BAD
    before = head.predict(model.eval(), texts, return_probabilities=True)
    after = loaded.head.predict(loaded, texts, return_probabilities=True)
    assert before[0] == after[0]
    np.testing.assert_allclose(before[1], after[1], atol=1e-6)
    assert torch.equal(loaded.head.prototypes, head.prototypes)


def test_a_prototype_head_evaluates_like_any_head(encoder):
    data = table(3)
    head = prototypes(encoder, data["text"], data["label"])
    model = nlptl.TransferModel(encoder, head, labels=head.labels)
    metrics = nlptl.evaluate(model, data)
    assert metrics["accuracy"] == 1.0  # each support text is nearest its own class mean here


def test_trainable_prototypes_train_with_contrastive_pairs_and_reload(encoder, tmp_path):
    data = table(5)
    head = prototypes(encoder, data["text"], data["label"], trainable=True)
    start = head.prototypes.detach().clone()
    model = nlptl.TransferModel(encoder, head, labels=head.labels)
    nlptl.fit(model, data, objective=ContrastivePairs(pairs_per_example=4), epochs=3, batch_size=10,
              learning_rate=1e-3, head_learning_rate=1e-2, progress=False)
    assert not torch.equal(head.prototypes.detach(), start)  # fit tuned them, starting from the class means
    model.save_pretrained(tmp_path / "model")
    loaded = nlptl.TransferModel.from_pretrained(tmp_path / "model")
    assert loaded.head.trainable and torch.equal(loaded.head.prototypes.detach(), head.prototypes.detach())


# ----- zero-shot ----------------------------------------------------------------------------------

def test_zero_shot_picks_the_label_whose_template_is_nearest(encoder):
    labels, template = ["good", "bad", "tiny"], "the film was {}."
    texts = ["the film was bad.", "the film was good.", "the film was tiny.", "hello world", "a long sentence"]
    predicted, scores = zero_shot(encoder, texts, labels, template=template, return_scores=True)
    assert predicted[:3] == ["bad", "good", "tiny"]  # a template sentence is nearest its own label
    keys = encoder.encode([template.format(x) for x in labels])
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    queries = encoder.encode(texts)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    np.testing.assert_allclose(scores, queries @ keys.T, atol=1e-5)
    assert predicted == [labels[j] for j in (queries @ keys.T).argmax(1)]


def test_zero_shot_refuses_a_template_without_a_slot(encoder):
    with pytest.raises(ValueError, match="no '\\{\\}'"):
        zero_shot(encoder, ["a film"], ["good", "bad"], template="a review")


class TableEncoder:
    """Looks each text's feature up in a dict: zero_shot only calls encode."""

    def __init__(self, table: dict[str, list[float]]):
        self.table = table

    def encode(self, texts, batch_size=None, pooling="mean"):
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def test_centring_stops_a_label_near_the_whole_cloud_from_taking_every_prediction():
    # every text shares a large component (the first axis) that label "a"'s template also has;
    # what separates the texts is the second axis, which the two labels split
    shared, spread = 10.0, 1.0
    vectors = {"is a.": [1.0, 1.0], "is b.": [0.0, -1.0]}
    texts = [f"t{i}" for i in range(8)]
    gold = ["a"] * 4 + ["b"] * 4
    for i, text in enumerate(texts):
        vectors[text] = [shared, spread * (1 if gold[i] == "a" else -1) * (1 + 0.1 * i)]
    encoder = TableEncoder(vectors)
    assert zero_shot(encoder, texts, ["a", "b"], template="is {}.") == ["a"] * 8  # the cloud is nearer "a"
    predicted, scores = zero_shot(encoder, texts, ["a", "b"], template="is {}.", center_on=texts, return_scores=True)
    assert predicted == gold
    # the same as subtracting each label's mean cosine over the unlabelled texts
    _, plain = zero_shot(encoder, texts, ["a", "b"], template="is {}.", return_scores=True)
    assert (scores.argmax(1) == (plain - plain.mean(0)).argmax(1)).all()


def test_center_on_takes_texts_or_their_features_and_names_a_wrong_shape(encoder):
    labels, texts, unlabelled = ["good", "bad"], GOOD + BAD, BAD + GOOD[:2]
    by_text = zero_shot(encoder, texts, labels, template="the film was {}.", center_on=unlabelled, return_scores=True)
    by_features = zero_shot(encoder, texts, labels, template="the film was {}.",
                            center_on=encoder.encode(unlabelled), return_scores=True)
    assert by_text[0] == by_features[0]
    np.testing.assert_allclose(by_text[1], by_features[1], atol=1e-5)
    with pytest.raises(ValueError, match="center_on has shape"):
        zero_shot(encoder, texts, labels, center_on=np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="center_on"):
        zero_shot(encoder, texts, labels, center_on=[])


def test_self_train_fits_a_head_on_balanced_pseudo_labels_and_reports_their_accuracy(encoder):
    texts = (GOOD + BAD) * 2
    truth = (["good"] * 5 + ["bad"] * 5) * 2
    result = self_train(encoder, texts, ["good", "bad"], template="the film was {}.", top_fraction=0.5,
                        true_labels=truth, epochs=2)
    assert result.per_class["good"] == result.per_class["bad"] == result.pseudo_rows // 2 > 0
    assert 0.0 <= result.pseudo_accuracy <= 1.0
    assert set(result.model.predict(texts[:4])) <= {"good", "bad"}


def test_label_sentences_fill_the_template_with_each_description_and_name_bad_ones():
    rows = label_sentences(["negative", "positive"], "A {} film.", {"positive": ["good", "great"]})
    assert rows == {"text": ["A negative film.", "A good film.", "A great film."],
                    "label": ["negative", "positive", "positive"]}
    assert label_sentences(["a", "b"], "{x} is {}")["text"] == ["{x} is a", "{x} is b"]  # other braces kept
    with pytest.raises(ValueError, match=r"descriptions\['positive'\] is empty"):
        label_sentences(["negative", "positive"], "A {} film.", {"positive": []})
    with pytest.raises(ValueError, match="not in labels"):
        label_sentences(["negative", "positive"], "A {} film.", {"neutral": "so-so"})


def test_add_label_sentences_appends_labelled_rows_and_refuses_data_it_cannot_extend():
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    shots = datasets.Dataset.from_dict({"text": ["dull", "fun"], "label": [0, 1]}, features=features)
    grown = add_label_sentences(shots, "A {} film.", {"positive": ["good", "great"]})
    assert list(zip(grown["text"], grown["label"])) == [("dull", 0), ("fun", 1), ("A negative film.", 0),
                                                        ("A good film.", 1), ("A great film.", 1)]
    assert grown.features == shots.features and len(shots) == 2  # a new dataset; the shots are unchanged
    with pytest.raises(ValueError, match="columns"):
        add_label_sentences(shots.add_column("text_pair", ["a", "b"]), "A {} film.")
    with pytest.raises(ValueError, match="ClassLabel"):
        add_label_sentences(datasets.Dataset.from_dict({"text": ["a"], "label": [0.5]}), "A {} film.")


def test_label_embeddings_average_the_unit_features_of_each_labels_sentences(encoder):
    keys = label_embeddings(encoder, ["bad", "good"], "the film was {}.", {"good": ["good", "great"]})
    feats = encoder.encode(["the film was bad.", "the film was good.", "the film was great."])
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    expected = np.stack([feats[0], feats[1:].mean(0)])
    np.testing.assert_allclose(keys, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)


def test_several_templates_fill_every_description_and_their_sentences_are_averaged(encoder):
    templates = ["the film was {}.", "a {} film."]
    rows = label_sentences(["bad", "good"], templates, {"good": ["good", "great"]})
    assert rows == {"text": ["the film was bad.", "a bad film.", "the film was good.", "the film was great.",
                             "a good film.", "a great film."],
                    "label": ["bad", "bad", "good", "good", "good", "good"]}
    keys = label_embeddings(encoder, ["bad", "good"], templates, {"good": ["good", "great"]})
    feats = encoder.encode(rows["text"])
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    expected = np.stack([feats[:2].mean(0), feats[2:].mean(0)])
    np.testing.assert_allclose(keys, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
    with pytest.raises(ValueError, match="empty list"):
        label_sentences(["bad", "good"], [])
    with pytest.raises(ValueError, match="'a film.' has no"):
        label_sentences(["bad", "good"], ["the film was {}.", "a film."])


@pytest.mark.parametrize("options", [{"top_fraction": 2.0}, {"top_fraction": 0.0}, {"top_fraction": -0.3},
                                     {"min_confidence": 1.5}, {"temperature": 0.0}])
def test_a_selection_that_cannot_mean_anything_is_refused(options):
    # top_fraction=2 used to keep every row silently; a negative one cut rows from the end
    with pytest.raises(ValueError, match=next(iter(options))):
        select_pseudo_labels(np.array([[0.9, 0.1], [0.2, 0.8]]), **options)


def test_pseudo_labels_are_balanced_and_most_confident_first():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]])
    rows, ids = select_pseudo_labels(scores, top_fraction=0.5)
    assert np.bincount(ids).tolist() == [1, 1]  # class 0 has 4 candidates, class 1 has 2: both cut to 1
    assert rows.tolist() == [0, 4]
