"""Recipe pieces: tables measured over several runs join into one honest table; cached-state replay is exact."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import nlptl

pytest.importorskip("matplotlib")
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def load_recipe(name: str = "domain_adaptation"):
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_part(directory: Path, rows: dict, seconds: float, command: str) -> str:
    directory.mkdir()
    part = {"pairs": rows, "a_distance": {"books->dvd": 1.7}, "seconds": seconds,
            "settings": {"command": command, "seed": 0, "encoder": "minilm", "max_length": 128, "fit": {},
                         "dapt": {"texts": 2000}}}
    (directory / "domain_adaptation.json").write_text(json.dumps(part))
    return str(directory)


def test_merging_a_merged_table_keeps_every_run_and_later_rows_replace_earlier_ones(tmp_path):
    recipe = load_recipe()
    a = write_part(tmp_path / "a", {"books->dvd": {"source_only": 0.75, "dapt": 0.70}}, 100.0, "run a")
    b = write_part(tmp_path / "b", {"books->dvd": {"mmd": 0.74}}, 50.0, "run b")
    first = tmp_path / "first"
    first.mkdir()
    recipe.merge([a, b], ["source_only", "mmd", "dapt"], first)
    c = write_part(tmp_path / "c", {"books->dvd": {"dapt": 0.76}}, 20.0, "run c")
    final = tmp_path / "final"
    final.mkdir()
    recipe.merge([str(first), c], ["source_only", "mmd", "dapt"], final)

    merged = json.loads((final / "domain_adaptation.json").read_text())
    assert [run["command"] for run in merged["runs"]] == ["run a", "run b", "run c"]
    assert merged["pairs"]["books->dvd"] == {"source_only": 0.75, "dapt": 0.76, "mmd": 0.74}
    report = (final / "report.md").read_text()
    assert "| books->dvd | 1.70 | 75.0 | 74.0* | 76.0 |" in report
    assert (final / "domain_adaptation.png").exists()


def test_domain_adaptation_resume_refuses_a_table_made_with_another_model_and_leaves_it_as_it_was(tmp_path):
    recipe = load_recipe()
    out = tmp_path / "table"
    write_part(out, {"books->dvd": {"source_only": 0.70}}, 60.0, "run top")
    stored = json.loads((out / "domain_adaptation.json").read_text())
    stored["settings"].update(model="top_layer", fit=recipe.TOP_LAYER_FIT)
    stored["settings"]["dapt"] = {"epochs": 1, "texts": 2000, "train_top_k": 1, "learning_rate": 1e-4, "batch_size": 16}
    (out / "domain_adaptation.json").write_text(json.dumps(stored))
    before = (out / "domain_adaptation.json").read_bytes()
    with pytest.raises(SystemExit, match="model='top_layer'.*model='adapter'"):
        recipe.main(["--data-dir", str(tmp_path / "no-data"), "--pairs", "books->dvd", "--methods", "source_only",
                     "--output", str(out), "--resume"])  # the default model is the adapter
    assert (out / "domain_adaptation.json").read_bytes() == before

    stored["settings"].update(model="adapter", fit=recipe.FIT, limit=300)  # a --limit smoke test's table
    (out / "domain_adaptation.json").write_text(json.dumps(stored))
    with pytest.raises(SystemExit, match="limit=300.*limit=None"):
        recipe.main(["--data-dir", str(tmp_path / "no-data"), "--pairs", "books->dvd", "--methods", "source_only",
                     "--output", str(out), "--resume"])


@pytest.mark.parametrize("recipe_name, table", [("domain_adaptation", "domain_adaptation.json"),
                                                 ("few_shot", "few_shot.json")])
def test_a_rerun_refuses_to_replace_an_earlier_table_unless_told_how(tmp_path, recipe_name, table):
    recipe = load_recipe(recipe_name)
    out = tmp_path / "table"
    out.mkdir()
    (out / table).write_text('{"hours": "of measurements"}')
    before = (out / table).read_bytes()
    args = ["--data-dir", str(tmp_path / "no-data"), "--output", str(out)]
    with pytest.raises(SystemExit, match="already holds an earlier run's results; pass --resume.*--overwrite"):
        recipe.main(args)
    with pytest.raises(SystemExit, match="pass one, not both"):
        recipe.main([*args, "--resume", "--overwrite"])
    assert (out / table).read_bytes() == before and sorted(p.name for p in out.iterdir()) == [table]
    with pytest.raises((SystemExit, FileNotFoundError), match="no-data"):  # --overwrite gets past the check
        recipe.main([*args, "--overwrite"])
    assert (out / table).read_bytes() == before  # and a run that fails before measuring anything replaces nothing


@pytest.mark.parametrize("recipe_name, flag, value", [
    ("few_shot", "--shots", "0"), ("few_shot", "--seeds", "0,x"), ("few_shot", "--compare", "setfitt"),
    ("domain_adaptation", "--limit", "0"), ("domain_adaptation", "--dapt-texts", "0")])
def test_recipes_refuse_bad_counts_seed_lists_or_peers_before_creating_their_output(tmp_path, capsys, recipe_name,
                                                                                   flag, value):
    # --compare setfitt used to be dropped without a word, --limit 0 meant "no limit", and --shots 0
    # failed after creating --output
    recipe = load_recipe(recipe_name)
    with pytest.raises(SystemExit):
        recipe.main(["--data-dir", str(tmp_path), "--output", str(tmp_path / "out"), flag, value])
    assert f"argument {flag}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def few_shot_result(seeds, settings=None) -> dict:
    return {"dataset": "sst2", "shots": 8, "seeds": seeds, "encoder": "minilm", "evaluation": "872 rows",
            "settings": settings or {"epochs": 8}, "systems": ["nlptl", "setfit"], "command": "python later",
            "per_seed": []}


def test_few_shot_resume_keeps_finished_seeds_and_refuses_other_settings(tmp_path):
    recipe = load_recipe("few_shot")
    earlier = few_shot_result([0, 1, 2], {"epochs": 8})
    earlier["command"] = "python first"
    earlier["per_seed"] = [  # seed 1 lost SetFit (its run was cut short): it must run again
        {"seed": 0, "nlptl": 0.8, "nlptl_seconds": 10.0, "nlptl_cpu_seconds": 20.0,
         "setfit": 0.7, "setfit_seconds": 100.0, "setfit_cpu_seconds": 200.0},
        {"seed": 1, "nlptl": 0.9, "nlptl_seconds": 10.0, "nlptl_cpu_seconds": 20.0}]
    path = tmp_path / "few_shot.json"
    path.write_text(json.dumps(earlier))

    result = few_shot_result([0, 1, 2, 3, 4])
    assert recipe.resumed(path, result) == {0}
    assert [row["seed"] for row in result["per_seed"]] == [0]
    assert result["nlptl"]["mean"] == 0.8 and result["setfit"]["seconds"] == 100.0
    assert result["command"] == "python first ; python later" and result["seeds"] == [0, 1, 2, 3, 4]

    with pytest.raises(SystemExit, match="settings"):
        recipe.resumed(path, few_shot_result([0, 1], {"epochs": 16}))
    assert recipe.resumed(tmp_path / "absent.json", few_shot_result([0])) == set()


@pytest.mark.parametrize("label_examples", [False, True])
def test_few_shot_label_examples_give_every_system_the_same_shots_plus_the_label_sentences(tmp_path, monkeypatch,
                                                                                          label_examples):
    import datasets

    from nlptl.fewshot.splits import Benchmark

    recipe = load_recipe("few_shot")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    pool = datasets.Dataset.from_dict({"text": ["bad film", "fine film"], "label": [0, 1]}, features=features)
    bench = Benchmark("sst2", pool, pool, ["negative", "positive"], "A {} film.",
                      {"negative": ["bad"], "positive": ["good", "great"]}, "2 rows")
    monkeypatch.setattr(recipe, "load_benchmark", lambda *a, **k: bench)
    seen = {}

    def system(name):
        def run(bench, shots, seed, args, contrastive=None):
            seen[name] = sorted(zip(shots["text"], shots["label"]))
            return 0.5, 1.0, 1.0
        return run

    monkeypatch.setattr(recipe, "setfit_system", system("setfit"))
    monkeypatch.setattr(recipe, "nlptl_system", system("nlptl"))
    recipe.main(["--data-dir", "unused", "--shots", "1", "--seeds", "0", "--compare", "setfit", "--skip-plain",
                 "--output", str(tmp_path / "out"), *(["--label-examples"] if label_examples else [])])
    extra = [("A bad film.", 0), ("A good film.", 1), ("A great film.", 1)] if label_examples else []
    assert seen["nlptl"] == seen["setfit"] == sorted([("bad film", 0), ("fine film", 1), *extra])
    settings = json.loads((tmp_path / "out" / "few_shot.json").read_text())["settings"]
    assert settings.get("label_examples", False) is label_examples


def test_few_shot_systems_take_turns_going_first_by_seed_number_when_a_run_starts_after_seed_0(tmp_path, monkeypatch):
    import datasets

    from nlptl.fewshot.splits import Benchmark

    recipe = load_recipe("few_shot")
    pool = datasets.Dataset.from_dict({"text": ["bad film", "fine film"], "label": [0, 1]})
    monkeypatch.setattr(recipe, "load_benchmark", lambda *a, **k: Benchmark(
        "sst2", pool, pool, ["negative", "positive"], "A {} film.", {}, "2 rows"))
    order = []
    monkeypatch.setattr(recipe, "setfit_system", lambda bench, shots, seed, args: order.append((seed, "setfit"))
                        or (0.5, 1.0, 1.0))
    monkeypatch.setattr(recipe, "nlptl_system", lambda bench, shots, seed, args, contrastive: order.append(
        (seed, "nlptl" if contrastive else "plain_fine_tune")) or (0.5, 1.0, 1.0))
    recipe.main(["--data-dir", "unused", "--shots", "1", "--seeds", "1,2", "--compare", "setfit",
                 "--output", str(tmp_path / "out")])
    assert order == [(1, "plain_fine_tune"), (1, "setfit"), (1, "nlptl"),
                     (2, "setfit"), (2, "nlptl"), (2, "plain_fine_tune")]


def test_top_layer_over_cached_states_matches_the_full_encoder_and_trains_only_its_top(tmp_path):
    """--model top_layer replays MiniLM's top layer on cached states: the output must be the encoder's own."""
    import torch

    from tests.tiny.transformers import SAMPLE_TEXTS, build_bert

    recipe = load_recipe()
    encoder, _ = build_bert(tmp_path)
    encoder.eval()
    texts = SAMPLE_TEXTS + ["the film was bad", "a good movie"]
    cached = recipe.freeze_line_states(encoder, texts, batch_size=4)  # two length-sorted batches
    torch.save(cached, tmp_path / "states.pt")
    rows = recipe.state_rows(torch.load(tmp_path / "states.pt", weights_only=True), len(texts))
    replay = recipe.CachedStatesEncoder(encoder, texts, rows)
    replay.eval()
    with torch.no_grad():
        expected = encoder(encoder.preprocess(texts))  # (B, L, D), padded to the longest
        got = replay(replay.collate([replay.build_inputs(t) for t in replay.tokenize(texts)]))
    assert torch.equal(got.mask, expected.mask)
    mask = expected.mask[..., None]
    torch.testing.assert_close(got.features * mask, expected.features * mask, atol=2e-3, rtol=0)  # fp16 states

    model = recipe.model_over(texts, recipe.TopLayer(encoder, rows), seed=0)
    nlptl.fit(model, {"text": texts, "label": [0, 1, 0, 1, 0, 1]}, None, **{**recipe.TOP_LAYER_FIT, "epochs": 1})
    names = {id(p): n for n, p in encoder.named_parameters()}
    top = {names[id(p)] for m in encoder.layer_groups()[-1][1] for p in m.parameters()}
    before = dict(encoder.named_parameters())  # the caller's encoder: copied, never trained
    changed = {n for n, p in model.encoder.encoder.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= top, changed - top


def write_amazon_domain(root: Path, domain: str, n: int = 8) -> None:
    """``n`` positive and ``n`` negative Blitzer-format reviews, built from the tiny BERT's words."""
    folder = root / "amazon_multidomain" / domain
    folder.mkdir(parents=True)
    for name, words in (("positive", "a really good {} film"), ("negative", "the {} movie was not good, bad")):
        blocks = "".join(f"<review>\n<review_text>\n{words.format(domain)} {i}\n</review_text>\n</review>\n"
                         for i in range(n))
        (folder / f"{name}.review").write_text(f"<reviews>\n{blocks}</reviews>\n")


