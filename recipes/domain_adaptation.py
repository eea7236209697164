"""Recipe: the 12 Amazon cross-domain sentiment pairs (Blitzer et al. 2007) for every adaptation method.

    python recipes/domain_adaptation.py --data-dir ../shared/data --pairs all --output reports/amazon-da
    python recipes/domain_adaptation.py --data-dir ../shared/data --pairs books->dvd,dvd->kitchen --output DIR

Protocol (../shared/data/README.md): train on the 2,000 labelled source reviews plus the text of
the 2,000 target reviews, score accuracy on those target reviews; ``target_supervised`` is
5-fold cross-validation on the target (the upper bound).

How it stays inside an hour on 2 CPU cores: all-MiniLM-L6-v2 runs over each domain's 2,000
reviews once (max 128 tokens), keeping the hidden states at the freeze line below its top layer.
Its mean-pooled output is a frozen feature table; every method then trains the same small model
with ``nlptl.fit`` — a 256-unit adapter layer (what the adaptation objectives reshape, as DANN
did over mSDA features) plus a linear classifier — so one fit takes seconds. DAPT continues
masked-LM training of MiniLM's top layer on the target text, and its features are the cached
freeze-line states run through that adapted layer. No setting was tuned on target labels: every
method trains for a fixed number of epochs and is scored once, at the end.

``--feature-layer ranked`` (added 2026-12-07, after the top-layer tables had missed the goal): the
adapter reads, for each pair, the MiniLM layer that LogME ranks best on the *source* domain's
2,000 labelled reviews, not the top layer. Why: nlptl's own ranking puts the top layer 8th of 9
candidates for Amazon books sentiment (probe accuracy 0.719 against 0.812 for layer 3, see
``benchmarks/transferability/report.md``), and source-only on top-layer features (69.3) sits far
below a fine-tuned MiniLM on the same kind of pair (85.5 on books->kitchen), so the table measured
adaptation on features that carry little sentiment. The rule uses no target label; everything
else (adapter, fit settings, methods) is unchanged. DAPT adapts the top layer and is left out.

``--model top_layer`` trains MiniLM's own top layer instead of the adapter (the engine's
fine-tuning rates, 3 epochs), replaying it on the cached states below it: about 50-95 s a fit
on this 2-core CPU against about 1 s for the adapter, so 12 pairs of three methods take about an hour.
"""
import argparse
import copy
import json
import pickle
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

import nlptl
from nlptl.adaptation import CORAL, DANN, MMD, FeatureTableEncoder, coral_transform, domain_adaptive_pretraining
from nlptl.adaptation import domain_distance
from nlptl.adaptation import importance_weights, self_training
from nlptl.artifacts import check_results_table, replaced_atomically, write_text_atomically
from nlptl.data import load_dataset
from nlptl.encoders.base import EncoderOutput, ModelInput, TextEncoder, TokenizedText, pool
from nlptl.encoders.boundary import boundary_states, forward_from_boundary
from nlptl.heads import ClassificationHead
from nlptl.cli import positive_int
from nlptl.runs import resolve_encoder_source
from nlptl.transferability import rank_candidates
from nlptl.transferability.features import TransformerSource

DOMAINS = ["books", "dvd", "electronics", "kitchen"]
METHODS = ["source_only", "dann", "coral", "mmd", "coral_transform", "importance_weighting", "kmm", "dapt",
           "self_training", "mmd_self_training", "target_supervised"]
# one fit of the adapter + classifier over frozen features (chosen once, the same for every method)
# float32: the adapter is tiny (bf16 buys nothing) and the committed table was made in float32
FIT = dict(strategy="top_k", top_k=1, epochs=10, batch_size=256, learning_rate=2e-3, head_learning_rate=2e-3,
           warmup_ratio=0.1, progress=False, mixed_precision="no")
# --model top_layer: MiniLM's top layer itself trains (over the cached states below it) with a mean-pooled
# linear head: the engine's fine-tuning rates for a transformer (5e-5, head 1e-3), 3 epochs (the CLI's default)
TOP_LAYER_FIT = dict(strategy="top_k", top_k=1, epochs=3, batch_size=32, learning_rate=5e-5, head_learning_rate=1e-3,
                     warmup_ratio=0.1, progress=False)
