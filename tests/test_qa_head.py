"""Extractive QA head: windowing, answer validation, post-processing, and learning real spans."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from nlptl.heads.qa import ExtractiveQAHead, predict_answers
from nlptl.heads.qa_postprocess import best_answers, context_positions, null_position
from tests.fake_encoders import TOKEN, WordEncoder

LONG_CONTEXT = (
    "The old war began in the cold north when the river froze and the villages closed their gates . "
    "Many seasons passed while the armies marched across the plains and burned the bridges . "
    "The fighting finally ended in 1945 after a long winter siege of the capital ."
)


def squad(question: str, context: str, answer: str, occurrence: int = 0, id: str | None = None) -> dict:
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(answer, start + 1)
    return {"id": id or question, "question": question, "context": context,
            "answers": {"text": [answer], "answer_start": [start]}}


EXAMPLES = [
    squad("Who wrote Hamlet?", "Hamlet is a tragedy written by William Shakespeare around 1600.",
          "William Shakespeare"),
    squad("What is the capital of France?", "Paris is the capital and largest city of France.", "Paris"),
    squad("When did the war end?", LONG_CONTEXT, "1945"),
    squad("What color is the sky?", "On a clear day the sky is blue because of scattering.", "blue"),
    squad("How many eyes does a spider have?", "A spider has eight legs and most have eight eyes.", "eight",
          occurrence=1),  # the second "eight": the model must find the right occurrence
]


def as_columns(examples: list[dict]) -> dict[str, list]:
    return {key: [e[key] for e in examples] for key in examples[0]}


def make_encoder(max_length: int = 24, dim: int = 32) -> WordEncoder:
    texts = [e[k] for e in EXAMPLES for k in ("question", "context")]
    return WordEncoder.from_texts(texts, dim=dim, max_length=max_length)


def built_head(encoder, **options) -> ExtractiveQAHead:
    head = ExtractiveQAHead(**options)
    head.build(encoder)
    return head


# ----- windowing ---------------------------------------------------------------------------------


def test_long_context_is_split_into_overlapping_windows_that_map_back_to_characters():
    encoder = make_encoder(max_length=20)
    head = ExtractiveQAHead(stride=4)
    example = EXAMPLES[2]
    rows = head.prepare(encoder, as_columns([example]), train=True)
    context = example["context"]
    tokens = {m.span(): m.group() for m in TOKEN.finditer(context)}  # character span -> word

    assert len(rows) > 2, "a 45-token context in 20-token rows needs several windows"
    windows = []
    for row in rows:
        model_input = row["input"]
        assert len(model_input) <= 20
        assert row["example_index"] == 0 and row["context"] == context
        spans = [model_input.offsets[p] for p in context_positions(model_input)]
        assert all(context[s:e] == tokens[(s, e)] for s, e in spans), "offsets index the full context"
        assert spans == sorted(spans) and len(set(spans)) == len(spans)
        windows.append(spans)
    assert sorted({s for w in windows for s in w}) == sorted(tokens), "every context token is in some window"
    for earlier, later in zip(windows, windows[1:]):
        assert earlier[-4:] == later[:4] and earlier[-5] != later[0], "consecutive windows share exactly stride tokens"

    # exactly one window holds "1945"; it points at it, the others at the null slot
    answer_rows = [r for r in rows if r["start_position"] != null_position(r["input"])]
    assert len(answer_rows) == 1
    row = answer_rows[0]
    s, e = row["input"].offsets[row["start_position"]][0], row["input"].offsets[row["end_position"]][1]
    assert context[s:e] == "1945"
    assert all(r["start_position"] == r["end_position"] == 0 for r in rows if r is not row)


def test_multi_token_answer_targets_its_first_and_last_token():
    encoder = make_encoder()
    rows = ExtractiveQAHead().prepare(encoder, as_columns(EXAMPLES[:1]), train=True)
    (row,) = rows
    s = row["input"].offsets[row["start_position"]][0]
    e = row["input"].offsets[row["end_position"]][1]
    assert EXAMPLES[0]["context"][s:e] == "William Shakespeare"
    assert row["end_position"] == row["start_position"] + 1


def test_collate_marks_context_and_null_slot():
    encoder = make_encoder(max_length=20)
    head = built_head(encoder, stride=4)
    rows = head.prepare(encoder, as_columns(EXAMPLES[1:3]), train=True)
    batch = head.collate(encoder, rows)
    for i, row in enumerate(rows):
        expected = torch.zeros(batch["context_mask"].shape[1], dtype=torch.bool)
        expected[context_positions(row["input"])] = True
        assert torch.equal(batch["context_mask"][i], expected)
    assert batch["null_positions"].tolist() == [0] * len(rows)
    assert batch["row_index"].tolist() == list(range(len(rows)))

    out = head(encoder(batch), batch)
    assert torch.isfinite(out["losses"].mean())
    allowed = batch["context_mask"].clone()
    allowed[:, 0] = True
    assert (out["start_logits"][~allowed] <= -1e3).all() and (out["start_logits"][allowed] > -1e3).all()


# ----- validation --------------------------------------------------------------------------------


def test_wrong_answer_start_names_the_example_and_what_is_there():
    bad = squad("Who wrote Hamlet?", EXAMPLES[0]["context"], "William Shakespeare", id="q-17")
    bad["answers"]["answer_start"] = [3]
    with pytest.raises(ValueError, match=r"'q-17'.*'William Shakespeare'.*'let is a tragedy wr'.*character 31"):
        ExtractiveQAHead().prepare(make_encoder(), as_columns([bad]), train=True)


def test_missing_columns_empty_data_and_long_questions_are_refused():
    encoder, head = make_encoder(), ExtractiveQAHead(stride=4)
    data = as_columns(EXAMPLES)
    with pytest.raises(ValueError, match=r"'answers' \(set answers_column=\).*columns"):
        head.prepare(encoder, {k: v for k, v in data.items() if k != "answers"}, train=True)
    head.prepare(encoder, {k: v for k, v in data.items() if k != "answers"}, train=False)  # eval can skip answers
    with pytest.raises(ValueError, match="empty"):
        head.prepare(encoder, {"question": [], "context": [], "answers": []}, train=True)
    long_question = squad(" ".join(["who"] * 30) + " wrote Hamlet?", EXAMPLES[0]["context"], "Hamlet")
    with pytest.raises(ValueError, match="shorten the question or raise max_length"):
        head.prepare(encoder, as_columns([long_question]), train=False)


def test_unanswerable_training_example_needs_allow_no_answer():
    unanswerable = {**EXAMPLES[1], "answers": {"text": [], "answer_start": []}}
    with pytest.raises(ValueError, match="allow_no_answer=True"):
        ExtractiveQAHead().prepare(make_encoder(), as_columns([unanswerable]), train=True)
    (row,) = ExtractiveQAHead(allow_no_answer=True).prepare(make_encoder(), as_columns([unanswerable]), train=True)
    assert row["start_position"] == row["end_position"] == null_position(row["input"])


# ----- post-processing ---------------------------------------------------------------------------


def logits_for(rows, picks: dict[tuple[int, str], float]) -> tuple[list, list]:
    """Zero logits with chosen values: picks[(row, 'start'|'end', position)] = value."""
    starts = [np.zeros(len(r["input"]) + 3) for r in rows]  # + padding, as gathered outputs have
    ends = [np.zeros(len(r["input"]) + 3) for r in rows]
    for (row, which, position), value in picks.items():
        (starts if which == "start" else ends)[row][position] = value
    return starts, ends


def position_of(row, word: str, occurrence: int = 0) -> int:
    context = row["context"]
    hits = [p for p in context_positions(row["input"]) if context[slice(*row["input"].offsets[p])] == word]
    return int(hits[occurrence])


def test_postprocessing_picks_the_best_valid_span_and_exact_characters():
    encoder = make_encoder()
    head = ExtractiveQAHead(max_answer_length=3)
    (row,) = head.prepare(encoder, as_columns(EXAMPLES[:1]), train=False)
    william, shakespeare = position_of(row, "William"), position_of(row, "Shakespeare")
    hamlet, is_ = position_of(row, "Hamlet"), position_of(row, "is")
    starts, ends = logits_for([row], {
        (0, "start", 1): 50.0, (0, "end", 1): 50.0,  # a question token: never an answer
        (0, "start", william): 5.0, (0, "end", shakespeare): 4.0,  # best valid span: 9
        (0, "end", hamlet): 8.0,  # ends before every high start: (William, Hamlet) is invalid
        (0, "start", is_): 6.0,  # "is ... Shakespeare" would score 10 but is 6 tokens > max_answer_length
    })
    (answer,) = head.postprocess([row], starts, ends)
    assert answer == {"answer": "William Shakespeare", "score": 9.0, "start": 31, "end": 50}
    assert row["context"][answer["start"] : answer["end"]] == answer["answer"]


def test_best_span_across_windows_maps_to_the_full_context():
    encoder = make_encoder(max_length=20)
    head = ExtractiveQAHead(stride=4)
    rows = head.prepare(encoder, as_columns(EXAMPLES[2:3]), train=False)
    last = len(rows) - 1
    siege = position_of(rows[last], "siege")
    starts, ends = logits_for(rows, {(0, "start", context_positions(rows[0]["input"])[2]): 3.0,
                                     (0, "end", context_positions(rows[0]["input"])[2]): 3.0,
                                     (last, "start", siege): 4.0, (last, "end", siege): 4.0})
    (answer,) = head.postprocess(rows, starts, ends)
    assert answer["answer"] == "siege" and LONG_CONTEXT[answer["start"] : answer["end"]] == "siege"


def test_no_answer_wins_only_when_allowed_and_above_threshold():
    encoder = make_encoder()
    (row,) = ExtractiveQAHead().prepare(encoder, as_columns(EXAMPLES[1:2]), train=False)
    paris = position_of(row, "Paris")
    starts, ends = logits_for([row], {(0, "start", 0): 6.0, (0, "end", 0): 6.0,  # null: 12
                                      (0, "start", paris): 5.0, (0, "end", paris): 5.0})  # span: 10
    assert best_answers([row], starts, ends)[0]["answer"] == "Paris", "SQuAD v1 never answers ''"
    empty = best_answers([row], starts, ends, allow_no_answer=True)[0]
    assert empty == {"answer": "", "score": 12.0, "start": 0, "end": 0}
    kept = best_answers([row], starts, ends, allow_no_answer=True, no_answer_threshold=2.5)[0]
    assert kept["answer"] == "Paris"


def test_compute_metrics_scores_post_processed_answers():
    encoder = make_encoder()
    head = ExtractiveQAHead()
    rows = head.prepare(encoder, as_columns(EXAMPLES[:2]), train=False)
    shakespeare, paris = position_of(rows[0], "Shakespeare"), position_of(rows[1], "Paris")
    picks = {(0, "start", shakespeare): 5.0, (0, "end", shakespeare): 5.0,  # half of "William Shakespeare"
             (1, "start", paris): 5.0, (1, "end", paris): 5.0}  # exactly "Paris"
    starts, ends = logits_for(rows, picks)
    metrics = head.compute_metrics(rows, {"start_logits": starts, "end_logits": ends}, None)
    assert metrics["exact_match"] == pytest.approx(50.0)
    assert metrics["f1"] == pytest.approx((200 / 3 + 100) / 2)  # token F1 of 2/3 on the first


# ----- learning ----------------------------------------------------------------------------------


def test_head_config_rebuilds_it_and_width_follows_the_encoder():
    head = ExtractiveQAHead(stride=8, allow_no_answer=True, no_answer_threshold=1.5, max_length=20)
    assert ExtractiveQAHead(**head.config()).config() == head.config()
    head.build(make_encoder(dim=16))
    assert head.qa_outputs.in_features == 16


@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from threads, and on a shared CPU extra threads only spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_model_learns_the_training_spans_including_a_windowed_context(one_thread):
    torch.manual_seed(0)
    encoder = make_encoder(max_length=20)
    head = built_head(encoder, stride=4)
    rows = head.prepare(encoder, as_columns(EXAMPLES), train=True)
    assert len(rows) > len(EXAMPLES), "the long context must be windowed"
    batch = head.collate(encoder, rows)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-3)
    for _ in range(120):
        loss = head(encoder(batch), batch)["losses"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05

    predicted = predict_answers(encoder, head, [e["question"] for e in EXAMPLES], [e["context"] for e in EXAMPLES],
                                batch_size=3)
    for example, answer in zip(EXAMPLES, predicted):
        expected_start = example["answers"]["answer_start"][0]
        assert answer["answer"] == example["answers"]["text"][0]
        assert answer["start"] == expected_start, "the right occurrence, not just the right word"
        assert answer["end"] == expected_start + len(answer["answer"])
    assert encoder.training and head.training, "predict_answers restores train mode"


# ----- every real text encoder kind (those present in tests/tiny) --------------------------------


def text_builders() -> dict:
    builders = {}
    for module in ("tests.tiny.transformers", "tests.tiny.static"):
        try:
            builders.update(importlib.import_module(module).BUILDERS)
        except ModuleNotFoundError:  # a kind still being written
            pass
    return builders


TEXT_BUILDERS = text_builders()


@pytest.mark.parametrize("name", sorted(TEXT_BUILDERS))
def test_windows_and_answers_map_back_on_every_text_encoder(name, tmp_path):
    encoder, _ = TEXT_BUILDERS[name](tmp_path)
    context = "the movie was good , really good ! " * 6 + "hello world is not bad"
    example = squad("was the film good?", context, "hello world")
    head = built_head(encoder, stride=4, max_length=24)
    rows = head.prepare(encoder, as_columns([example]), train=True)
    assert len(rows) > 1 and all(len(r["input"]) <= 24 for r in rows)
    covered = {r["input"].offsets[p] for r in rows for p in context_positions(r["input"])}
    assert covered == set(encoder.tokenize([context])[0].offsets), "every context token is in some window"

    row = next(r for r in rows if r["start_position"] != null_position(r["input"]))
    i = row["row_index"]
    picks = {(i, "start", row["start_position"]): 5.0, (i, "end", row["end_position"]): 5.0}
    starts, ends = logits_for(rows, picks)
    (answer,) = head.postprocess(rows, starts, ends)
    assert (answer["answer"], answer["start"]) == ("hello world", context.index("hello world"))

    batch = head.collate(encoder, rows)
    out = head(encoder(batch), batch)
    assert torch.isfinite(out["losses"].mean()) and out["start_logits"].shape == batch["context_mask"].shape

    if encoder.num_special_tokens(pair=True) == 0:  # static vectors: the question holds the null slot
        with pytest.raises(ValueError, match="question has no tokens"):
            head.prepare(encoder, as_columns([{**example, "question": ""}]), train=False)