def tiny_books_dvd(tmp_path: Path) -> tuple[Path, list[str]]:
    """A tiny BERT and tiny books/dvd files: (the output folder, the recipe arguments every run shares)."""
    from tests.tiny.transformers import HF_DIR, build_bert

    build_bert(tmp_path)
    for domain in ("books", "dvd"):
        write_amazon_domain(tmp_path / "data", domain)
    out = tmp_path / "table"
    return out, ["--data-dir", str(tmp_path / "data"), "--encoder", str(tmp_path / HF_DIR), "--max-length", "16",
                 "--pairs", "books->dvd", "--output", str(out)]


def test_domain_adaptation_end_to_end_and_resume_adds_its_time_to_the_tables(tmp_path):
    """The recipe's whole path on a tiny BERT and tiny Amazon files; a --resume run keeps the finished rows
    and its table's seconds are every run's together (it once kept only the last run's)."""
    recipe = load_recipe()
    out, common = tiny_books_dvd(tmp_path)
    recipe.main([*common, "--methods", "source_only"])
    first = json.loads((out / "domain_adaptation.json").read_text())
    accuracy = first["pairs"]["books->dvd"]["source_only"]
    assert 0.0 <= accuracy <= 1.0 and "books->dvd" in first["a_distance"]

    first["seconds"] = 1000.0  # as if the first run had taken 1,000 s
    (out / "domain_adaptation.json").write_text(json.dumps(first))
    recipe.main([*common, "--methods", "source_only,coral", "--resume"])
    resumed = json.loads((out / "domain_adaptation.json").read_text())
    assert resumed["pairs"]["books->dvd"]["source_only"] == accuracy  # kept, not rerun
    assert 0.0 <= resumed["pairs"]["books->dvd"]["coral"] <= 1.0
    assert 1000.0 < resumed["seconds"] < 1000.0 + 300
    assert "| books->dvd |" in (out / "report.md").read_text()