OBJECTIVES = {"dann": lambda: DANN(trade_off=1.0, max_coefficient=1.0), "coral": lambda: CORAL(trade_off=1.0),
              "mmd": lambda: MMD(trade_off=1.0)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder holding amazon_multidomain/ (../shared/data)")
    p.add_argument("--pairs", default="all", help="'all' or a comma list such as books->dvd,dvd->kitchen")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list out of {','.join(METHODS)}")
    p.add_argument("--output", required=True, help="writes domain_adaptation.json, report.md, plot PNG here")
    p.add_argument("--encoder", default="minilm", help="encoder name or path (default: all-MiniLM-L6-v2)")
    p.add_argument("--max-length", type=positive_int, default=128, help="tokens per review (default 128)")
    p.add_argument("--model", default="adapter", choices=["adapter", "top_layer"],
                   help="what the methods train: a 256-unit adapter over frozen MiniLM vectors (default, seconds a "
                        "fit) or MiniLM's own top layer over the cached states below it (about a minute a fit)")
    p.add_argument("--feature-layer", default="top", choices=["top", "ranked"],
                   help="--model adapter: which MiniLM layer's mean-pooled output the adapter reads: the top layer "
                        "(default), or for each pair the layer LogME ranks best on the *source* domain's labels")
    p.add_argument("--dapt-epochs", type=positive_int, default=1, help="masked-LM passes over the target text")
    p.add_argument("--dapt-texts", type=positive_int, default=2000, help="how many target reviews DAPT trains on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="where MiniLM's per-domain pass is kept (default: OUTPUT/cache)")
    p.add_argument("--merge", nargs="+", default=None, metavar="DIR",
                   help="only merge the domain_adaptation.json of several runs (e.g. methods run in parallel) "
                        "into OUTPUT and write the report")
    p.add_argument("--skip-a-distance", action="store_true", help="leave the A-distances to another run (--merge)")
    p.add_argument("--limit", type=positive_int, default=None, help="use only N reviews per domain (a quick smoke test)")
    p.add_argument("--resume", action="store_true", help="keep (pair, method) results already in the JSON")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the domain_adaptation.json an earlier run left in --output (without --resume or "
                        "--overwrite an existing one is refused)")
    return p.parse_args(argv)


def parse_pairs(text: str) -> list[tuple[str, str]]:
    if text == "all":
        return [(s, t) for s in DOMAINS for t in DOMAINS if s != t]
    pairs = []
    for item in text.split(","):
        source, _, target = item.strip().partition("->")
        if source not in DOMAINS or target not in DOMAINS or source == target:
            sys.exit(f"domain_adaptation.py: error: pair {item!r}: use source->target with two of {DOMAINS}")
        pairs.append((source, target))
    return pairs


def freeze_line_states(encoder, texts: list[str], batch_size: int = 32
                       ) -> list[tuple[torch.Tensor, dict, torch.Tensor]]:
    """Per length-sorted batch: (row indices, encoder batch, fp16 hidden states below the top layer)."""
    n_frozen = len(encoder.layer_groups()) - 1
    order = np.argsort([len(t) for t in texts])
    out = []
    for start in range(0, len(texts), batch_size):
        index = order[start : start + batch_size]
        batch = encoder.preprocess([texts[i] for i in index])
        states = boundary_states(encoder, batch, n_frozen).features.to(torch.float16)  # (B, L, D)
        out.append((torch.from_numpy(index), batch, states))  # tensors only: loads with weights_only=True
    return out


@torch.inference_mode()
def pooled_from_states(encoder, cached, n_rows: int) -> np.ndarray:
    """Mean-pooled top-layer output (N, D) from cached freeze-line states."""
    encoder.eval()
    n_frozen = len(encoder.layer_groups()) - 1
    features = np.zeros((n_rows, encoder.num_features), dtype=np.float32)
    for index, batch, states in cached:
        output = forward_from_boundary(encoder, batch, states.float(), n_frozen)
        features[index.numpy()] = pool(output, "mean").numpy()  # (B, D)
    return features


class CachedStatesEncoder(TextEncoder):
    """A transformer whose frozen layers are replaced by their cached output: only its top layer runs.

    Each text maps to its row of the cached freeze-line states (exact string match, as in
    ``FeatureTableEncoder``); a batch pads those rows and runs the encoder's top group on them, so
    ``nlptl.fit`` trains the real top layer without recomputing the five below it.
    """

    kind = "cached_states"

    def __init__(self, encoder, texts: list[str], rows: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        if len(rows) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(rows)} rows of cached states")
        self.encoder = copy.deepcopy(encoder)  # its top layer trains; the caller's copy stays as it was
        self.encoder.requires_grad_(False)
        self.n_frozen = len(encoder.layer_groups()) - 1
        self.index = {text: i for i, text in enumerate(texts)}
        self.rows = rows  # shared, never changed: (ids (L,), fp16 states (L, D)) per text
        self.max_length = encoder.max_length

    @property
    def num_features(self) -> int:
        return self.encoder.num_features

    def tokenize(self, texts):
        return [TokenizedText([self.index[t]], [(0, len(t))]) for t in texts]

    def build_inputs(self, first, second=None) -> ModelInput:
        return ModelInput(ids=list(first.ids), type_ids=[0], sequence_ids=[0], offsets=list(first.offsets))

    def collate(self, rows) -> dict[str, torch.Tensor]:
        return {"row": torch.tensor([row.ids[0] for row in rows], dtype=torch.long)}

    def forward(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        picked = [self.rows[i] for i in batch["row"].tolist()]
        width = max(len(ids) for ids, _ in picked)
        ids = torch.zeros(len(picked), width, dtype=torch.long)  # (B, L)
        mask = torch.zeros(len(picked), width, dtype=torch.long)  # (B, L)
        hidden = torch.zeros(len(picked), width, picked[0][1].shape[-1])  # (B, L, D)
        for j, (row_ids, states) in enumerate(picked):
            ids[j, : len(row_ids)], mask[j, : len(row_ids)], hidden[j, : len(row_ids)] = row_ids, 1, states.float()
        device = batch["row"].device
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device),
                  "token_type_ids": torch.zeros_like(ids).to(device)}
        output = forward_from_boundary(self.encoder, inputs, hidden.to(device), self.n_frozen)
        return EncoderOutput(features=output.features, mask=mask.to(device).bool())

    def layer_groups(self):
        groups = self.encoder.layer_groups()
        return [("cached", [m for _, modules in groups[:-1] for m in modules]), groups[-1]]

    def config(self) -> dict:
        return {"rows": len(self.rows)}

    @classmethod
    def _from_saved(cls, directory, config):
        raise NotImplementedError("a CachedStatesEncoder lives for one recipe run; it is never saved")


def state_rows(cached: list[tuple[torch.Tensor, dict, torch.Tensor]], n_rows: int
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One domain's cached batches -> per review (token ids (L,), fp16 states (L, D)), in review order."""
    rows = [None] * n_rows
    for index, batch, states in cached:
        lengths = batch["attention_mask"].sum(1).tolist()
        for j, i in enumerate(index):
            rows[int(i)] = (batch["input_ids"][j, : lengths[j]], states[j, : lengths[j]])
    return rows


class TopLayer:
    """What ``train_and_score`` trains on in ``--model top_layer``: MiniLM over the cached states of some reviews."""

    def __init__(self, encoder, rows: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.encoder, self.rows = encoder, rows


def model_over(texts: list[str], vectors, seed: int) -> nlptl.TransferModel:
    """The adapter over frozen vectors, or (``vectors`` a ``TopLayer``) MiniLM's own top layer."""
    torch.manual_seed(seed)
    encoder = (CachedStatesEncoder(vectors.encoder, texts, vectors.rows) if isinstance(vectors, TopLayer)
               else FeatureTableEncoder(texts, vectors, adapter_size=256))
    return nlptl.TransferModel(encoder, ClassificationHead(2, pooling="mean"), labels=["negative", "positive"])


def train_and_score(texts, vectors, train, evaluation, seed, **options) -> float:
    """Fit for fixed epochs, then score once (no evaluation during training: nothing is selected on it)."""
    model = model_over(texts, vectors, seed)
    nlptl.fit(model, train, None, seed=seed, **{**fit_settings(vectors), **options})
    return score(model, vectors, evaluation)


def fit_settings(vectors) -> dict:
    return TOP_LAYER_FIT if isinstance(vectors, TopLayer) else FIT


def score(model, vectors, evaluation) -> float:
    top_layer = isinstance(vectors, TopLayer)
    return float(nlptl.evaluate(model, evaluation, batch_size=512 if not top_layer else 64,
                                mixed_precision=fit_settings(vectors).get("mixed_precision", "auto"))["accuracy"])


def run_pair(method, source, target, data, features, dapt_features, seed, top=None, log=None) -> float:
    """One method on one pair; ``top`` = (encoder, {domain: state rows}) trains MiniLM's top layer instead.

    ``log``: a dict the method may record its diagnostics in (self-training's pseudo-label rounds)."""
    src, tgt = data[source], data[target]
    texts = src["text"] + tgt["text"]
    vectors = (TopLayer(top[0], top[1][source] + top[1][target]) if top
               else np.concatenate([features[source], features[target]]))
    labelled = {"text": src["text"], "label": src["label"]}
    scored = {"text": tgt["text"], "label": tgt["label"]}  # target labels: for scoring only
    unlabelled = {"text": tgt["text"]}
    if method == "source_only":
        return train_and_score(texts, vectors, labelled, scored, seed)
    if method in OBJECTIVES:
        return train_and_score(texts, vectors, {"source": labelled, "target": unlabelled}, scored, seed,
                               objective=OBJECTIVES[method]())
    if method == "coral_transform":  # CORAL's closed form: the source re-coloured with the target's covariance
        aligned_source, standardized_target = coral_transform(features[source], features[target])
        return train_and_score(texts, np.concatenate([aligned_source, standardized_target]).astype(np.float32),
                               labelled, scored, seed)
    if method in ("importance_weighting", "kmm"):
        weights, info = importance_weights(None, features[source], features[target], return_info=True, kmm_chunk=500,
                                           method="classifier" if method == "importance_weighting" else "kmm",
                                           strength=1.0)  # the estimated ratio as is: what the tables ran with
        print(f"    {method}: effective sample size {info['effective_sample_size']:.0f} of {info['rows']}")
        return train_and_score(texts, vectors, {**labelled, "weight": weights.tolist()}, scored, seed,
                               weight_column="weight")
    if method in ("self_training", "mmd_self_training"):  # target labels only report the pseudo-labels' accuracy
        result = self_training(lambda: model_over(texts, vectors, seed), labelled, tgt["text"],
                               true_labels=tgt["label"], seed=seed, **fit_settings(vectors),
                               make_objective=OBJECTIVES["mmd"] if method == "mmd_self_training" else None)
        print("    self_training rounds: " + ", ".join(
            f"{r['pseudo_rows']} pseudo-labels ({100 * r['pseudo_accuracy']:.1f}% right)" for r in result.rounds))
        if log is not None:
            log[f"{method}_rounds"] = result.rounds
        return score(result.model, vectors, scored)
    if method == "dapt":
        adapted = dapt_features[target]
        return train_and_score(texts, np.concatenate([adapted[source], adapted[target]]), labelled, scored, seed)
    raise ValueError(method)


def target_supervised(domain, data, features, seed, top=None) -> float:
    from sklearn.model_selection import StratifiedKFold

    texts, labels = data[domain]["text"], np.asarray(data[domain]["label"])
    scores = []
    for train_idx, test_idx in StratifiedKFold(5, shuffle=True, random_state=seed).split(texts, labels):
        pick = lambda idx: {"text": [texts[i] for i in idx], "label": labels[idx].tolist()}
        vectors = TopLayer(top[0], top[1][domain]) if top else features[domain]
        scores.append(train_and_score(texts, vectors, pick(train_idx), pick(test_idx), seed))
    return float(np.mean(scores))


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    pairs, methods = parse_pairs(args.pairs), [m.strip() for m in args.methods.split(",")]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit(f"domain_adaptation.py: error: unknown methods {unknown}; choose from {METHODS}")
    if args.model == "top_layer" and {"coral_transform", "dapt"} & set(methods):
        sys.exit("domain_adaptation.py: error: --model top_layer: coral_transform and dapt work on frozen features "
                 "(drop them from --methods, or use --model adapter)")
    if args.feature_layer == "ranked" and (args.model == "top_layer" or "dapt" in methods):
        sys.exit("domain_adaptation.py: error: --feature-layer ranked reads frozen features below the top layer: "
                 "use it with --model adapter and without dapt in --methods (DAPT adapts the top layer)")
    out = Path(args.output)
    if args.merge:  # a merge recomputes its table from the parts it reads, so it may replace one
        out.mkdir(parents=True, exist_ok=True)
        return merge(args.merge, methods, out)
    results_file = out / "domain_adaptation.json"
    try:
        check_results_table(results_file, args.resume, args.overwrite)
    except (FileExistsError, ValueError) as e:
        sys.exit(f"domain_adaptation.py: error: {e}")
    out.mkdir(parents=True, exist_ok=True)
    results = json.loads(results_file.read_text()) if args.resume and results_file.exists() else {}
    results.setdefault("pairs", {}), results.setdefault("a_distance", {})
    earlier_seconds = results.get("seconds", 0.0)  # --resume: the table's time is every run's, not the last one's
    settings = {"encoder": args.encoder, "max_length": args.max_length, "model": args.model,
                "fit": FIT if args.model == "adapter" else TOP_LAYER_FIT, "seed": args.seed, "limit": args.limit,
                "dapt": {"epochs": args.dapt_epochs, "texts": args.dapt_texts, "train_top_k": 1,
                         "learning_rate": 1e-4, "batch_size": 16},
                "command": "python recipes/domain_adaptation.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if args.feature_layer != "top":  # absent for the top layer, as in the tables made before the option
        settings["feature_layer"] = args.feature_layer
    stored = results.get("settings", {})
    if stored and stored.get("feature_layer", "top") != args.feature_layer:
        sys.exit(f"domain_adaptation.py: error: --resume: {results_file} was made with --feature-layer "
                 f"{stored.get('feature_layer', 'top')}, this run has {args.feature_layer}; use the same or another --output")
    for key in ("encoder", "max_length", "model", "fit", "seed", "limit", "dapt"):
        if key in stored and stored[key] != settings[key]:  # --resume must not mix rows made otherwise
            sys.exit(f"domain_adaptation.py: error: --resume: {results_file} was made with {key}={stored[key]!r}, "
                     f"this run has {key}={settings[key]!r}; use the same settings or another --output")
    results["settings"] = settings
    needed = sorted({d for pair in pairs for d in pair})
    data = {d: load_dataset("amazon_reviews", domain=d, data_dir=args.data_dir)["train"].to_dict() for d in needed}
    if args.limit:  # both classes: the files hold the negative reviews first
        rows = np.random.default_rng(args.seed).permutation(len(data[needed[0]]["text"]))[: args.limit]
        data = {d: {k: [v[i] for i in rows] for k, v in columns.items()} for d, columns in data.items()}

    path, kind = resolve_encoder_source(args.encoder)
    encoder = nlptl.load_encoder(path, kind=kind, max_length=args.max_length)
    encoder.eval()
    cached, features = {}, {}
    cache_dir = Path(args.cache_dir) if args.cache_dir else out / "cache"  # MiniLM's pass over each domain, kept so a rerun (--resume) skips it
    cache_dir.mkdir(parents=True, exist_ok=True)
    encoder_tag = re.sub(r"[^A-Za-z0-9._-]+", "_", args.encoder).strip("_")  # --encoder may be a path
    for d in needed if args.feature_layer == "top" else []:
        t = time.perf_counter()
        stem = cache_dir / f"{d}-{encoder_tag}-{args.max_length}-{args.limit or 'all'}"
        if Path(f"{stem}.npy").exists() and "dapt" not in methods and args.model == "adapter":  # states not needed
            features[d] = np.load(f"{stem}.npy")
            continue
        if Path(f"{stem}.pt").exists():
            try:
                cached[d] = torch.load(f"{stem}.pt", weights_only=True)  # a cache file never runs code
            except pickle.UnpicklingError as error:
                sys.exit(f"domain_adaptation.py: error: {stem}.pt holds more than tensors (an older recipe wrote "
                         f"NumPy arrays there) and is not loaded: move it away to rebuild it ({error})")
        else:
            cached[d] = freeze_line_states(encoder, data[d]["text"])
            torch.save(cached[d], f"{stem}.pt")
        if Path(f"{stem}.npy").exists():
            features[d] = np.load(f"{stem}.npy")
        else:
            features[d] = pooled_from_states(encoder, cached[d], len(data[d]["text"]))
            np.save(f"{stem}.tmp.npy", features[d])
            Path(f"{stem}.tmp.npy").replace(f"{stem}.npy")  # atomic: parallel runs never read half a file
        print(f"{d}: {len(features[d])} reviews encoded in {time.perf_counter() - t:.0f} s", flush=True)
    if args.feature_layer == "ranked":
        layered = {d: layer_features(encoder, data[d]["text"], cache_dir / f"{d}-{encoder_tag}-{args.max_length}-"
                                     f"{args.limit or 'all'}-layers.npz") for d in needed}
        results["feature_layers"] = {d: ranked_layer(layered[d], data[d]["label"]) for d in needed}
        for d, choice in results["feature_layers"].items():
            print(f"{d}: LogME ranks {choice['layer']} best on its own labels", flush=True)
    else:
        layered = None

    def pair_features(source: str, target: str) -> dict[str, np.ndarray]:
        """The frozen features a pair's methods read: the top layer's, or both domains at the source's ranked layer."""
        if layered is None:
            return features
        layer = results["feature_layers"][source]["layer"]
        return {source: layered[source][layer], target: layered[target][layer]}

    dapt_encoders, dapt_features = {}, {}
    top = None if args.model == "adapter" else (encoder, {d: state_rows(cached[d], len(data[d]["text"])) for d in needed})

    def adapted_features(target, domains):
        """MiniLM after masked-LM training on the target's text: features of ``domains`` (from cached states)."""
        if target not in dapt_encoders:
            t = time.perf_counter()
            adapted = copy.deepcopy(encoder)
            texts = data[target]["text"][: args.dapt_texts]
            result = domain_adaptive_pretraining(adapted, texts, epochs=args.dapt_epochs, batch_size=16,
                                                 learning_rate=1e-4, train_top_k=1, max_length=args.max_length,
                                                 eval_texts=data[target]["text"][-64:], seed=args.seed)
            dapt_encoders[target] = adapted
            results.setdefault("dapt_mlm_loss", {})[target] = [result.loss_before, result.loss_after]
            print(f"DAPT {target}: masked-LM loss {result.loss_before:.3f} -> {result.loss_after:.3f} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        for d in domains:
            if (target, d) not in dapt_features:
                dapt_features[target, d] = pooled_from_states(dapt_encoders[target], cached[d], len(data[d]["text"]))
        return {d: dapt_features[target, d] for d in domains}

    for name in (f"{s}->{t}" for s, t in pairs):
        results["pairs"].setdefault(name, {})
    for source, target in pairs if not args.skip_a_distance else []:
        both = pair_features(source, target)
        results["a_distance"][f"{source}->{target}"] = domain_distance(None, both[source], both[target])
    supervised = {}
    for method in methods:  # method by method: a cut-short run still has whole columns
        for source, target in pairs:
            name = f"{source}->{target}"
            row = results["pairs"][name]
            if method in row:
                continue
            t = time.perf_counter()
            if method == "target_supervised":
                if target not in supervised:
                    supervised[target] = target_supervised(target, data, pair_features(target, target), args.seed, top)
                row[method] = supervised[target]
            elif method == "dapt":
                adapted = {target: adapted_features(target, (source, target))}
                row[method] = run_pair(method, source, target, data, features, adapted, args.seed)
            else:
                log = {}
                row[method] = run_pair(method, source, target, data, pair_features(source, target), None, args.seed,
                                       top, log)
                for key, value in log.items():
                    results.setdefault(key, {})[name] = value
            print(f"{name:22s} {method:22s} {row[method]:.4f} ({time.perf_counter() - t:.0f} s)", flush=True)
            results["seconds"] = round(earlier_seconds + time.perf_counter() - started, 1)
            write_json(results_file, results)
    results["seconds"] = round(earlier_seconds + time.perf_counter() - started, 1)
    write_json(results_file, results)
    write_report(results, methods, out)
    print(f"wrote {results_file} and {out / 'report.md'} ({results['seconds']:.0f} s)")


def layer_features(encoder, texts: list[str], cache: Path) -> dict[str, np.ndarray]:
    """Every layer group's mean-pooled output (N, D) for ``texts``, from one pass (kept in ``cache``)."""
    if cache.exists():
        with np.load(cache) as stored:
            return {name: stored[name] for name in stored.files}
    t = time.perf_counter()
    features = TransformerSource(encoder, "encoder").features(texts)
    staging = cache.with_name(cache.stem + ".tmp.npz")
    np.savez(staging, **features)
    staging.replace(cache)  # atomic: parallel runs never read half a file
    print(f"{cache.name}: {len(texts)} reviews, {len(features)} layers in {time.perf_counter() - t:.0f} s", flush=True)
    return features


def ranked_layer(layered: dict[str, np.ndarray], labels: list[int]) -> dict:
    """The layer whose features LogME scores best for ``labels`` (one domain's own), with every layer's LogME."""
    rows = rank_candidates(layered, labels, scores=("logme",))
    return {"layer": rows[0]["name"], "logme": {row["name"]: float(row["logme"]) for row in rows}}


def write_json(path: Path, value: dict) -> None:
    """Atomic: a run stopped mid-write leaves the last whole table, never half of one."""
    write_text_atomically(path, json.dumps(value, indent=2))


def merge(directories: list[str], methods: list[str], out: Path) -> None:
    """One table from runs that each did some methods or pairs (their wall-clock overlapped)."""
    merged = {"pairs": {}, "a_distance": {}, "runs": []}
    for directory in directories:
        part = json.loads((Path(directory) / "domain_adaptation.json").read_text())
        for pair, row in part["pairs"].items():
            merged["pairs"].setdefault(pair, {}).update(row)
        merged["a_distance"].update(part["a_distance"])
        for key in ("dapt_mlm_loss", "self_training_rounds", "mmd_self_training_rounds"):
            merged.setdefault(key, {}).update(part.get(key, {}))
        merged["runs"] += part.get("runs") or [  # an earlier merge brings its own runs
            {"dir": directory, "seconds": part.get("seconds"), "command": part["settings"]["command"]}]
        merged["settings"] = {**part["settings"], "command": " ; ".join(r["command"] for r in merged["runs"])}
    merged["seconds"] = max(r["seconds"] or 0 for r in merged["runs"])  # wall-clock: the runs went side by side
    order = [f"{s}->{t}" for s in DOMAINS for t in DOMAINS if s != t]
    merged["pairs"] = {p: merged["pairs"][p] for p in order if p in merged["pairs"]}
    present = [m for m in methods if any(m in row for row in merged["pairs"].values())]
    write_json(out / "domain_adaptation.json", merged)
    write_report(merged, present, out)
    print(f"merged {len(directories)} runs into {out}")


def method_notes(results: dict, methods: list[str]) -> list[str]:
    """The report's settings bullets for the methods it shows (and only those)."""
    settings, notes = results["settings"], []
    if {"dann", "coral", "mmd"} & set(methods):
        notes.append("- DANN/CORAL/MMD: trade-off 1.0 each (DANN's and DAN's usual setting; Deep CORAL instead sets its "
                     "weight so the CORAL term is as large as the task loss by the end of training, and at 1.0 its "
                     "||C_s - C_t||^2/(4d^2) term is negligible here: 6e-7 against a task loss of 0.42 over the last 10 "
                     "steps of books->dvd with the adapter, which is why its CORAL column equals source-only), DANN's "
                     "warm-up 2/(1+exp(-10p))-1.")
    if "coral_transform" in methods:
        notes.append("- coral_transform: CORAL's closed form (Sun, Feng & Saenko 2016), no training of its own: each "
                     "domain's features standardized, the source's whitened with (C_s + I)^-1/2 and re-coloured with "
                     "(C_t + I)^1/2 (the paper's ridge of 1), then the same adapter and classifier.")
    if {"importance_weighting", "kmm"} & set(methods):
        notes.append("- Importance weighting: cross-fitted logistic-regression domain classifier; KMM: RBF kernel "
                     "(median bandwidth), B=10, cvxopt; both clipped at 10 and normalised to mean 1.")
    if "dapt" in methods:
        notes.append(f"- DAPT: masked-LM on the first {settings['dapt']['texts']} target reviews ({settings['dapt']}): "
                     "MiniLM's top layer + a new MLM head tied to the input embeddings (the checkpoint has none); "
                     "features = the cached freeze-line states run through the adapted top layer.")
    if {"self_training", "mmd_self_training"} & set(methods):
        notes.append("- self_training (Ruder & Plank 2018; class-balanced as in CBST, Zou et al. 2018): fit on the "
                     "source, then 3 rounds, each labelling the target with the last model, keeping the surest 20%, "
                     "40%, 60% of the rows predicted for each class and fitting a fresh model on source + those rows "
                     "(settings chosen before any run). mmd_self_training: the same, with the MMD objective in every "
                     "fit; it was added after the self_training and mmd columns had been seen.")
        for method in ("self_training", "mmd_self_training"):
            rounds = list(results.get(f"{method}_rounds", {}).values())
            if method in methods and rounds:
                right = [100 * np.mean([r[i]["pseudo_accuracy"] for r in rounds]) for i in range(len(rounds[0]))]
                notes.append(f"  {method}'s pseudo-labels were " + ", ".join(f"{v:.1f}%" for v in right)
                             + " right, by round, on average over the pairs (target labels used only for this).")
    return notes


def write_report(results: dict, methods: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(results["pairs"])
    table = {p: results["pairs"][p] for p in pairs}
    means = {m: float(np.mean([table[p][m] for p in pairs if m in table[p]])) for m in methods}
    lines = ["# Amazon cross-domain sentiment: domain adaptation", "",
             f"Command: `{results['settings']['command']}` (seed {results['settings']['seed']}); "
             f"data: Blitzer et al. 2007 multi-domain reviews (../shared/data/amazon_multidomain); "
             f"{results['seconds'] / 60:.1f} min on this machine.", "",
             "Accuracy on the 2,000 target reviews. `*` marks negative transfer: below source-only on that pair. "
             "A-distance: proxy A-distance of the frozen MiniLM features of the two domains (0 = alike, 2 = separable).",
             "", "| pair | A-dist | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for p in pairs:
        base = table[p].get("source_only")
        cells = []
        for m in methods:
            v = table[p].get(m)
            flag = "*" if (v is not None and base is not None and m not in ("source_only", "target_supervised")
                           and v < base) else ""
            cells.append("" if v is None else f"{100 * v:.1f}{flag}")
        distance = results["a_distance"].get(p)
        lines.append(f"| {p} | {'' if distance is None else f'{distance:.2f}'} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | | " + " | ".join(f"**{100 * means[m]:.1f}**" for m in methods) + " |")
    counts = {m: sum(m in table[p] for p in pairs) for m in methods}
    if any(c < len(pairs) for c in counts.values()):
        lines.append("| pairs run | | " + " | ".join(str(counts[m]) for m in methods) + " |")
    if "source_only" in methods:
        lines += ["", "Against source-only, over the pairs each method ran:", "",
                  "| method | mean - source-only (points) | pairs improved |", "|---|---|---|"]
        for m in methods:
            ran = [p for p in pairs if m in table[p] and "source_only" in table[p]]
            if m == "source_only" or not ran:
                continue
            gain = 100 * float(np.mean([table[p][m] - table[p]["source_only"] for p in ran]))
            better = sum(table[p][m] > table[p]["source_only"] for p in ran)
            lines.append(f"| {m} | {gain:+.2f} | {better} / {len(ran)} |")
    if results.get("dapt_mlm_loss"):
        lines += ["", "DAPT masked-LM loss on target text (before -> after): " + ", ".join(
            f"{d} {a:.2f} -> {b:.2f}" for d, (a, b) in results["dapt_mlm_loss"].items())]
    settings = results["settings"]
    layers = results.get("feature_layers")
    lines += ["", "## Settings and why", "",
              f"- Encoder {settings['encoder']}, max_length {settings['max_length']} (median review ~140 tokens): run "
              "once per domain, keeping the hidden states at the freeze line below the top layer (fp16)."
              if not layers else
              f"- Encoder {settings['encoder']}, max_length {settings['max_length']} (median review ~140 tokens): run "
              "once per domain, keeping every layer's mean-pooled output (`--feature-layer ranked`). Each pair reads "
              "the layer that LogME (nlptl.transferability, standardized features) ranks best on the *source* "
              "domain's 2,000 labelled reviews: " + ", ".join(f"{d} {c['layer']}" for d, c in layers.items())
              + "; target-supervised reads its own domain's. No target label takes part in the choice.",
              (f"- Every method trains the same model with `nlptl.fit`: MiniLM's own top layer, replayed on the cached "
               f"states below it, mean-pooled -> linear classifier (`--model top_layer`); {settings['fit']}."
               if settings.get("model") == "top_layer" else
               f"- Every method trains the same model with `nlptl.fit`: frozen mean-pooled MiniLM vectors -> a "
               f"256-unit adapter (Linear+GELU, what the adaptation losses reshape) -> linear classifier; {settings['fit']}. "
               "The adapter makes one fit take about a second; MiniLM's top layer (`--model top_layer`) about a minute."),
              *method_notes(results, methods),
              "- No setting was tuned on target labels; each method is scored once after its last epoch.",
              "", "![mean accuracy per method](domain_adaptation.png)"]
    write_text_atomically(out / "report.md", "\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    axes[0].bar(range(len(methods)), [100 * means[m] for m in methods], color="tab:blue")
    axes[0].set_xticks(range(len(methods)), methods, rotation=35, ha="right")
    axes[0].set_ylim(min(100 * v for v in means.values()) - 3, 100 * max(means.values()) + 2)
    axes[0].set_ylabel("mean target accuracy (%)")
    for m in methods:
        axes[1].plot(range(len(pairs)), [100 * table[p].get(m, np.nan) for p in pairs], marker="o", label=m)
    axes[1].set_xticks(range(len(pairs)), pairs, rotation=45, ha="right")
    axes[1].legend(fontsize=7)
    axes[1].set_ylabel("target accuracy (%)")
    fig.tight_layout()
    with replaced_atomically(out / "domain_adaptation.png") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
