"""Child for the multi-process test: evaluate a seeded model, then train briefly; print JSON."""
from __future__ import annotations

import json
import sys

import torch

import nlptl
from nlptl.heads import ClassificationHead
from tests.fake_encoders import WordEncoder

WORDS = ["good", "great", "bad", "awful", "fine", "poor", "nice"]
TEXTS = [f"{WORDS[i % 7]} film {'and more words ' * (i % 5)}number {i}" for i in range(37)]  # 37: uneven split
LABELS = ["positive" if t.split()[0] in ("good", "great", "fine", "nice") else "negative" for t in TEXTS]


def main(out_file: str) -> None:
    encoder = WordEncoder.from_texts(TEXTS, seed=0)
    torch.manual_seed(0)
    model = nlptl.TransferModel(encoder, ClassificationHead(2), labels=["negative", "positive"])
    data = {"text": TEXTS, "label": LABELS}
    before = nlptl.evaluate(model, data, batch_size=4)
    result = nlptl.fit(model, data, data, strategy="full", epochs=6, batch_size=4, learning_rate=3e-3,
                       progress=False)
    from accelerate import PartialState

    if PartialState().is_main_process:
        with open(out_file, "w") as f:
            json.dump({"before": before, "after": result.metrics, "processes": PartialState().num_processes,
                       "losses": [h["train_loss"] for h in result.history]}, f)


if __name__ == "__main__":
    main(sys.argv[1])
