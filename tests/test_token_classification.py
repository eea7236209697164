"""Token classification: sub-word alignment, windows, spans, save/reload, training, and the CoNLL reader."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import nlptl
from nlptl.data.conll import _read_conll, detect_scheme, load_tagged_files, read_tagged_file
from nlptl.heads import head_class
from nlptl.heads import token_decoding as td
from nlptl.heads.token_classification import TokenClassificationHead, _row_logits, tag_names
from tests.tiny import all_builders

BUILDERS = all_builders()
BERT_TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
# Words the tiny BERT vocabulary splits into several pieces: film+##ing, good+##ly, world+##s.
SPLIT_WORDS = ["filming", "goodly", "worlds"]


def bert_task(n: int = 48, seed: int = 0) -> dict[str, list]:
    """'hello world(s)' is a person, 'the movie' / 'filming' a location; the rest is O."""
    rng = random.Random(seed)
    fillers = ["the", "was", "good", "really", "a", "tiny", "is", "not", "bad", "about", "nothing"]
    tokens, tags = [], []
    for _ in range(n):
        words, labels = [], []
        for _ in range(rng.randint(2, 4)):
            choice = rng.random()
            if choice < 0.25:
                words += ["hello", rng.choice(["world", "worlds"])]
                labels += ["B-PER", "I-PER"]
            elif choice < 0.45:
                words += [rng.choice(["movie", "filming"])]
                labels += ["B-LOC"]
            else:
                words += [rng.choice(fillers)]
                labels += ["O"]
        tokens.append(words)
        tags.append(labels)
    return {"tokens": tokens, "tags": tags}


def glove_task(n: int = 48, seed: int = 0) -> dict[str, list]:
    """Animals are ANI entities ('brown fox' two words), places LOC, in words the tiny vectors know."""
    rng = random.Random(seed)
    fillers = ["the", "sat", "on", "and", "in", "people", "eat", "bread", "with", "soup", "play"]
    tokens, tags = [], []
    for _ in range(n):
        words, labels = [], []
        for _ in range(rng.randint(3, 6)):
            choice = rng.random()
            if choice < 0.2:
                words += [rng.choice(["cat", "dog", "bird"])]
                labels += ["B-ANI"]
            elif choice < 0.3:
                words += ["brown", "fox"]
                labels += ["B-ANI", "I-ANI"]
            elif choice < 0.45:
                words += [rng.choice(["river", "park", "garden"])]
                labels += ["B-LOC"]
            else:
                words += [rng.choice(fillers)]
                labels += ["O"]
        tokens.append(words)
        tags.append(labels)
    return {"tokens": tokens, "tags": tags}


def bert_model(tmp_path, **options) -> nlptl.TransferModel:
    torch.manual_seed(0)
    encoder, _ = BUILDERS["bert"](tmp_path)
    return nlptl.TransferModel(encoder, TokenClassificationHead(labels=BERT_TAGS, **options))


def glove_model(tmp_path, **options) -> nlptl.TransferModel:
    torch.manual_seed(0)
    encoder, _ = BUILDERS["glove"](tmp_path)
    data = glove_task()
    return nlptl.TransferModel(encoder, TokenClassificationHead(labels=tag_names(data["tags"]), **options))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a CPU shared with other jobs, two threads spin-waiting make LSTM steps 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained_bert(tmp_path_factory, one_thread):
    model = bert_model(tmp_path_factory.mktemp("bert"))
    data = bert_task()
    result = nlptl.fit(model, data, bert_task(24, seed=1), strategy="full", epochs=12, batch_size=8,
                       learning_rate=2e-3, head_learning_rate=1e-2, warmup_ratio=0.0, progress=False)
    return model, result


def test_registered_under_its_task_name():
    assert head_class("token-classification") is TokenClassificationHead


def test_fine_tuning_without_a_learning_rate_uses_the_heads_encoder_rate(tmp_path):
    """Per-word tags train a transformer at 1e-4 by default (5e-5 for pooled labels); the head keeps 1e-3."""
    model = bert_model(tmp_path)
    result = nlptl.fit(model, bert_task(8), strategy="full", epochs=1, batch_size=8, progress=False)
    assert (result.extra["config"]["learning_rate"], result.extra["config"]["head_learning_rate"]) == (1e-4, 1e-3)


def test_first_piece_alignment_is_exact_on_words_split_into_several_pieces(tmp_path):
    model = bert_model(tmp_path)
    encoder = model.encoder
    words = ["the", "filming", "was", "goodly", "hello", "worlds"]
    tags = ["O", "B-LOC", "O", "O", "B-PER", "I-PER"]
    pieces = encoder.tokenize([" ".join(words)])[0]
    assert len(pieces.ids) == len(words) + len(SPLIT_WORDS)  # each of the three split words has two pieces
    [row] = model.head.prepare(encoder, {"tokens": [words], "tags": [tags]}, train=True)
    # [CLS] the film ##ing was good ##ly hello world ##s [SEP]
    expected = [-100, 0, 1, -100, 0, 0, -100, 3, 4, -100, -100]
    assert row["labels"].tolist() == expected
    assert row["input"].extras["word_at"].tolist() == [-1, 0, 1, -1, 2, 3, -1, 4, 5, -1, -1]

    every = TokenClassificationHead(labels=BERT_TAGS, label_all_pieces=True)
    every.build(encoder)
    [row] = every.prepare(encoder, {"tokens": [words], "tags": [tags]}, train=True)
    # later pieces train too; a B- word continues as I- on its later pieces
    assert row["labels"].tolist() == [-100, 0, 1, 2, 0, 0, 0, 3, 4, 4, -100]


def test_windows_with_a_stride_recover_the_one_pass_tags(tmp_path):
    # Static vectors have no context, so each word's scores must be identical however the sentence is windowed.
    encoder, _ = BUILDERS["glove"](tmp_path)
    data = glove_task(6)
    whole = TokenClassificationHead(labels=tag_names(data["tags"]))
    windowed = TokenClassificationHead(labels=tag_names(data["tags"]), max_length=4, stride=2)
    models = {"whole": nlptl.TransferModel(encoder, whole), "windowed": nlptl.TransferModel(encoder, windowed)}
    windowed.load_state_dict(whole.state_dict())
    n_words = [len(t) for t in data["tokens"]]
    results = {}
    for name, model in models.items():
        rows = model.head.prepare(encoder, data, train=False)
        results[name] = (len(rows), model.head.word_log_probs(rows, _row_logits(model, model.head, rows, 8), n_words))
    assert results["whole"][0] == 6 and results["windowed"][0] > 6  # longer sentences took several windows
    for one_pass, windows in zip(results["whole"][1], results["windowed"][1]):
        np.testing.assert_allclose(one_pass, windows, atol=1e-5)
        assert (one_pass.argmax(-1) == windows.argmax(-1)).all()


def test_each_word_is_read_from_the_window_where_it_has_most_context(tmp_path):
    encoder, _ = BUILDERS["glove"](tmp_path)
    head = TokenClassificationHead(labels=["O", "B-X", "I-X"], max_length=4, stride=2)
    head.build(encoder)
    words = ["the", "cat", "sat", "on", "the", "mat", "and", "the", "dog"]
    rows = head.prepare(encoder, {"tokens": [words], "tags": [["O"] * 9]}, train=False)
    assert len(rows) == 4  # pieces [0, 4), [2, 6), [4, 8), [6, 9)
    # each row's logits carry its own index, so the window a word was read from can be read back
    logits = [np.tile([0.0, float(r["row_index"]), 0.0], (len(r["input"]), 1)) for r in rows]
    log_probs = head.word_log_probs(rows, logits, [9])[0]
    chosen = np.rint(log_probs[:, 1] - log_probs[:, 0]).astype(int).tolist()
    assert chosen == [0, 0, 0, 1, 1, 2, 2, 3, 3]


def test_training_learns_a_tiny_tagged_set_with_bert(trained_bert):
    model, result = trained_bert
    assert result.metrics["token_accuracy"] >= 0.9
    assert result.metrics["f1"] >= 0.8 and "f1_PER" in result.metrics and "argmax_f1" in result.metrics


def test_predicted_spans_round_trip_through_character_offsets(trained_bert):
    model, _ = trained_bert
    texts = ["hello world was good  the movie", "  really   hello worlds about filming "]  # odd spacing on purpose
    predictions = model.head.predict(model, texts)
    assert [[(s["entity"], s["text"]) for s in p] for p in predictions] == [
        [("PER", "hello world"), ("LOC", "movie")], [("PER", "hello worlds"), ("LOC", "filming")]]
    for text, spans in zip(texts, predictions):
        for span in spans:
            assert text[span["start"] : span["end"]] == span["text"] and 0 < span["score"] <= 1


def test_save_and_reload_give_identical_tags(trained_bert, tmp_path):
    model, _ = trained_bert
    model.save_pretrained(tmp_path / "ner")
    loaded = nlptl.TransferModel.from_pretrained(tmp_path / "ner")
    assert loaded.labels == BERT_TAGS and loaded.head.config() == model.head.config()
    data = bert_task(16, seed=3)
    texts = [" ".join(words) for words in data["tokens"]]
    assert loaded.head.predict(loaded, texts) == model.head.predict(model, texts)
    assert nlptl.evaluate(loaded, data) == nlptl.evaluate(model, data)


def test_glove_bilstm_learns_a_tiny_tagged_set(tmp_path):
    model = glove_model(tmp_path, lstm_hidden=16, dropout=0.0)
    data = glove_task()
    result = nlptl.fit(model, data, glove_task(24, seed=1), strategy="feature_extraction", epochs=25, batch_size=8,
                       head_learning_rate=3e-2, warmup_ratio=0.0, progress=False)
    assert result.metrics["token_accuracy"] >= 0.9


@pytest.mark.parametrize("strategy", ["feature_extraction", "top_k", "full"])
def test_every_strategy_runs_and_lowers_the_loss(strategy, tmp_path):
    model = bert_model(tmp_path)
    data = bert_task(24)
    result = nlptl.fit(model, data, data, strategy=strategy, top_k=1, epochs=4, batch_size=8, learning_rate=1e-3,
                       head_learning_rate=1e-2, warmup_ratio=0.0, progress=False, output_dir=str(tmp_path / "run"))
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    log = (tmp_path / "run" / "log.jsonl").read_text()
    if strategy != "full":
        assert '"mode": null' not in log  # frozen features or freeze-line states were cached


def test_constrained_decoding_never_starts_an_entity_with_i():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    # argmax would give O I-PER B-LOC I-PER: two invalid I- tags
    log_probs = np.log(np.array([[0.9, 0.05, 0.02, 0.02, 0.01], [0.4, 0.1, 0.45, 0.03, 0.02],
                                 [0.1, 0.1, 0.1, 0.6, 0.1], [0.1, 0.1, 0.5, 0.1, 0.2]]))
    assert [labels[i] for i in td.decode(log_probs, labels, constrained=False)] == ["O", "I-PER", "B-LOC", "I-PER"]
    assert [labels[i] for i in td.decode(log_probs, labels, constrained=True)] == ["O", "O", "B-LOC", "I-LOC"]


# ----- the CoNLL / JSON-lines reader ------------------------------------------------------------


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_conll_reader_takes_first_and_last_columns_and_skips_docstart(tmp_path):
    path = write(tmp_path / "a.conll", "-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                 "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n")
    data = read_tagged_file(path)
    assert data["tokens"] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert data["tags"] == [["B-ORG", "O"], ["B-PER", "I-PER"]]


def test_iob1_and_bioes_are_converted_to_iob2(tmp_path):
    iob1 = write(tmp_path / "iob1.conll", "Peter I-PER\nBlackburn I-PER\nand O\nJohn I-PER\nMary B-PER\n")
    assert detect_scheme(_read_conll(iob1)) == "IOB1"
    assert read_tagged_file(iob1)["tags"] == [["B-PER", "I-PER", "O", "B-PER", "B-PER"]]
    bioes = write(tmp_path / "b.conll", "New B-LOC\nYork E-LOC\nis O\nbig O\nParis S-LOC\nJo B-PER\nAnn I-PER\n"
                  "Lee E-PER\n")
    assert read_tagged_file(bioes)["tags"] == [["B-LOC", "I-LOC", "O", "O", "B-LOC", "B-PER", "I-PER", "I-PER"]]
    jsonl = write(tmp_path / "c.jsonl", '{"tokens": ["Paris", "is"], "tags": ["S-LOC", "O"]}\n')
    assert read_tagged_file(jsonl)["tags"] == [["B-LOC", "O"]]


def test_conll_reader_errors_name_the_file_and_line(tmp_path):
    no_tag = write(tmp_path / "bad.conll", "EU B-ORG\n\nrejects\n")
    with pytest.raises(ValueError, match=r"bad\.conll:3: .*'rejects' has a token but no tag"):
        read_tagged_file(no_tag)
    unknown = write(tmp_path / "odd.conll", "EU B-ORG\nrejects X-FOO\n")
    with pytest.raises(ValueError, match=r"odd\.conll:2: tag 'X-FOO' is not in the IOB2 scheme"):
        read_tagged_file(unknown)
    with pytest.raises(ValueError, match="unknown tag scheme 'BILOU2'"):
        read_tagged_file(no_tag, scheme="BILOU2")
    with pytest.raises(ValueError, match=r"odd2\.conll:2: 'I-PER' does not continue"):
        read_tagged_file(write(tmp_path / "odd2.conll", "EU B-ORG\nPeter I-PER\n"), scheme="IOB2")
    train = write(tmp_path / "train.conll", "EU B-ORG\nrejects O\n")
    dev = write(tmp_path / "dev.conll", "Peter B-PER\n\nEU B-ORG\nsaid O\nParis B-LOC\n")
    with pytest.raises(ValueError, match=r"dev\.conll:1: tag 'B-PER' .*never occurs in the training file"):
        load_tagged_files({"train": train, "validation": dev})


def test_labels_follow_the_padded_length_under_pad_to_multiple_of(tmp_path):
    model = bert_model(tmp_path)
    model.encoder.pad_to_multiple_of = 8
    rows = model.head.prepare(model.encoder, bert_task(4), train=True)
    batch = model.head.collate(model.encoder, rows)
    assert batch["input_ids"].shape[1] % 8 == 0
    assert batch["labels"].shape == batch["input_ids"].shape
    result = nlptl.fit(model, bert_task(8), strategy="full", epochs=1, batch_size=4, progress=False)
    assert np.isfinite(result.history[-1]["train_loss"])