def test_domain_adaptation_ranked_feature_layer_reads_the_layer_ranked_on_the_source_labels(tmp_path):
    """--feature-layer ranked: each pair's features come from the layer LogME ranks best on its *source*
    domain's labels, recorded in the table; a table made with the other setting is never resumed."""
    from nlptl.adaptation import domain_distance
    recipe = load_recipe()
    out, common = tiny_books_dvd(tmp_path)
    with pytest.raises(SystemExit, match="without dapt"):
        recipe.main([*common, "--methods", "source_only,dapt", "--feature-layer", "ranked"])
    assert not out.exists()

    recipe.main([*common, "--methods", "source_only", "--feature-layer", "ranked"])
    table = json.loads((out / "domain_adaptation.json").read_text())
    assert table["settings"]["feature_layer"] == "ranked"
    chosen = table["feature_layers"]["books"]
    assert chosen["layer"] == max(chosen["logme"], key=chosen["logme"].get)
    layers = {d: np.load(next((out / "cache").glob(f"{d}-*-layers.npz"))) for d in ("books", "dvd")}
    assert sorted(layers["books"].files) == sorted(chosen["logme"])  # every layer group was a candidate
    expected = domain_distance(None, layers["books"][chosen["layer"]], layers["dvd"][chosen["layer"]])
    assert table["a_distance"]["books->dvd"] == pytest.approx(expected)
    assert "books " + chosen["layer"] in (out / "report.md").read_text()

    before = (out / "domain_adaptation.json").read_bytes()
    with pytest.raises(SystemExit, match="--feature-layer ranked, this run has top"):
        recipe.main([*common, "--methods", "source_only", "--resume"])
    assert (out / "domain_adaptation.json").read_bytes() == before
