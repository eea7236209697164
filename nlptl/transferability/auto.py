"""``nlptl auto``: rank, choose encoder + strategy + freeze line, train it and the baselines, report why.

1. Rank every candidate (``rank_texts``): the best one names the encoder, and its layer curve
   the advised freeze line (``advise_freeze_depth``).
2. If the budget allows two epochs or more of each, let held-out data settle the one thing scores
   cannot: whether training *more* than the advised top groups pays. The advised configuration and
   full fine-tuning each train on a seeded 90% of the training rows and are compared on the other
   10% (never on the evaluation split); the winner is then trained on all rows.
3. Train the TF-IDF and (when it fits) from-scratch baselines on the same rows, and flag negative
   transfer when the best transfer run (the chosen one, or the unadapted one beside an adapted
   choice) loses to one of them.

Every run goes through ``nlptl.runs.run(RunConfig(...))``, so each is a normal run directory.
The budget is a wall-clock plan: the ranking measures the encoder's forward pass on this
machine, and each run's cost is estimated from it (see :func:`estimate_run_seconds`). What does
not fit is dropped in this order, each step said in the report: the held-out comparison, epochs
(down to one), the adaptation when asked for (its target stream and the unadapted run that checks
it), and then the advised freeze line itself for feature extraction (the encoder frozen, only the
head trained).
The from-scratch baseline is planned for nothing: it trains when the plan leaves room for it. In
every auto run on record it scored far below TF-IDF (SST-2 0.530 vs 0.757, books->kitchen 0.568
vs 0.752, AG News 0.549 vs 0.874), so it never decided the negative-transfer flag, while the epoch
it could cost is worth more: on books->kitchen, two epochs of the advised run scored 0.7545 and one
0.6795.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..artifacts import write_text_atomically
from ..config import require_positive
from ..rundir import earlier_run_pieces
from .pipeline import rank_texts, seeded_sample

__all__ = ["auto", "compute_seconds", "encoder_timing", "estimate_run_seconds", "plan_training", "MAX_EPOCHS",
           "DEV_FRACTION"]

MAX_EPOCHS = 3
# The held-out comparison is planned only when the runs can have at least this many epochs: on the five
# Amazon pairs (MiniLM's advised top 2 layers, no adaptation; benchmarks/transferability/blind-adaptation and
# blind-adaptation-2epochs) a second epoch gained 3.97 points on average and helped on 4 of 5 (books->kitchen
# 0.6795 -> 0.7545, books->dvd 0.7230 -> 0.8095; dvd->electronics lost 1.0), more than the comparison can
# be expected to give.
MIN_COMPARED_EPOCHS = 2
# --unlabeled-file with --adapt: adapt when the domains' proxy A-distance (0 alike .. 2 separable) reaches
# this, with the one-fit method whose 12-pair Amazon mean was best (benchmarks/domain_adaptation: MMD, +0.9
# points over source-only on a small adapter over frozen features; self-training scored more but costs four
# fits), and only beside the same run without it. Not by default: at the configuration auto trains
# (MiniLM's advised top layers), MMD lost to no adaptation on every Amazon pair measured: at weight 1.0,
# at one epoch and at two (benchmarks/transferability/blind-adaptation and blind-adaptation-2epochs), and at
# its default 0.3, one epoch (blind-adaptation-mmd0.3: -1.17 points, 0 of 5), so the budget goes to the
# unadapted run unless the user asks.
ADAPT_ABOVE = 1.0
ADAPTATION = "mmd"
DEV_FRACTION = 0.1  # of the training rows, held out to choose between the advised and full fine-tuning
BACKWARD_FACTOR = 3.0  # forward + backward of a trained layer ~ 3 forwards (the usual 1:2 rule)
# What the FLOP count misses: a share that grows with the work (shuffled batches pad more than the
# ranking's length-sorted pass; optimizer steps; autograd) and a part every run pays once (building
# the model, predicting and saving at the end). Set from every run `nlptl auto` has made on this
# 2-core CPU with its ranking on record (`python benchmarks/transferability/planner_calibration.py`,
# output in planner-calibration.json): 45 s plus the smallest factor, in steps of 0.05, under which no
# run took more than 1.1x its estimate. The log-space fit is 1.44x + 19 s; the AG News from-scratch
# baseline (10,001 rows) took 1.25x an estimate at 1.5x and sets the factor. A single factor of 2.5x,
# fitted to runs of 2,000-4,000 rows, planned the documented command on all 67,349 SST-2 rows
# (auto-sst2-full) at 1,099 s for a run that took 464 s, so auto used 8 of its 20 minutes.
OVERHEAD = 1.75
RUN_SECONDS = 45.0


def compute_seconds(forward_per_row: float, n_train: int, n_eval: int, strategy: str, top_k: int | None,
                    num_groups: int, epochs: int, target_rows: int = 0) -> float:
    """The encoder's forward and backward work in one run, in seconds of the measured forward pass.

    Per epoch, the trained fraction of the encoder runs forward and backward on the training rows
    and forward on the evaluation rows; feature extraction and top_k first cache what is below
    the freeze line with one forward pass over the training and the evaluation rows. With
    ``target_rows`` of unlabelled target text (adaptation), every step also runs a target batch
    forward and backward, and the target rows are cached too.
    """
    trained = {"feature_extraction": 0.0, "top_k": (top_k or 0) / num_groups}.get(strategy, 1.0)
    cached = n_train + n_eval + target_rows
    caching = forward_per_row * cached if strategy in ("feature_extraction", "top_k") else 0.0
    streams = 2 if target_rows else 1
    epoch = forward_per_row * (streams * n_train * BACKWARD_FACTOR * trained + n_eval * max(trained, 0.05))
    return caching + epochs * epoch


def estimate_run_seconds(forward_per_row: float, n_train: int, n_eval: int, strategy: str, top_k: int | None,
                         num_groups: int, epochs: int, target_rows: int = 0) -> float:
    """Wall-clock estimate of one run: ``RUN_SECONDS`` + ``OVERHEAD`` x :func:`compute_seconds`."""
    return RUN_SECONDS + OVERHEAD * compute_seconds(forward_per_row, n_train, n_eval, strategy, top_k, num_groups,
                                                    epochs, target_rows)


def _accuracy(run_dir: Path) -> float | None:
    return json.loads((run_dir / "metrics.json").read_text()).get("metrics", {}).get("accuracy")


def _settings(encoder: str, strategy: str, top_k: int | None, epochs: int) -> dict[str, Any]:
    settings = {"encoder": encoder, "strategy": strategy, "epochs": epochs}
    if strategy == "top_k":
        settings["top_k"] = top_k
    return settings


def _write_jsonl(path: Path, texts: list[str], labels: list[str]) -> None:
    write_text_atomically(path, "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in zip(texts, labels)))


def encoder_timing(ranking: dict[str, Any], encoder: str) -> tuple[float, int]:
    """(seconds of one full forward pass per row, layer groups) of ``encoder``, from its ranking's timings."""
    rows = [r for r in ranking["candidates"] if r["source"] == encoder]
    return sum(r["feature_seconds"] for r in rows) / ranking["sample"], max(r["depth"] or 1 for r in rows)


