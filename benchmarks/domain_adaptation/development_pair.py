"""What the full fine-tuning checks share: their output folder, the development pair's split, the model.

dann_stability.py, cli_defaults_check.py, mmd_stability.py and iw_stability.py all train MiniLM the
CLI's way on one development pair (dvd -> electronics by default): 1,600 of the source's 2,000
labelled reviews (seeded shuffle, seed 0) to train, the other 400 held out to check that the source
task is kept, and every target review to score (its labels only for scoring).
"""
import json
from pathlib import Path

import nlptl
from nlptl.artifacts import write_text_atomically
from nlptl.data import load_dataset
from nlptl.heads import ClassificationHead

TOLERANCE = 0.02  # held-out source accuracy may fall this far below source-only's (every check's flag)

def new_output(path: str) -> Path:
    """The --output folder, refused when it exists (nothing is written until the end)."""
    out = Path(path)
    if out.exists():
        raise SystemExit(f"--output {out} exists; choose a new folder")
    return out


def development_pair(data_dir: str, source: str = "dvd", target: str = "electronics"):
    """(train, held_out, target): the source's seeded 1,600 / 400 split and the whole target domain."""
    reviews = load_dataset("amazon_reviews", data_dir=data_dir, domain=source)["train"].shuffle(seed=0)
    train, held_out = reviews.select(range(1600)), reviews.select(range(1600, 2000))
    return train, held_out, load_dataset("amazon_reviews", data_dir=data_dir, domain=target)["train"]


def new_model(labels, max_length: int = 64) -> nlptl.TransferModel:
    """Fresh all-MiniLM-L6-v2 under a two-class ClassificationHead, as `nlptl train` builds it."""
    encoder = nlptl.load_encoder("sentence-transformers/all-MiniLM-L6-v2", max_length=max_length)
    return nlptl.TransferModel(encoder, ClassificationHead(2), labels=labels)


def write_result(out: Path, name: str, summary: dict) -> None:
    out.mkdir(parents=True)
    write_text_atomically(out / name, json.dumps(summary, indent=2) + "\n")
