"""Dataset loading: each local format on small files written here, label names, errors, offline."""
from __future__ import annotations

import json
import time
from pathlib import Path

import datasets
import pytest

import nlptl.data as data
from nlptl.data import (
    DatasetUnavailableError, LocalCopyMissing, dataset_fingerprint, list_datasets, load_dataset, load_files,
    split_by_article,
)
from nlptl.data.hub import sst2_from_hub, trec_from_hub

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def offline_without_data_dir(no_network, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def label_names(ds: datasets.Dataset) -> list[str]:
    return ds.features["label"].int2str(ds["label"])


# ----- the named datasets from local copies ---------------------------------------------------------

def test_sst2_tsv_with_header_keeps_quotes_and_names(tmp_path):
    write(tmp_path / "sst2/train.tsv", 'sentence\tlabel\nhe said "great" \t1\na dull , "flat" film\t0\n')
    write(tmp_path / "sst2/validation.tsv", "sentence\tlabel\nfine\t1\n")
    ds = load_dataset("sst2", data_dir=tmp_path)
    assert list(ds) == ["train", "validation"]
    assert ds["train"].features["label"].names == ["negative", "positive"]
    assert ds["train"]["text"] == ['he said "great" ', 'a dull , "flat" film']  # TSV quotes are literal
    assert label_names(ds["train"]) == ["positive", "negative"]
    assert load_dataset("sst2", split="validation", data_dir=tmp_path).num_rows == 1


def test_ag_news_tsv_without_header_keeps_label_names(tmp_path):
    write(tmp_path / "ag_news/train_10k.tsv", "Stocks fall\tBusiness\nA new chip\tSci/Tech\nCup final\tSports\n")
    write(tmp_path / "ag_news/test.tsv", "Rover lands\tSci/Tech\nTalks stall\tWorld\n")
    ds = load_dataset("ag_news", data_dir=tmp_path)
    assert ds["train"].features["label"].names == ["World", "Sports", "Business", "Sci/Tech"]  # the hub's order
    assert label_names(ds["train"]) == ["Business", "Sci/Tech", "Sports"]
    assert ds["test"]["label"] == [3, 0]


def test_evaluation_label_never_seen_names_label_and_file(tmp_path):
    write(tmp_path / "ag_news/train_10k.tsv", "Stocks fall\tBusiness\n")
    test_file = write(tmp_path / "ag_news/test.tsv", "Vote today\tPolitics\n")
    with pytest.raises(ValueError, match=r"'Politics'") as err:
        load_dataset("ag_news", data_dir=tmp_path)
    assert str(test_file) in str(err.value)


BLITZER = """<reviews>
<review>
<unique_id>
x1
</unique_id>
<rating>
{rating}
</rating>
<title>
A & B <3
</title>
<review_text>
{text}
</review_text>
</review>
</reviews>
"""


def test_blitzer_blocks_with_bare_ampersand_and_angle_bracket(tmp_path):
    folder = tmp_path / "amazon_multidomain/kitchen"
    positive = 'Salt & pepper < 5 dollars, "great" &quot;buy&quot;'
    write(folder / "positive.review", BLITZER.format(rating="5.0", text=positive))
    write(folder / "negative.review", BLITZER.format(rating="1.0", text="Broke <b>twice</b>\n\nAT&T would not help"))
    ds = load_dataset("amazon_reviews", data_dir=tmp_path, domain="kitchen", split="train")
    assert ds.features["label"].names == ["negative", "positive"]
    by_label = dict(zip(label_names(ds), ds["text"]))
    assert by_label["positive"] == 'Salt & pepper < 5 dollars, "great" "buy"'
    assert by_label["negative"] == "Broke <b>twice</b>\n\nAT&T would not help"
    with pytest.raises(ValueError, match="domain= one of"):
        load_dataset("amazon_reviews", data_dir=tmp_path, domain="toys")
    with pytest.raises(LocalCopyMissing, match="books"):
        load_dataset("amazon_reviews", data_dir=tmp_path, domain="books")


def squad_json(n_articles: int) -> dict:
    articles = []
    for a in range(n_articles):
        context = f"Article {a} is about topic {a}."
        qas = [{"id": f"a{a}q{q}", "question": f"What is article {a} about ({q})?", "evidences": ["ignored"],
                "answers": [{"text": f"topic {a}", "answer_start": context.index("topic")}]} for q in range(a + 1)]
        articles.append({"title": f"Title_{a}", "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "1.1", "data": articles}


def test_squad_json_gives_squad_columns_without_evidences(tmp_path):
    write(tmp_path / "squad_v1_subset/dev_subset.json", json.dumps(squad_json(3)))
    ds = load_dataset("squad", data_dir=tmp_path, split="validation")
    assert ds.column_names == ["id", "title", "context", "question", "answers"]
    assert ds.num_rows == 1 + 2 + 3
    row = ds[0]
    assert row["answers"] == {"text": ["topic 0"], "answer_start": [19]}  # len("Article 0 is about ")
    assert row["context"][19:19 + len("topic 0")] == "topic 0"


def test_split_by_article_shares_no_title_or_context(tmp_path):
    path = write(tmp_path / "dev.json", json.dumps(squad_json(5)))
    ds = data.read_squad_json(path)
    train, evaluation = split_by_article(ds, eval_fraction=0.4, seed=3)
    assert not set(train["title"]) & set(evaluation["title"])
    assert not set(train["context"]) & set(evaluation["context"])
    assert len(set(evaluation["title"])) == 2  # 40% of 5 articles
    assert sorted(list(train["id"]) + list(evaluation["id"])) == sorted(ds["id"])
    _, again = split_by_article(ds.shuffle(seed=1), eval_fraction=0.4, seed=3)  # row order does not matter
    assert set(again["title"]) == set(evaluation["title"])
    with pytest.raises(ValueError, match="eval_fraction"):
        split_by_article(ds, eval_fraction=1.0)


# ----- your own files ------------------------------------------------------------------------------

def test_csv_json_and_jsonl_with_text_pairs(tmp_path):
    rows = [{"premise": "A man, sleeping", "hypothesis": "he naps", "gold": "entail"},
            {"premise": "Two dogs", "hypothesis": "cats\nrun", "gold": "contradict"}]
    write(tmp_path / "train.csv", 'premise,hypothesis,gold\n"A man, sleeping",he naps,entail\n'
                                  'Two dogs,"cats\nrun",contradict\n')
    write(tmp_path / "train.json", json.dumps(rows))
    write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    for name in ("train.csv", "train.json", "train.jsonl"):
        ds = load_files(train_file=tmp_path / name, text_column="premise", text_pair_column="hypothesis",
                        label_column="gold")["train"]
        assert ds.column_names == ["text", "text_pair", "label"], name
        assert ds["text"] == ["A man, sleeping", "Two dogs"] and ds["text_pair"] == ["he naps", "cats\nrun"], name
        assert label_names(ds) == ["entail", "contradict"], name


def test_load_files_takes_label_names_from_training_and_rejects_new_ones(tmp_path):
    train = write(tmp_path / "train.tsv", "text\tlabel\ngood\tpos\nbad\tneg\n")
    ok = write(tmp_path / "ok.tsv", "text\tlabel\nmeh\tneg\n")
    bad = write(tmp_path / "bad.tsv", "text\tlabel\nmeh\tneutral\n")
    ds = load_files(train_file=train, eval_file=ok)
    assert ds["validation"].features["label"].names == ["neg", "pos"]
    assert label_names(ds["validation"]) == ["neg"]
    with pytest.raises(ValueError, match="'neutral'") as err:
        load_files(train_file=train, eval_file=bad)
    assert str(bad) in str(err.value)


def test_missing_column_lists_the_columns_present(tmp_path):
    path = write(tmp_path / "train.tsv", "sentence\tsentiment\nok\t1\n")
    with pytest.raises(ValueError, match=r"'text' not found.*\['sentence', 'sentiment'\]") as err:
        load_files(train_file=path)
    assert "text_column=" in str(err.value) and "--text-column" in str(err.value)  # the fix, in both spellings


def test_file_that_is_not_its_extensions_format(tmp_path):
    with pytest.raises(ValueError, match=r"says JSON.*\.tsv"):
        load_files(train_file=write(tmp_path / "train.json", "text\tlabel\ngood\t1\n"))
    with pytest.raises(ValueError, match=r"\.jsonl"):
        load_files(train_file=write(tmp_path / "lines.json", '{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n'))
    with pytest.raises(ValueError, match="one column.*','"):
        load_files(train_file=write(tmp_path / "comma.tsv", "text,label\ngood,1\n"))
    with pytest.raises(ValueError, match="JSON value"):
        load_files(train_file=write(tmp_path / "json.tsv", '{"text": "a", "label": 1}\n'))
    with pytest.raises(ValueError, match=r"unsupported extension '\.xlsx'.*\.tsv"):
        load_files(train_file=write(tmp_path / "train.xlsx", "x"))
    with pytest.raises(ValueError, match="line 3 has 3 fields"):
        load_files(train_file=write(tmp_path / "ragged.tsv", "text\tlabel\nok\t1\nbad\t0\textra\n"))


# ----- names, options, offline ---------------------------------------------------------------------

def test_unknown_name_option_and_split_are_explained(tmp_path):
    assert {"sst2", "ag_news", "imdb", "trec", "squad", "amazon_reviews"} <= set(list_datasets())
    with pytest.raises(ValueError, match=r"unknown dataset 'sst-2'.*'sst2'"):
        load_dataset("sst-2")
    with pytest.raises(TypeError, match="does not take option domain"):
        load_dataset("sst2", domain="books")
    write(tmp_path / "sst2/train.tsv", "sentence\tlabel\nok\t1\n")
    with pytest.raises(ValueError, match=r"no split 'test'.*\['train'\]"):
        load_dataset("sst2", split="test", data_dir=tmp_path)


def test_explicit_data_dir_without_the_files_lists_the_layout(tmp_path):
    with pytest.raises(LocalCopyMissing, match="imdb/train.tsv"):
        load_dataset("imdb", data_dir=tmp_path)


def test_offline_without_local_copy_fails_fast_and_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))  # an env folder without sst2 falls back to the hub
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # flag set after import: nothing to try
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError, match="offline") as err:
        load_dataset("sst2")
    assert time.perf_counter() - start < 5
    for hint in ("--data-dir", "NLPTL_DATA_DIR", "--train-file", "sst2/train.tsv"):
        assert hint in str(err.value)


