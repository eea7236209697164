"""Domain adaptation and instance transfer (nlptl.adaptation), on tiny models and synthetic data."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

import nlptl
from nlptl.adaptation import (CORAL, DANN, MMD, FeatureTableEncoder, TrAdaBoost, coral_distance, coral_transform,
                              domain_adaptive_pretraining, domain_distance, importance_weights, masked_lm_for,
                              mk_mmd, objective_for, reverse_gradient, self_training, warm_up)
from nlptl.adaptation.weights import kernel_mean_matching
from nlptl.heads import ClassificationHead
from nlptl.objectives import TrainStep
from tests.tiny.transformers import build_bert

SOURCE_POS = ["the movie was good", "a really good film", "good movie", "the film was really good"]
SOURCE_NEG = ["the movie was bad", "a really bad film", "bad movie", "the film was not good"]
TARGET = ["hello world is good", "a good long sentence", "that world is bad", "a bad sentence about nothing",
          "the sentence was really good", "nothing good in that world"]


def source_target(n: int = 32):
    texts = (SOURCE_POS * n)[: n // 2] + (SOURCE_NEG * n)[: n // 2]
    return {"text": texts, "label": ["positive"] * (n // 2) + ["negative"] * (n // 2)}, {"text": (TARGET * n)[:n]}


def bert_model(tmp_path) -> nlptl.TransferModel:
    torch.manual_seed(0)
    encoder, _ = build_bert(tmp_path)
    return nlptl.TransferModel(encoder, ClassificationHead(2), labels=["negative", "positive"])


def shifted_table(n: int = 256, seed: int = 0):
    """A FeatureTableEncoder over Gaussian source vectors and target vectors with another mean and scale."""
    rng = np.random.default_rng(seed)
    source = rng.normal(0, 1, (n, 8))
    target = rng.normal(0, 1, (n, 8)) * np.linspace(0.5, 3, 8) + 1.5
    texts = [f"s{i}" for i in range(n)] + [f"t{i}" for i in range(n)]
    labels = (source[:, 0] > 0).astype(int).tolist()
    torch.manual_seed(seed)
    encoder = FeatureTableEncoder(texts, np.concatenate([source, target]).astype(np.float32), adapter_size=16)
    model = nlptl.TransferModel(encoder, ClassificationHead(2), labels=["negative", "positive"])
    return model, {"text": texts[:n], "label": labels}, {"text": texts[n:]}


def step_log(directory) -> list[dict]:
    return [r for r in map(json.loads, (directory / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]


def adapter_features(model, texts) -> torch.Tensor:
    batch = model.encoder.preprocess(texts)
    model.eval()
    with torch.no_grad():
        return model(batch)["features"]  # (N, D)


# ----- objectives ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dann", "coral", "mmd"])
def test_each_objective_loss_falls_on_a_tiny_task(name, tmp_path):
    model, source, target = shifted_table(n=128)
    nlptl.fit(model, {"source": source, "target": target}, None, objective=objective_for(name), strategy="top_k",
              top_k=1, epochs=6, batch_size=32, learning_rate=1e-2, head_learning_rate=1e-2, warmup_ratio=0.0,
              progress=False, output_dir=str(tmp_path / "run"))
    steps = step_log(tmp_path / "run")
    assert {"task", name} <= set(steps[0])
    # DANN's own term is adversarial (the features learn to *raise* the discriminator's loss): its task
    # loss is what falls; CORAL and MMD minimise their whole loss, alignment term included.
    watched = ["task"] if name == "dann" else ["loss", name]
    for key in watched:
        first, last = np.mean([s[key] for s in steps[:4]]), np.mean([s[key] for s in steps[-4:]])
        assert last < 0.9 * first, (key, first, last)


def test_dann_trains_a_tiny_bert_on_labelled_source_and_unlabelled_target(tmp_path):
    model = bert_model(tmp_path)
    source, target = source_target(32)
    result = nlptl.fit(model, {"source": source, "target": target}, source, objective=DANN(hidden_size=16),
                       strategy="full", learning_rate=2e-3, head_learning_rate=2e-2, epochs=8, batch_size=8,
                       warmup_ratio=0.0, progress=False, output_dir=str(tmp_path / "run"))
    steps = step_log(tmp_path / "run")
    assert steps[-1]["grl_coefficient"] > steps[0]["grl_coefficient"] >= 0  # the reversal warms up
    assert result.metrics["accuracy"] >= 0.9  # the source task is learnt beside the adversary
    assert result.extra["sources"]["target"]["labelled"] is False
    assert result.extra["objective"]["name"] == "DANN"


@pytest.mark.parametrize("objective, distance", [(CORAL(trade_off=50.0), coral_distance), (MMD(trade_off=5.0), mk_mmd)])
def test_alignment_objectives_bring_target_features_closer_than_source_only_training(objective, distance):
    gaps = {}
    for label, chosen in (("aligned", objective), ("source_only", None)):
        model, source, target = shifted_table()
        train = {"source": source, "target": target} if chosen is not None else source
        nlptl.fit(model, train, None, objective=chosen, strategy="top_k", top_k=1, epochs=15, batch_size=64,
                  learning_rate=1e-2, head_learning_rate=1e-2, progress=False)
        gaps[label] = float(distance(adapter_features(model, source["text"]), adapter_features(model, target["text"])))
    assert gaps["aligned"] < 0.5 * gaps["source_only"], gaps


def test_coral_transform_gives_the_source_the_targets_covariance():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(4000, 3)) @ np.array([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0], [0.0, 0.0, 3.0]]) + 5.0
    target = rng.normal(size=(3000, 3)) @ np.array([[1.0, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, -0.9, 0.4]]) - 2.0
    aligned, standardized = coral_transform(source, target, ridge=1e-6)  # ridge -> 0: exact alignment
    np.testing.assert_allclose(standardized.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(standardized.std(0), 1.0, atol=1e-9)
    gap = lambda x: np.abs(np.cov(x, rowvar=False) - np.cov(standardized, rowvar=False)).max()
    before = gap((source - source.mean(0)) / source.std(0))
    assert before > 0.5 and gap(aligned) < 1e-3
    paper, _ = coral_transform(source, target)  # ridge 1 (the paper's): covariances closer, not equal
    assert gap(paper) < before
    with pytest.raises(ValueError, match="ridge"):
        coral_transform(source, target, ridge=0)
    with pytest.raises(ValueError, match="shapes"):
        coral_transform(source, target[:, :2])


def test_dann_discriminator_learns_while_the_features_are_made_domain_invariant():
    model, source, target = shifted_table()
    objective = DANN(hidden_size=32)
    nlptl.fit(model, {"source": source, "target": target}, None, objective=objective, strategy="top_k", top_k=1,
              epochs=2, batch_size=64, learning_rate=1e-2, progress=False)
    assert objective.discriminator is not None and sum(p.numel() for p in objective.discriminator.parameters()) > 0
    assert objective.config()["gamma"] == 10.0


def test_warm_up_follows_the_dann_schedule():
    assert warm_up(0.0) == 0.0
    assert warm_up(1.0) == pytest.approx(2 / (1 + np.exp(-10)) - 1)
    assert warm_up(0.1) == pytest.approx(2 / (1 + np.exp(-1)) - 1)
    assert all(a < b for a, b in zip([warm_up(p / 10) for p in range(10)], [warm_up(p / 10) for p in range(1, 11)]))


def test_gradient_reversal_flips_the_encoder_gradient_from_the_discriminator_numerically():
    """d(domain loss)/d(encoder weight) by finite differences vs what DANN's backward gives the encoder."""
    torch.manual_seed(0)
    encoder = torch.nn.Linear(4, 6).double()
    objective = DANN(hidden_size=8)
    from nlptl.adaptation.dann import DomainDiscriminator

    objective.discriminator = DomainDiscriminator(6, 8).double().eval()  # eval: no dropout noise
    xs, xt = torch.randn(5, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64) + 1
    step = TrainStep(global_step=3, total_steps=10, epoch=0)
    coefficient = warm_up(0.3, maximum=objective.max_coefficient)

    def domain_loss() -> torch.Tensor:
        return objective.alignment(encoder(xs), encoder(xt), step)[0]

    encoder.zero_grad()
    objective.discriminator.zero_grad()
    domain_loss().backward()
    weight = encoder.weight
    numeric = torch.zeros_like(weight)
    with torch.no_grad():
        for index in np.ndindex(*weight.shape):
            saved = weight[index].item()
            weight[index] = saved + 1e-6
            up = domain_loss().item()
            weight[index] = saved - 1e-6
            down = domain_loss().item()
            weight[index] = saved
            numeric[index] = (up - down) / 2e-6
    assert numeric.abs().max() > 1e-4  # the discriminator's loss does depend on the encoder
    torch.testing.assert_close(weight.grad, -coefficient * numeric, rtol=1e-5, atol=1e-8)
    # the discriminator itself descends its loss: its gradient is not reversed
    first = objective.discriminator.layers[0].weight
    analytic = first.grad.clone()
    with torch.no_grad():
        saved = first[0, 0].item()
        first[0, 0] = saved + 1e-6
        up = domain_loss().item()
        first[0, 0] = saved - 1e-6
        down = domain_loss().item()
        first[0, 0] = saved
    assert analytic[0, 0].item() == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)