def _final(cost: Callable[..., float], config: tuple[str, int | None], n_train: int, epochs: int,
           target_rows: int) -> float:
    """The run on all training rows; adapted (``target_rows``), with the unadapted run that checks it."""
    adapted = cost(*config, n_train, epochs, target_rows=target_rows)
    return adapted + (cost(*config, n_train, epochs) if target_rows else 0.0)


def plan_training(cost: Callable[..., float], advised: tuple[str, int | None], n_train: int, n_dev: int,
                  target_rows: int, left: float) -> dict[str, Any]:
    """What to train in ``left`` seconds, given ``cost(strategy, top_k, rows, epochs, n_test=..., target_rows=...)``.

    The most epochs (``MAX_EPOCHS`` down to ``MIN_COMPARED_EPOCHS``) at which the held-out comparison
    of the advised configuration with full fine-tuning, and then the winner on all rows, fit;
    failing that, the first rung that fits of: the advised configuration adapted (with its
    unadapted check), the advised one alone, feature extraction, each at the most epochs that fit.
    Returns ``contenders``, ``compare``, ``selected``, ``epochs``, ``target_rows`` (the adaptation
    stream kept) and ``fits`` (False: not even one epoch of feature extraction fits).
    """
    contenders = [advised] + ([("full", None)] if advised[0] != "full" else [])
    for epochs in range(MAX_EPOCHS, MIN_COMPARED_EPOCHS - 1, -1):
        trials = sum(cost(s, k, n_train - n_dev, epochs, n_dev) for s, k in contenders)
        final = max(_final(cost, c, n_train, epochs, target_rows) for c in contenders)
        if len(contenders) > 1 and trials + final <= left:
            return {"contenders": contenders, "compare": True, "selected": advised, "epochs": epochs,
                    "target_rows": target_rows, "fits": True}
    frozen = ("feature_extraction", None)
    ladder = [(advised, target_rows), (advised, 0), (frozen, 0)]  # (configuration, target rows), most wanted first
    fitting = next(((config, rows, e) for config, rows in ladder for e in range(MAX_EPOCHS, 0, -1)
                    if _final(cost, config, n_train, e, rows) <= left), None)
    selected, rows, epochs = fitting or (frozen, 0, 1)
    return {"contenders": contenders, "compare": False, "selected": selected, "epochs": epochs,
            "target_rows": rows, "fits": fitting is not None}


