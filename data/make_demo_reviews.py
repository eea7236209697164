"""Write data/demo_reviews/{train,test}.tsv: the small sentiment set the README demo trains on.

Short product reviews built from templates with a fixed seed. The test split uses sentiment words
that never occur in the training split (e.g. train "excellent", test "superb"), so it measures
what a pretrained encoder brings: a model that learned only the training words cannot know that
"superb" is positive, one pretrained on English can.

    python data/make_demo_reviews.py        # rewrites the two files, identically every time
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

SEED = 13
TRAIN_WORDS = {
    "positive": ["great", "excellent", "good", "lovely", "impressive", "solid", "pleasant", "reliable"],
    "negative": ["terrible", "awful", "bad", "poor", "disappointing", "flimsy", "annoying", "unreliable"],
}
TEST_WORDS = {
    "positive": ["superb", "fantastic", "wonderful", "outstanding", "delightful", "sturdy"],
    "negative": ["dreadful", "horrible", "lousy", "mediocre", "faulty", "useless"],
}
THINGS = ["battery", "screen", "keyboard", "camera", "speaker", "charger", "case", "headphones",
          "blender", "kettle", "vacuum", "lamp", "backpack", "jacket", "printer", "router"]
TEMPLATES = [
    "The {thing} is {word}.",
    "Honestly, the {thing} was {word}.",
    "I found this {thing} {word} after a month of use.",
    "A {word} {thing} overall.",
    "My new {thing} turned out {word}, as my friends said.",
    "{Word} {thing}, would say the same again.",
    "After two weeks the {thing} still feels {word}.",
    "The {thing} looks {word} and works {word2} too.",
]


def make(words: dict[str, list[str]], n: int, rng: random.Random) -> list[tuple[str, str]]:
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        word, word2 = rng.choice(words[label]), rng.choice(words[label])
        template = rng.choice(TEMPLATES)
        text = template.format(thing=rng.choice(THINGS), word=word, Word=word.capitalize(), word2=word2)
        rows.append((text, label))
    rng.shuffle(rows)
    return rows


def main() -> None:
    rng = random.Random(SEED)
    out = Path(__file__).parent / "demo_reviews"
    out.mkdir(exist_ok=True)
    for split, words, n in (("train", TRAIN_WORDS, 240), ("test", TEST_WORDS, 160)):
        with open(out / f"{split}.tsv", "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["text", "label"])
            writer.writerows(make(words, n, rng))


if __name__ == "__main__":
    main()
