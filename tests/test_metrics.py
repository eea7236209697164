"""Metrics against hand-computed values; every metric runs with the network blocked."""
from __future__ import annotations

import evaluate
import numpy as np
import pytest

from nlptl.metrics import (
    METRICS, classification_report, compute_classification_metrics, compute_squad_metrics, confusion_matrix,
    exact_match_score, f1_score, list_metrics, load_metric, normalize_answer,
)


pytestmark = pytest.mark.usefixtures("no_network")  # tests/conftest.py


# ----- classification -----------------------------------------------------------------------------

def test_accuracy_by_hand():
    # 4 of 5 predictions equal their reference -> 0.8
    assert compute_classification_metrics([0, 1, 1, 0, 2], [0, 1, 0, 0, 2])["accuracy"] == pytest.approx(0.8)


def test_macro_f1_with_a_class_never_predicted():
    # refs [0,0,1,2], preds [0,0,1,1]
    # class 0: tp 2, predicted 2, support 2 -> P 1, R 1, F1 1
    # class 1: tp 1, predicted 2, support 1 -> P 1/2, R 1, F1 2*(1/2)/(3/2) = 2/3
    # class 2: tp 0, predicted 0, support 1 -> P 0, R 0, F1 0
    # macro = (1 + 2/3 + 0) / 3 = 5/9
    scores = compute_classification_metrics([0, 0, 1, 1], [0, 0, 1, 2])
    assert scores["macro_f1"] == pytest.approx(5 / 9)
    report = classification_report([0, 0, 1, 1], [0, 0, 1, 2])
    assert report[1] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert report[2] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_macro_f1_averages_over_the_given_labels():
    # labels adds class "c", seen nowhere: its F1 is 0 and it joins the average.
    # a: tp 2, predicted 2, support 2 -> F1 1 ; b: tp 1, predicted 1, support 1 -> F1 1 ; c: F1 0
    scores = compute_classification_metrics(["a", "a", "b"], ["a", "a", "b"], labels=["a", "b", "c"])
    assert scores["macro_f1"] == pytest.approx(2 / 3)
    assert scores["accuracy"] == 1.0


def test_binary_mcc_by_hand():
    # refs [1,1,1,0,0], preds [1,1,0,0,1]: TP 2, FN 1, TN 1, FP 1
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3*3*2*2) = 1/6
    assert compute_classification_metrics([1, 1, 0, 0, 1], [1, 1, 1, 0, 0])["mcc"] == pytest.approx(1 / 6)


def test_multiclass_mcc_by_hand():
    # refs [0,1,2,0], preds [0,2,2,1]; reference counts t = [2,1,1], prediction counts p = [1,1,2]
    # correct c = 2, total s = 4
    # cov(y,p) = c*s - t.p = 8 - (2+1+2) = 3 ; cov(p,p) = s^2 - p.p = 16 - 6 = 10 ; cov(y,y) = 16 - 6 = 10
    # MCC = 3 / sqrt(10 * 10) = 0.3
    assert compute_classification_metrics([0, 2, 2, 1], [0, 1, 2, 0])["mcc"] == pytest.approx(0.3)


def test_mcc_edge_cases():
    assert compute_classification_metrics([1, 1, 1, 1], [0, 1, 0, 1])["mcc"] == 0.0  # constant prediction
    assert compute_classification_metrics([0, 1, 0, 1], [0, 1, 0, 1])["mcc"] == pytest.approx(1.0)
    assert compute_classification_metrics([1, 0, 1, 0], [0, 1, 0, 1])["mcc"] == pytest.approx(-1.0)


def test_label_names_and_numpy_inputs_give_the_same_scores():
    by_id = compute_classification_metrics(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]))
    by_name = compute_classification_metrics(["neg", "pos", "pos", "neg"], ["neg", "pos", "neg", "neg"])
    assert by_id == pytest.approx(by_name)
    # acc 3/4; neg: P 1, R 2/3, F1 0.8 ; pos: P 1/2, R 1, F1 2/3 ; macro (0.8 + 2/3) / 2 = 11/15
    assert by_id["accuracy"] == pytest.approx(0.75) and by_id["macro_f1"] == pytest.approx(11 / 15)


def test_confusion_matrix_rows_are_references():
    matrix, labels = confusion_matrix(["b", "a", "a"], ["a", "a", "b"])
    assert labels == ["a", "b"]
    # reference a: predicted b once, a once ; reference b: predicted a once
    assert matrix.tolist() == [[1, 1], [1, 0]]