def auto(data: dict[str, Any], output_dir: str | Path, budget_minutes: float = 20.0,
         sources: Sequence[str] = ("minilm", "glove-6b-50d", "tfidf"), sample: int = 2000, seed: int = 0,
         command: str | None = None, overwrite: bool = False, unlabeled_file: str | None = None,
         adapt: bool = False) -> dict[str, Any]:
    """Rank, choose, train the choice and the baselines within ``budget_minutes``; write report.md + metrics.json.

    With ``unlabeled_file`` (text of the domain the model is for), the report gives the proxy
    A-distance between the training texts and that text. With ``adapt=True`` as well, that distance
    decides whether to adapt (``ADAPT_ABOVE``): if so the chosen configuration trains with
    ``ADAPTATION`` toward it and also without, so the report shows whether adapting paid on the
    evaluation data (flagged when it did not). A budget that cannot hold both runs gets the
    unadapted one only.

    ``data`` holds the RunConfig data fields (dataset, data_dir, dataset_options, train_size,
    train_file, eval_file ...), shared by every final run so all of them see the same rows.
    """
    from ..runs import RunConfig, load_splits, run

    require_positive("budget_minutes", budget_minutes, "a number of minutes", " (--budget-minutes)")
    started = time.perf_counter()
    budget = budget_minutes * 60.0
    out = Path(output_dir)
    common = {**data, "seed": seed}
    train, evaluation = load_splits(RunConfig(output_dir=str(out / "tfidf_lr"), baseline="tfidf_lr", **common))
    if adapt and unlabeled_file is None:
        raise ValueError("adapt=True (--adapt) adapts to the text of unlabeled_file: give --unlabeled-file too")
    target_texts = _unlabeled_texts(unlabeled_file, data)  # a bad file fails here, before anything is written
    _check_output_dir(out, overwrite)  # after the data loaded, before anything is written
    # ranking loads every source: a bad name or sample fails here, still before anything is written
    ranking = rank_texts(list(train["text"]), list(train["label"]), sources=sources, sample=sample, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / "rank.json", json.dumps(ranking, indent=2))
    choice = dict(ranking["recommendation"])
    runs: dict[str, dict[str, Any]] = {}
    notes: list[str] = []

    def train_run(name: str, values: dict[str, Any], **settings: Any) -> float | None:
        directory = out / name
        run_started = time.perf_counter()
        run(RunConfig(output_dir=str(directory), overwrite=overwrite, **values, **settings), command=command)
        runs[name] = {"dir": str(directory), "accuracy": _accuracy(directory), "settings": settings,
                      "seconds": time.perf_counter() - run_started}
        return runs[name]["accuracy"]

    def left() -> float:
        return budget - (time.perf_counter() - started)

    train_run("tfidf_lr", common, baseline="tfidf_lr")  # seconds: always affordable, and the bar to beat
    if choice["baseline"] is not None:
        notes.append("the ranking put TF-IDF first, so the TF-IDF baseline is the choice")
    else:
        encoder = choice["encoder"]
        forward, num_groups = encoder_timing(ranking, encoder)
        n_train, n_eval = len(train), len(evaluation)
        n_dev = max(1, int(round(DEV_FRACTION * n_train)))

        asked, adapt = adapt, False
        if target_texts is not None:  # decided first, so the plan below budgets for the target stream
            distance = _a_distance(encoder, list(train["text"]), target_texts, sample, seed)
            adapt = asked and distance >= ADAPT_ABOVE
            choice["adaptation"] = {"a_distance": distance, "threshold": ADAPT_ABOVE, "asked": asked,
                                    "method": ADAPTATION if adapt else None, "unlabeled_rows": len(target_texts)}
            if distance < ADAPT_ABOVE:
                notes.append(f"proxy A-distance {distance:.2f} < {ADAPT_ABOVE}: the unlabelled text looks like the "
                             "training text, so no adaptation")
            elif not asked:
                notes.append(f"proxy A-distance {distance:.2f} >= {ADAPT_ABOVE}: the domains differ, but auto adapts "
                             f"only when asked (--adapt): {ADAPTATION} lost to no adaptation on every Amazon pair "
                             "measured at auto's configuration (weight 1.0 and its default 0.3), so the budget went "
                             "to the unadapted run")
        stream = len(target_texts) if adapt else 0

        def cost(strategy: str, top_k: int | None, n: int, epochs: int, n_test: int = n_eval,
                 target_rows: int = 0) -> float:
            return estimate_run_seconds(forward, n, n_test, strategy, top_k, num_groups, epochs, target_rows)

        advised = (choice["strategy"], choice["top_k"])
        plan = plan_training(cost, advised, n_train, n_dev, stream, left())
        contenders, selected, epochs, select = plan["contenders"], plan["selected"], plan["epochs"], plan["compare"]
        scratch = cost("full", None, n_train, 1)
        # what MAX_EPOCHS with every run would take: the comparison on held-out rows (when there are two
        # contenders), the chosen run and the unadapted one (when adapting), the from-scratch baseline;
        # the plan itself leaves the from-scratch baseline out (see the module docstring)
        trials_at_max = (sum(cost(s, k, n_train - n_dev, MAX_EPOCHS, n_dev) for s, k in contenders)
                         if len(contenders) > 1 else 0.0)
        whole = trials_at_max + max(_final(cost, c, n_train, MAX_EPOCHS, stream) for c in contenders) + scratch
        if not select:
            if len(contenders) > 1:
                notes.append("no budget to compare the advised freeze line with full fine-tuning on held-out rows"
                             + ("; trained the advised configuration" if selected == advised else ""))
            if plan["target_rows"] != stream:
                notes.append(f"no budget to adapt: one epoch with {ADAPTATION} toward the unlabelled text, and one "
                             "without it to check that adapting paid, were estimated at "
                             f"{_final(cost, advised, n_train, 1, stream):.0f} s of the {left():.0f} s left, so the "
                             "chosen run trains without adaptation (unchecked, it lost on every Amazon pair measured)")
                adapt, stream = False, 0
                choice["adaptation"].update(method=None, skipped_for_budget=True)
            if selected != advised:
                notes.append(f"no budget for even one epoch of {_describe(*advised)}, so auto trained "
                             f"{_describe(*selected)}: the encoder runs once over the rows and only the head trains")
            if not plan["fits"]:
                notes.append("even one epoch of feature extraction was estimated above the budget left; trained it "
                             "anyway, as the cheapest run there is")
        if whole > left():
            minutes = math.ceil((budget - left() + whole) / 60)
            notes.append(f"the budget left {left():.0f} s for training; {MAX_EPOCHS} epochs with every comparison "
                         f"were estimated at {whole:.0f} s: --budget-minutes {minutes} would fit them")
        if select:
            folder = out / "selection"
            folder.mkdir(exist_ok=True)
            order = seeded_sample(n_train, None, seed)
            names = train.features["label"].names
            texts, labels = list(train["text"]), [names[i] for i in train["label"]]
            for part, index in (("train", order[n_dev:]), ("dev", order[:n_dev])):
                _write_jsonl(folder / f"{part}.jsonl", [texts[i] for i in index], [labels[i] for i in index])
            files = {"train_file": str(folder / "train.jsonl"), "eval_file": str(folder / "dev.jsonl"), "seed": seed}
            dev = {}
            for strategy, top_k in contenders:
                name = "advised" if (strategy, top_k) == advised else strategy
                dev[name] = train_run(f"selection/{name}", files, **_settings(encoder, strategy, top_k, epochs))
            best = max(dev, key=lambda name: (dev[name], name == "advised"))  # a tie keeps the advised (cheaper)
            selected = advised if best == "advised" else (best, None)
            choice["dev_accuracy"] = dev
            choice["dev_rows"] = n_dev
        choice.update(selected_strategy=selected[0], selected_top_k=selected[1], epochs=epochs,
                      estimated_seconds=cost(*selected, n_train, epochs, target_rows=stream))
        chosen = _settings(encoder, *selected, epochs)
        if adapt:  # the plan holds both: adapting is only worth it where it can be checked
            train_run("unadapted", common, **chosen)
            chosen = {**chosen, "unlabeled_file": unlabeled_file, "adaptation": ADAPTATION}
        train_run("chosen", common, **chosen)
        if left() >= scratch:
            train_run("from_scratch", common, encoder=encoder, baseline="from_scratch", strategy="full", epochs=1)
        else:
            notes.append(f"from-scratch baseline skipped: one epoch was estimated at {scratch:.0f} s, more than "
                         "the budget had left")
    if "unadapted" in runs and "chosen" in runs:
        choice["adaptation"]["negative_transfer"] = runs["chosen"]["accuracy"] < runs["unadapted"]["accuracy"]
    result = {"choice": choice, "runs": runs, "negative_transfer": _negative_transfer(runs),
              "best_run": _best_run(runs), "budget_minutes": budget_minutes,
              "seconds": time.perf_counter() - started, "rank_seconds": ranking["seconds"], "notes": notes,
              "top_candidates": [{k: r[k] for k in ("name", "logme", "h_score", "knn_accuracy", "rank")}
                                 for r in ranking["candidates"][:5]],
              "freeze_advice": ranking["freeze_advice"], "train_size": len(train), "eval_size": len(evaluation)}
    write_text_atomically(out / "metrics.json", json.dumps(result, indent=2))
    write_text_atomically(out / "report.md", _report(result, ranking, command))
    return result


