"""Recipe: transfer between image tasks, offline, with scikit-learn's 8x8 digits.

No pretrained vision weights can be downloaded here, so the recipe makes its own source task:
a small CNN is pretrained on digits 0-4 (all of them), then transferred to digits 5-9 with only
--shots labelled images per class. Three runs on the target task, then one report:

    pretrained_frozen   the pretrained CNN as a frozen feature extractor, a new head trained
    pretrained_full     the pretrained CNN fine-tuned end to end at a low learning rate
    from_scratch        the same CNN from random initialisation, trained end to end

    python recipes/image_classification.py --shots 10 --output reports/digits

With a real backbone, swap the encoder: nlptl.load_encoder("microsoft/resnet-50", kind="image").
"""
import argparse
import json
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn

import nlptl
from nlptl.artifacts import write_text_atomically
from nlptl.data import dataset_fingerprint
from nlptl.heads import ClassificationHead
from nlptl.report import write_report
from nlptl.runs import environment, write_results


class SmallCNN(nn.Module):
    """Two conv blocks: (B, 3, 16, 16) -> feature map (B, 32, 4, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(x))


def digits(classes, rng, shots=None):
    """A datasets.Dataset of digit images (upscaled grey -> RGB PIL) and label names."""
    data = load_digits()
    rows = [i for i in range(len(data.target)) if data.target[i] in classes]
    rng.shuffle(rows)
    if shots is not None:  # the first `shots` of each class train; the rest evaluate
        picked = {c: [i for i in rows if data.target[i] == c][:shots] for c in classes}
        train = [i for c in classes for i in picked[c]]
        rest = [i for i in rows if i not in set(train)]
        return to_dataset(data, train, classes), to_dataset(data, rest, classes)
    return to_dataset(data, rows, classes)


def to_dataset(data, rows, classes):
    images = [Image.fromarray((data.images[i] * 255 / 16).astype(np.uint8)).convert("RGB") for i in rows]
    names = [str(c) for c in classes]
    return datasets.Dataset.from_dict(
        {"image": images, "label": [names.index(str(data.target[i])) for i in rows]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}))


def new_encoder():
    return nlptl.load_encoder(SmallCNN(), kind="module", image_size=16, mean=[0.5] * 3, std=[0.5] * 3)


def train_run(name, encoder, train, test, strategy, learning_rate, args, runs_dir):
    labels = train.features["label"].names
    model = nlptl.TransferModel(encoder, ClassificationHead(len(labels), hidden_size=64), labels=labels)
    out = runs_dir / name
    result = nlptl.fit(model, train, test, strategy=strategy, epochs=args.epochs, batch_size=16,
                       learning_rate=learning_rate, head_learning_rate=3e-3, seed=args.seed, progress=False,
                       output_dir=str(out), overwrite=True, image_column="image")
    predicted = model.predict(list(test["image"]))
    config = {"name": name, "task": "image-classification", "dataset": "sklearn digits 5-9", "strategy": strategy,
              "baseline": "from_scratch" if name == "from_scratch" else None, "seed": args.seed,
              "encoder": "SmallCNN pretrained on digits 0-4" if name != "from_scratch" else "SmallCNN",
              "shots": args.shots, "epochs": args.epochs, "learning_rate": learning_rate,
              "command": f"python recipes/image_classification.py --shots {args.shots} --seed {args.seed}",
              "environment": environment(), "data_fingerprint": {"train": dataset_fingerprint(train),
                                                                 "eval": dataset_fingerprint(test)}}
    write_text_atomically(out / "config.json", json.dumps(config, indent=2))
    predictions = {"labels": labels, "references": list(test["label"]), "predictions": [labels.index(p) for p in predicted]}
    write_results(out, vars(result), predictions, train_size=len(train), eval_size=len(test))
    print(f"{name}: accuracy {result.metrics['accuracy']:.3f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=10, help="labelled target images per class")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", default="runs/digits")
    parser.add_argument("--output", default="reports/digits")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    runs_dir = Path(args.runs_dir)

    # 1. Source task: pretrain the CNN on every image of digits 0-4.
    torch.manual_seed(args.seed)
    source = digits(range(5), rng)
    pretrained = nlptl.TransferModel(new_encoder(), ClassificationHead(5, hidden_size=64))
    nlptl.fit(pretrained, source, strategy="full", epochs=10, batch_size=32, learning_rate=3e-3, seed=args.seed,
              progress=False)
    pretrained.encoder.save_pretrained(runs_dir / "source_encoder")

    # 2. Target task: digits 5-9 from a few labelled images each.
    train, test = digits(range(5, 10), rng, shots=args.shots)
    reload = lambda: nlptl.load_encoder(runs_dir / "source_encoder", module=SmallCNN())  # noqa: E731
    directories = [
        train_run("pretrained_frozen", reload(), train, test, "feature_extraction", 3e-3, args, runs_dir),
        train_run("pretrained_full", reload(), train, test, "full", 1e-3, args, runs_dir),
    ]
    torch.manual_seed(args.seed)
    directories.append(train_run("from_scratch", new_encoder(), train, test, "full", 3e-3, args, runs_dir))
    print(f"report: {write_report(directories, args.output, title=f'Digits 0-4 -> 5-9, {args.shots} shots')}")


if __name__ == "__main__":
    main()