def test_unreachable_hub_is_reported_without_retrying(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with pytest.raises(DatasetUnavailableError, match="could not be reached"):
        load_dataset("squad")  # the probe meets the blocked socket and gives up at once


def test_hub_schemas_map_to_the_same_columns():
    sst2 = datasets.DatasetDict({split: datasets.Dataset.from_dict(
        {"idx": [0], "sentence": ["fine"], "label": [1]},
        features=datasets.Features({"idx": datasets.Value("int32"), "sentence": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["negative", "positive"])}))
        for split in ("train", "validation", "test")})
    mapped = sst2_from_hub(sst2)
    assert list(mapped) == ["train", "validation"] and mapped["train"].column_names == ["text", "label"]
    trec = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"text": ["Where?"], "coarse_label": [4], "fine_label": [32]})})
    assert trec_from_hub(trec, label="fine")["train"]["label"] == [32]
    assert trec_from_hub(trec)["train"].column_names == ["text", "label"]


def test_trec_local_coarse_and_fine(tmp_path):
    write(tmp_path / "trec/train.tsv", "text\tlabel\nWhere is Rome ?\tLOC:city\nWho ?\tHUM:ind\n")
    coarse = load_dataset("trec", data_dir=tmp_path, split="train")
    assert label_names(coarse) == ["LOC", "HUM"]
    fine = load_dataset("trec", data_dir=tmp_path, split="train", label="fine")
    assert fine.features["label"].names == ["HUM:ind", "LOC:city"]