def _negative_transfer(runs: dict[str, dict[str, Any]]) -> bool:
    """Whether the best transfer run (the chosen one, or the unadapted one beside it) lost to a baseline."""
    def best(names: tuple[str, ...]) -> float | None:
        return max((r["accuracy"] for name, r in runs.items() if name in names and r["accuracy"] is not None),
                   default=None)

    transfer, baseline = best(("chosen", "unadapted")), best(("tfidf_lr", "from_scratch"))
    return transfer is not None and baseline is not None and transfer < baseline


def _best_run(runs: dict[str, dict[str, Any]]) -> str | None:
    """The run to use: best on the evaluation split, the chosen run on a tie (held-out selection runs excluded)."""
    scored = {name: r["accuracy"] for name, r in runs.items()
              if not name.startswith("selection/") and r["accuracy"] is not None}
    return max(scored, key=lambda name: (scored[name], name == "chosen"), default=None)


AUTO_FILES = ("rank.json", "metrics.json", "report.md")
AUTO_RUNS = ("tfidf_lr", "chosen", "unadapted", "from_scratch", "selection/advised", "selection/full")


def _unlabeled_texts(unlabeled_file: str | None, data: dict[str, Any]) -> list[str] | None:
    if unlabeled_file is None:
        return None
    from ..data import load_files

    text_column = data.get("text_column") or "text"
    return list(load_files(train_file=unlabeled_file, text_column=text_column, label_column=None)["train"]["text"])