def test_classification_errors_name_the_problem():
    with pytest.raises(ValueError, match="'z'.*not in labels"):
        compute_classification_metrics(["a", "z"], ["a", "b"], labels=["a", "b"])
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        confusion_matrix([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="unknown metric 'f2'.*accuracy"):
        load_metric("f2")


def test_matches_scikit_learn_on_random_labels():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    refs, preds = rng.integers(0, 4, 200), rng.integers(0, 3, 200)  # class 3 never predicted
    ours = compute_classification_metrics(preds, refs)
    assert ours["accuracy"] == pytest.approx(metrics.accuracy_score(refs, preds))
    assert ours["macro_f1"] == pytest.approx(metrics.f1_score(refs, preds, average="macro", zero_division=0))
    assert ours["mcc"] == pytest.approx(metrics.matthews_corrcoef(refs, preds))


def test_multi_label_head_scores_by_hand():
    from nlptl.heads import ClassificationHead

    head = ClassificationHead(2, multi_label=True)
    gold = [[1, 0], [1, 1], [0, 1], [0, 0]]
    logits = [np.array(row, dtype=float) for row in ([3, -1], [2, -2], [-1, 4], [1, -3])]  # on where > 0
    # predicted [1,0] [1,0] [0,1] [1,0]: rows 0 and 2 wholly right -> subset accuracy 2/4
    # true positives 3, predicted on 4, gold on 4 -> micro precision = recall = 3/4, F1 3/4
    scores = head.compute_metrics([{"label": g} for g in gold], {"logits": logits}, None)
    assert scores == pytest.approx({"subset_accuracy": 0.5, "micro_f1": 0.75})
    assert set(scores) == set(head.metric_names())
    nothing_on = head.compute_metrics([{"label": [0, 0]}], {"logits": [np.array([-1.0, -1.0])]}, None)
    assert nothing_on == {"subset_accuracy": 1.0, "micro_f1": 0.0}  # no label to find: F1 0, not a crash


def test_modules_are_evaluate_metrics_that_accumulate_batches():
    accuracy = load_metric("accuracy")
    assert isinstance(accuracy, evaluate.EvaluationModule)
    accuracy.add_batch(predictions=[0, 1], references=[0, 0])
    accuracy.add_batch(predictions=[1], references=[1])
    assert accuracy.compute() == {"accuracy": pytest.approx(2 / 3)}
    combined = evaluate.combine([load_metric("accuracy"), load_metric("mcc")])
    assert set(combined.compute(predictions=[0, 1], references=[0, 1])) == {"accuracy", "mcc"}
    assert set(list_metrics()) == set(METRICS) == {"accuracy", "macro_f1", "mcc", "squad"}


# ----- SQuAD -----------------------------------------------------------------------------------------

def test_squad_normalisation():
    # lower -> strip punctuation (the hyphen too, joining the words) -> drop articles -> collapse spaces
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("An apple, a day.") == "apple day"
    assert normalize_answer("Theatre of the Absurd") == "theatre of absurd"  # only whole-word articles go


def test_squad_token_f1_by_hand():
    # "the cat sat on the mat" -> [cat, sat, on, mat] ; "a cat on a mat" -> [cat, on, mat]
    # common 3 ; P 3/4 ; R 3/3 ; F1 = 2 * 0.75 * 1 / 1.75 = 6/7
    assert f1_score("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    # bags, not sets: [x, x, y] vs [x, y, y] share min(2,1) + min(1,2) = 2 ; P = R = 2/3 ; F1 = 2/3
    assert f1_score("x x y", "x y y") == pytest.approx(2 / 3)
    assert f1_score("the", "a") == 1.0  # both normalise to nothing (v2.0 rule; v1.1 data never has it)
    assert f1_score("", "Paris") == 0.0
    assert exact_match_score("The Broncos.", "broncos") == 1.0


def test_squad_metrics_take_the_best_gold_answer_and_count_unanswered_as_zero():
    references = {
        "q1": ["Denver Broncos", "Broncos"],  # prediction matches the first exactly
        "q2": {"text": ["Broncos", "the Denver team"], "answer_start": [0, 5]},
        "q3": ["Santa Clara"],  # never answered
    }
    predictions = {"q1": "the Denver Broncos", "q2": "Denver Broncos"}
    # q2: vs "broncos": P 1/2, R 1 -> F1 2/3 ; vs "denver team": P 1/2, R 1/2 -> 1/2 ; best 2/3, EM 0
    # EM = 100 * (1 + 0 + 0) / 3 ; F1 = 100 * (1 + 2/3 + 0) / 3
    scores = compute_squad_metrics(predictions, references)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (5 / 3) / 3)


def test_unanswerable_question_is_right_only_when_left_empty():
    # no gold answer -> gold [""]: an empty prediction scores EM 1, F1 1; any text scores 0
    references = {"q1": [], "q2": {"text": [], "answer_start": []}}
    assert compute_squad_metrics({"q1": "", "q2": "Paris"}, references) == {"exact_match": 50.0, "f1": 50.0}


def test_squad_module_takes_the_hub_format():
    squad = load_metric("squad")
    scores = squad.compute(predictions=[{"id": "1", "prediction_text": "a cat"}],
                           references=[{"id": "1", "answers": {"text": ["the cat"], "answer_start": [3]}}])
    assert scores == {"exact_match": 100.0, "f1": 100.0}


def test_squad_prediction_for_an_unknown_question_is_an_error():
    with pytest.raises(ValueError, match="'q9'"):
        compute_squad_metrics({"q9": "x"}, {"q1": ["x"]})