def test_reverse_gradient_is_identity_forward():
    x = torch.randn(3, 2, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, -0.5))


def test_adaptation_objectives_name_their_missing_sources(tmp_path):
    model, source, _ = shifted_table(n=32)
    with pytest.raises(ValueError, match="'target'"):
        nlptl.fit(model, {"source": source, "other": {"text": source["text"]}}, None, objective=CORAL(),
                  strategy="top_k", top_k=1, epochs=1, progress=False)
    with pytest.raises(ValueError, match="unknown adaptation objective 'kmm'.*weighting"):
        objective_for("kmm")


def test_resume_with_a_discriminator_is_bit_identical(tmp_path):
    """Unbroken 2-epoch DANN run vs a fresh fit resumed from its mid-run checkpoint."""
    def run(directory, resume=False):
        model, source, target = shifted_table(n=96)
        objective = DANN(hidden_size=16)
        nlptl.fit(model, {"source": source, "target": target}, None, objective=objective, strategy="top_k", top_k=1,
                  epochs=2, batch_size=16, learning_rate=1e-2, progress=False, save_every_steps=3,
                  save_total_limit=10, output_dir=str(directory), resume=resume)
        return model, objective

    model, objective = run(tmp_path / "unbroken")
    checkpoints = sorted((tmp_path / "unbroken" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    assert [int(p.name[11:]) for p in checkpoints] == [3, 6, 9, 12]  # 6 steps an epoch
    shutil.copytree(tmp_path / "unbroken", tmp_path / "broken")
    for later in sorted((tmp_path / "broken" / "checkpoints").glob("checkpoint-*")):
        if int(later.name[11:]) > 3:  # as if killed after step 3, mid-epoch 1
            shutil.rmtree(later)
    resumed, resumed_objective = run(tmp_path / "broken", resume=True)
    for mine, theirs in ((model, resumed), (objective, resumed_objective)):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and a
        for key in a:
            assert torch.equal(a[key], b[key]), key


# ----- instance weights ------------------------------------------------------------------------


def gaussians(n: int = 2000, shift: float = 0.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    source, target = rng.normal(0, 1, (n, 2)), rng.normal(0, 1, (n, 2)) + [shift, 0]
    true_ratio = np.exp(shift * source[:, 0] - shift ** 2 / 2)  # N(mu, 1) / N(0, 1) along the first axis
    return source, target, true_ratio / true_ratio.mean()


def test_classifier_weights_recover_a_known_density_ratio(caplog):
    source, target, truth = gaussians()
    with caplog.at_level(logging.INFO, logger="nlptl.adaptation"):
        weights, info = importance_weights(None, source, target, method="classifier", strength=1.0,
                                           return_info=True)
    assert weights.shape == (len(source),) and weights.mean() == pytest.approx(1.0)
    assert np.corrcoef(weights, truth)[0, 1] > 0.98
    assert np.median(np.abs(weights - truth) / truth) < 0.1
    ess = (weights.sum() ** 2) / (weights ** 2).sum()
    assert info["effective_sample_size"] == pytest.approx(ess) and ess < len(source)
    assert "effective sample size" in caplog.text


def test_weights_are_clipped_and_normalised():
    source, target, _ = gaussians(n=500, shift=3.0)  # far apart: raw ratios reach the hundreds
    weights, info = importance_weights(None, source, target, clip=5.0, strength=1.0, return_info=True)
    assert weights.max() <= 5.0 * (1 + 1e-6) and weights.min() >= 0 and weights.mean() == pytest.approx(1.0)
    assert info["clipped"] > 0


def test_strength_moves_the_weights_toward_uniform():
    source, target, _ = gaussians(n=400, shift=2.0)  # far apart: a few rows carry most of the weight
    full, info_full = importance_weights(None, source, target, strength=1.0, return_info=True)
    half, info_half = importance_weights(None, source, target, strength=0.5, return_info=True)
    assert np.allclose(half, 0.5 + 0.5 * full) and half.mean() == pytest.approx(1.0) and half.min() >= 0.5
    assert info_half["strength"] == 0.5
    assert info_full["effective_sample_size"] < info_half["effective_sample_size"] < len(source)
    assert np.allclose(importance_weights(None, source, target, strength=0.0), 1.0)
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(ValueError, match="strength"):
            importance_weights(None, source, target, strength=bad)


def test_kmm_weights_satisfy_their_constraints_and_follow_the_ratio():
    source, target, truth = gaussians(n=300, shift=1.0, seed=1)
    bound, epsilon = 5.0, 0.05
    beta = kernel_mean_matching(source, target, bound=bound, epsilon=epsilon)
    n = len(source)
    assert beta.min() >= 0 and beta.max() <= bound
    assert abs(beta.sum() - n) <= n * epsilon + 1e-6
    assert np.corrcoef(beta, truth)[0, 1] > 0.5
    weights = importance_weights(None, source, target, method="kmm", kmm_bound=bound)
    assert weights.mean() == pytest.approx(1.0)


def test_weights_train_through_fit_weight_column():
    model, source, target = shifted_table(n=64)
    vectors = model.encoder.table.weight.numpy()
    weights = importance_weights(None, vectors[:64], vectors[64:])
    result = nlptl.fit(model, {**source, "weight": weights.tolist()}, source, weight_column="weight",
                       strategy="top_k", top_k=1, epochs=3, progress=False)
    assert "accuracy" in result.metrics


def test_importance_weights_embed_texts_with_the_encoder(tmp_path):
    encoder, _ = build_bert(tmp_path)
    source, target = source_target(8)
    weights = importance_weights(encoder, source["text"], target["text"], folds=2)
    assert weights.shape == (8,) and np.isfinite(weights).all()


# ----- TrAdaBoost, distance --------------------------------------------------------------------


def test_tradaboost_fades_out_source_rows_that_disagree_with_the_target():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    xs, xt, test = rng.normal(0, 1, (1000, 2)), rng.normal(0, 1, (60, 2)), rng.normal(0, 1, (2000, 2))
    ys = (xs[:, 0] > 0).astype(int)  # the source's rule
    rule = lambda x: (x[:, 0] + 3 * x[:, 1] > 0).astype(int)  # the target's, different
    plain = LogisticRegression().fit(np.concatenate([xs, xt]), np.concatenate([ys, rule(xt)]))
    boosted = TrAdaBoost(n_estimators=40).fit(xs, ys, xt, rule(xt))
    plain_acc = (plain.predict(test) == rule(test)).mean()
    boosted_acc = (boosted.predict(test) == rule(test)).mean()
    assert boosted_acc > plain_acc + 0.2, (plain_acc, boosted_acc)  # measured 0.97 vs 0.61


def test_domain_distance_is_near_zero_for_one_distribution_and_near_two_for_separable_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (400, 5)), rng.normal(0, 1, (400, 5))
    assert domain_distance(None, a, b) < 0.3
    assert domain_distance(None, a, b + 10) > 1.9


# ----- domain-adaptive pretraining -------------------------------------------------------------


def test_dapt_lowers_masked_lm_loss_and_saves_an_encoder_load_encoder_reads(tmp_path):
    encoder, _ = build_bert(tmp_path)
    mlm, head = masked_lm_for(encoder)
    assert head == "new (tied)"  # the tiny checkpoint has no masked-LM head
    assert mlm.get_output_embeddings().weight is encoder.model.get_input_embeddings().weight
    texts = TARGET * 8
    result = domain_adaptive_pretraining(encoder, texts, epochs=6, batch_size=8, learning_rate=3e-3,
                                         eval_texts=TARGET * 4, output_dir=str(tmp_path / "dapt"))
    assert result.loss_after < result.loss_before - 0.5, (result.loss_before, result.loss_after)
    loaded = nlptl.load_encoder(tmp_path / "dapt")
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    batch = loaded.preprocess(["hello world"])
    loaded.eval(), encoder.eval()
    torch.testing.assert_close(loaded(batch).features, encoder(batch).features)


def test_dapt_with_train_top_k_leaves_lower_groups_untouched(tmp_path):
    encoder, _ = build_bert(tmp_path)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    domain_adaptive_pretraining(encoder, TARGET * 4, epochs=1, batch_size=8, learning_rate=1e-2, train_top_k=1)
    changed = {k for k, v in encoder.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".layer.1." in k for k in changed), sorted(changed)
    assert all(p.requires_grad for p in encoder.parameters())


def test_chunked_kmm_keeps_each_chunks_constraints():
    source, target, truth = gaussians(n=400, shift=1.0, seed=2)
    weights, info = importance_weights(None, source, target, method="kmm", kmm_chunk=100, kmm_bound=5.0,
                                       return_info=True)
    assert weights.shape == (400,) and weights.mean() == pytest.approx(1.0) and weights.min() >= 0
    assert np.corrcoef(weights, truth)[0, 1] > 0.4


# ----- self-training ---------------------------------------------------------------------------


def test_self_training_learns_the_targets_own_cue_from_confident_pseudo_labels():
    """Source: feature 0 carries the label, feature 1 is noise. Target: feature 0 is a weak cue, feature 1 a
    strong one. Source-only ignores feature 1; pseudo-labels on the surest target rows teach it."""
    rng = np.random.default_rng(0)
    n = 400
    ys, yt = rng.integers(0, 2, n), rng.integers(0, 2, n)
    source = np.stack([(2 * ys - 1) * 2.0 + rng.normal(0, 0.5, n), rng.normal(0, 1, n)], 1)
    target = np.stack([(2 * yt - 1) * 0.5 + rng.normal(0, 1, n), (2 * yt - 1) * 2.0 + rng.normal(0, 0.5, n)], 1)
    texts = [f"s{i}" for i in range(n)] + [f"t{i}" for i in range(n)]
    table = np.concatenate([source, target]).astype(np.float32)

    def new_model():
        torch.manual_seed(0)
        return nlptl.TransferModel(FeatureTableEncoder(texts, table, adapter_size=8), ClassificationHead(2),
                                   labels=["negative", "positive"])

    options = dict(strategy="top_k", top_k=1, epochs=20, batch_size=64, learning_rate=1e-2, head_learning_rate=1e-2,
                   progress=False)
    labelled = {"text": texts[:n], "label": ys.tolist()}
    scored = {"text": texts[n:], "label": yt.tolist()}
    source_only = new_model()
    nlptl.fit(source_only, labelled, **options)
    result = self_training(new_model, labelled, texts[n:], fractions=(0.2, 0.4, 0.6), true_labels=yt.tolist(),
                           **options)
    before = nlptl.evaluate(source_only, scored)["accuracy"]
    after = nlptl.evaluate(result.model, scored)["accuracy"]
    assert after > before + 0.05, (before, after)  # measured 0.755 -> 0.835
    assert [r["fraction"] for r in result.rounds] == [0.2, 0.4, 0.6]
    counts = [r["pseudo_rows"] for r in result.rounds]
    assert counts == sorted(counts) and counts[-1] <= int(0.6 * n) + 2  # class-balanced top shares: at most 60 %
    assert all(0.5 < r["pseudo_accuracy"] <= 1.0 for r in result.rounds)


def test_self_training_names_bad_arguments():
    model, source, target = shifted_table(n=16)
    with pytest.raises(ValueError, match="fractions"):
        self_training(lambda: model, source, target["text"], fractions=(0.5, 1.5))
    with pytest.raises(ValueError, match="'label'"):
        self_training(lambda: model, {"text": source["text"]}, target["text"])
    with pytest.raises(ValueError, match="target_texts is empty"):
        self_training(lambda: model, source, [])


class RecordingMMD(MMD):
    """MMD that notes which sources each step's batches came from and how many source rows it saw."""

    def __init__(self):
        super().__init__(trade_off=1.0)
        self.sources_seen, self.source_rows = set(), 0

    def loss(self, model, batches, step):
        self.sources_seen.add(tuple(sorted(batches)))
        self.source_rows += len(next(v for v in batches["source"].values() if torch.is_tensor(v)))
        return super().loss(model, batches, step)


def test_self_training_with_an_objective_gives_every_fit_a_fresh_one_over_source_and_target():
    made = []

    def make_mmd():
        made.append(RecordingMMD())
        return made[-1]

    def new_model():
        return shifted_table(n=64)[0]

    import datasets

    _, source, target = shifted_table(n=64)
    source = datasets.Dataset.from_dict(source)  # a Dataset works as well as a dict of columns
    result = self_training(new_model, source, target["text"], fractions=(0.3, 0.6), make_objective=make_mmd,
                           strategy="top_k", top_k=1, epochs=2, batch_size=32, progress=False)
    assert len(made) == 3 and len({id(o) for o in made}) == 3  # the source fit + one per round
    assert all(o.sources_seen == {("source", "target")} for o in made)  # every step: a source and a target batch
    # the rounds' source side is the labelled rows plus a growing share of pseudo-labelled target rows
    assert made[0].source_rows < made[1].source_rows < made[2].source_rows, [o.source_rows for o in made]
    assert [r["pseudo_rows"] > 0 for r in result.rounds] == [True, True]
    assert result.rounds[0]["pseudo_accuracy"] is None  # no true labels given


def test_self_training_stops_with_a_clear_error_when_the_source_model_predicts_one_class_for_the_target():
    rng = np.random.default_rng(0)
    source = rng.normal(0, 1, (32, 4))
    texts = [f"s{i}" for i in range(32)] + [f"t{i}" for i in range(8)]
    table = np.concatenate([source, np.ones((8, 4))]).astype(np.float32)  # every target text looks the same

    def new_model():
        return nlptl.TransferModel(FeatureTableEncoder(texts, table, adapter_size=4), ClassificationHead(2),
                                   labels=["negative", "positive"])

    with pytest.raises(ValueError, match="round 1: the model predicts one class for all 8 target texts"):
        self_training(new_model, {"text": texts[:32], "label": (source[:, 0] > 0).astype(int).tolist()}, texts[32:],
                      strategy="top_k", top_k=1, epochs=1, progress=False)


def test_self_training_through_a_run_config_is_for_text_classification_only(tmp_path):
    from nlptl.runs import RunConfig

    with pytest.raises(ValueError, match="self_training.*text-classification"):
        RunConfig(output_dir=str(tmp_path / "run"), task="token-classification", dataset="conll2003",
                  encoder="minilm", adaptation="self_training", unlabeled_file="target.txt")