def _a_distance(encoder: str, source: list[str], target: list[str], sample: int, seed: int) -> float:
    """Proxy A-distance of the encoder's frozen features, on seeded samples of up to ``sample`` texts a side."""
    from ..adaptation import domain_distance
    from ..encoders import load_encoder
    from ..runs import resolve_encoder_source

    path, kind = resolve_encoder_source(encoder)
    model = load_encoder(path, kind=kind)
    pick = lambda texts: [texts[i] for i in seeded_sample(len(texts), sample, seed)]  # noqa: E731
    return float(domain_distance(model, pick(source), pick(target), seed=seed))


def _check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse an output_dir holding an earlier ``auto`` unless ``overwrite`` (its runs are then replaced)."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output_dir {str(out)!r} is a file; pass a directory (--output-dir)")
    earlier = [name for name in AUTO_FILES if (out / name).exists()]
    earlier += [f"{name}/" for name in AUTO_RUNS if earlier_run_pieces(out / name)]
    if earlier and not overwrite:
        raise FileExistsError(f"output_dir {str(out)!r} already holds an earlier nlptl auto ({', '.join(earlier)}); "
                              "choose another --output-dir, or pass --overwrite (overwrite=True) to replace it")


def _describe(strategy: str, top_k: int | None) -> str:
    if strategy == "feature_extraction":
        return "feature extraction (encoder frozen, head trained)"
    if strategy == "top_k":
        return f"the top {top_k} layer groups fine-tuned, the rest frozen"
    return f"{strategy.replace('_', ' ')} fine-tuning"


