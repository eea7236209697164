"""Child process for the kill -9 / resume test: trains a tiny seeded model, optionally slowly."""
from __future__ import annotations

import sys
import time

import torch
from safetensors.torch import save_file

import nlptl
from nlptl.heads import ClassificationHead
from tests.fake_encoders import WordEncoder

TEXTS = [f"{w} film {'and so on ' * (i % 4)}number {i}" for i, w in enumerate(["good", "great", "bad", "awful"] * 12)]
LABELS = ["positive" if t.split()[0] in ("good", "great") else "negative" for t in TEXTS]


def main(output_dir: str, resume: bool, step_delay: float, weights_out: str, sampling: str) -> None:
    encoder = WordEncoder.from_texts(TEXTS, seed=0)
    model = nlptl.TransferModel(encoder, ClassificationHead(2, dropout=0.3), labels=["negative", "positive"])
    torch.manual_seed(0)
    with torch.no_grad():  # a seeded head, identical in every process
        for p in model.head.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    if step_delay:
        collate = model.head.collate
        model.head.collate = lambda enc, rows: (time.sleep(step_delay), collate(enc, rows))[1]
    data = {"text": TEXTS, "label": LABELS}
    options = {}
    if sampling == "two-sources":  # a second named source, one source drawn per step
        data = {"first": {"text": TEXTS[:32], "label": LABELS[:32]}, "second": {"text": TEXTS[32:], "label": LABELS[32:]}}
        options = {"task_sampling": "temperature"}
    nlptl.fit(model, data, strategy="full", epochs=3, batch_size=4, learning_rate=1e-3, output_dir=output_dir,
              save_every_steps=3, resume=resume, seed=0, progress=False, group_by_length=sampling == "grouped",
              **options)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights_out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] == "resume", float(sys.argv[3]), sys.argv[4], sys.argv[5])