def test_fingerprint_is_stable_and_sees_content_and_label_names(tmp_path):
    write(tmp_path / "imdb/train.tsv", "text\tlabel\ngreat\tpos\nawful\tneg\n")
    first, second = load_dataset("imdb", data_dir=tmp_path), load_dataset("imdb", data_dir=tmp_path)
    assert dataset_fingerprint(first) == dataset_fingerprint(second)
    assert len(dataset_fingerprint(first)) == 64
    changed = first["train"].map(lambda row: {"text": row["text"].upper()})
    assert dataset_fingerprint(changed) != dataset_fingerprint(first["train"])
    renamed = first["train"].cast_column("label", datasets.ClassLabel(names=["bad", "good"]))
    assert dataset_fingerprint(renamed) != dataset_fingerprint(first["train"])


# ----- the shared evaluation copies, when this checkout has them -------------------------------------

@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/data beside the checkout")
def test_shared_copies_load_with_their_documented_sizes():
    sizes = {name: {split: ds.num_rows for split, ds in load_dataset(name, data_dir=SHARED).items()}
             for name in ("sst2", "ag_news", "squad")}
    assert sizes == {"sst2": {"train": 67349, "validation": 872}, "ag_news": {"train": 10001, "test": 7600},
                     "squad": {"validation": 501}}
    for domain in ("books", "dvd", "electronics", "kitchen"):
        reviews = load_dataset("amazon_reviews", data_dir=SHARED, domain=domain, split="train")
        assert sorted(label_names(reviews).count(n) for n in ("negative", "positive")) == [1000, 1000]
    squad = load_dataset("squad", data_dir=SHARED, split="validation")
    assert len(set(squad["title"])) == 12


def test_tsv_written_by_the_csv_module_with_quoted_newlines_loads(tmp_path):
    import csv

    path = tmp_path / "train.tsv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerows([["text", "label"], ["first line\nsecond line", "pos"], ['she said "fine"\tand left', "neg"],
                          ["plain", "pos"]])
    data = load_files(train_file=str(path))["train"]
    assert data["text"] == ["first line\nsecond line", 'she said "fine"\tand left', "plain"]


def test_glue_style_tsv_keeps_its_literal_quotes(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text('sentence\tlabel\n"a quoted start\tpos\nit \'s "fine" .\tneg\n', encoding="utf-8")
    data = load_files(train_file=str(path), text_column="sentence")["train"]
    assert data["text"] == ['"a quoted start', 'it \'s "fine" .']


def test_tsv_broken_both_ways_names_both_readings(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text('text\tlabel\nok\tpos\n"open quote\tneg\textra\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.tsv: read unquoted \(as GLUE-style TSVs are\), line 3 has 3 fields, "
                                         r"expected 2 .*read with quoted fields .*csv module and pandas"):
        load_files(train_file=str(path))