def _report(result: dict[str, Any], ranking: dict[str, Any], command: str | None) -> str:
    choice, runs = result["choice"], result["runs"]
    lines = ["# nlptl auto", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Ranked {len(ranking['candidates'])} candidates on {ranking['sample']} of the {result['train_size']} "
              f"training rows in {ranking['seconds']:.0f} s, then trained within a {result['budget_minutes']:g}-minute "
              f"budget ({result['seconds'] / 60:.1f} minutes used in all).", "", "## The choice", ""]
    if choice["baseline"]:
        lines.append(choice["reason"] + ".")
    else:
        advised = _describe(choice["strategy"], choice["top_k"])
        lines.append(f"Encoder **{choice['encoder']}**. The scores advised {advised}: {choice['reason']}.")
        if "dev_accuracy" in choice:
            tried = ", ".join(f"{name} {acc:.4f}" for name, acc in choice["dev_accuracy"].items())
            lines += ["", "Frozen-feature scores cannot say whether training more than that pays, so auto held out "
                          f"{choice['dev_rows']} training rows and compared (accuracy on them): {tried}."]
        lines += ["", f"Trained: {_describe(choice['selected_strategy'], choice['selected_top_k'])}, "
                      f"{choice['epochs']} epoch(s) on all training rows "
                      f"(estimated {choice['estimated_seconds']:.0f} s)."]
        adaptation = choice.get("adaptation")
        if adaptation:
            if adaptation["method"]:
                decided = f"so the chosen run adapts to it with {adaptation['method']}"
            elif adaptation.get("skipped_for_budget"):
                decided = ("far enough to adapt, but the budget could not hold the adapted run and the unadapted one "
                           "that checks it (see the notes)")
            elif adaptation["a_distance"] >= adaptation["threshold"] and not adaptation.get("asked", True):
                decided = "far enough to adapt, but auto adapts only when asked (`--adapt`; see the notes)"
            else:
                decided = "so no adaptation"
            lines += ["", f"Unlabelled target text ({adaptation['unlabeled_rows']} rows): proxy A-distance "
                          f"{adaptation['a_distance']:.2f} to the training text (threshold {adaptation['threshold']}), "
                          f"{decided}."]
            if "negative_transfer" in adaptation:
                lines.append("**Adaptation lost** to the same run without it on the evaluation data (`unadapted`)."
                             if adaptation["negative_transfer"] else
                             "Adaptation beat the same run without it on the evaluation data (`unadapted`).")
    lines += ["", "| rank | candidate | LogME | H-score | kNN acc |", "|---|---|---|---|---|"]
    lines += [f"| {r['rank']} | {r['name']} | {r['logme']:.4f} | {r['h_score']:.4f} | {r['knn_accuracy']:.3f} |"
              for r in result["top_candidates"]]
    for source, advice in result["freeze_advice"].items():
        curve = ", ".join(f"{g} {s:.3f}" for g, s in zip(advice["groups"], advice["curve"]))
        lines += ["", f"{source} LogME per depth (bottom to top): {curve}."]
    lines += ["", f"## Result (evaluation split, {result['eval_size']} rows)", "", "| run | accuracy | seconds |",
              "|---|---|---|"]
    for name, r in runs.items():
        accuracy = "" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        where = " (held-out training rows)" if name.startswith("selection/") else ""
        lines.append(f"| {name}{where} | {accuracy} | {r['seconds']:.0f} |")
    lines.append("")
    if "chosen" in runs:
        lost = result["negative_transfer"]
        which = "the chosen transfer run" + (" and the unadapted one" if "unadapted" in runs else "")
        lines.append(f"**Negative transfer**: {which} lost to a baseline above." if lost
                     else "Transfer helped: a transfer run beat every baseline trained here.")
    best = result["best_run"]
    if best is not None:
        lines.append(f"Best on the evaluation split: `{best}/` ({runs[best]['accuracy']:.4f}).")
    lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"
