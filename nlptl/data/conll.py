"""Word-tagged data: CoNLL-style column files and JSON lines of ``tokens``/``tags``, as IOB2.

CoNLL files hold one word a line (``token ... TAG``: the first column is the word, the last its
tag, any columns between are ignored), a blank line between sentences, and ``-DOCSTART-`` lines
between documents (skipped). JSON lines hold ``{"tokens": [...], "tags": [...]}``. Tags in IOB1,
IOB2 or BIOES come back as IOB2, the scheme the heads and seqeval's strict scoring read; the
scheme is detected unless ``scheme=`` names it. Every error names the file and the line.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
import datasets

__all__ = ["SCHEMES", "CONLL_EXTENSIONS", "read_tagged_file", "load_tagged_files", "load_conll2003",
           "is_tagged_jsonl", "CONLL2003_LAYOUT"]

SCHEMES = ("IOB1", "IOB2", "BIOES")
CONLL_EXTENSIONS = (".conll", ".conll03", ".iob", ".iob2", ".bio", ".bioes", ".txt")  # .txt: CoNLL-2003's own names
CONLL2003_LAYOUT = "conll2003/train.txt and conll2003/dev.txt (and/or test.txt): 'token TAG' lines, IOB1 or IOB2"
_TAG = re.compile(r"^(?:O|([BIES])-(.+))$")
FEATURES = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                              "tags": datasets.Sequence(datasets.Value("string"))})


class _Sentences:
    """Sentences of one file plus the line each tag came from, for errors that point at it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tokens: list[list[str]] = []
        self.tags: list[list[str]] = []
        self.lines: list[list[int]] = []

    def add(self, tokens: list[str], tags: list[str], lines: list[int]) -> None:
        self.tokens.append(tokens)
        self.tags.append(tags)
        self.lines.append(lines)


def _read_conll(path: Path) -> _Sentences:
    from .checks import read_text_file

    out, tokens, tags, lines = _Sentences(path), [], [], []
    for number, line in enumerate(read_text_file(path).splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                out.add(tokens, tags, lines)
            tokens, tags, lines = [], [], []
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}:{number}: the line {line.strip()!r} has a token but no tag; a CoNLL file "
                             "holds 'token TAG' per line (columns separated by spaces or tabs)")
        tokens.append(fields[0])
        tags.append(fields[-1])
        lines.append(number)
    if tokens:
        out.add(tokens, tags, lines)
    return out


def _read_jsonl(path: Path) -> _Sentences:
    from .checks import read_text_file

    out = _Sentences(path)
    for number, line in enumerate(read_text_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a JSON object ({err.msg})") from None
        if not isinstance(record, dict) or "tokens" not in record or "tags" not in record:
            raise ValueError(f"{path}:{number}: each line needs a JSON object with 'tokens' and 'tags' lists")
        tokens, tags = record["tokens"], record["tags"]
        if not (isinstance(tokens, list) and isinstance(tags, list)) or len(tokens) != len(tags):
            raise ValueError(f"{path}:{number}: 'tokens' and 'tags' must be lists of equal length, got "
                             f"{len(tokens) if isinstance(tokens, list) else tokens!r} tokens and "
                             f"{len(tags) if isinstance(tags, list) else tags!r} tags")
        if not all(isinstance(t, str) and t for t in tokens) or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"{path}:{number}: tokens must be non-empty strings and tags strings")
        out.add(tokens, tags, [number] * len(tokens))
    return out


def detect_scheme(sentences: _Sentences) -> str:
    """BIOES when E-/S- tags occur; IOB1 when some entity starts with I-; else IOB2."""
    prefixes = {t[0] for tags in sentences.tags for t in tags if t != "O"}
    if prefixes & {"E", "S"}:
        return "BIOES"
    for tags in sentences.tags:
        previous = "O"
        for tag in tags:
            if tag.startswith("I-") and previous[2:] != tag[2:]:
                return "IOB1"
            previous = tag
    return "IOB2"


def _to_iob2(sentences: _Sentences, scheme: str) -> None:
    """Rewrite every sentence's tags as IOB2 in place, checking each tag against the scheme."""
    allowed = {"IOB1": "BI", "IOB2": "BI", "BIOES": "BIES"}[scheme]
    for tags, lines in zip(sentences.tags, sentences.lines):
        open_kind = None  # the entity type an I- (or E-) tag may continue here
        for k, (tag, number) in enumerate(zip(tags, lines)):
            match = _TAG.match(tag)
            if match is None or (match.group(1) and match.group(1) not in allowed):
                raise ValueError(f"{sentences.path}:{number}: tag {tag!r} is not in the {scheme} scheme (O, "
                                 f"{', '.join(p + '-TYPE' for p in allowed)}); pass scheme= one of {SCHEMES}")
            prefix, kind = match.groups()
            continues = prefix in ("I", "E") and open_kind == kind
            if prefix in ("I", "E") and not continues and scheme != "IOB1":
                raise ValueError(f"{sentences.path}:{number}: {tag!r} does not continue an entity of its type, "
                                 f"which {scheme} requires (an entity starts with B-); if the file is IOB1 pass "
                                 "scheme='IOB1'")
            tags[k] = "O" if prefix is None else f"{'I' if continues else 'B'}-{kind}"
            open_kind = kind if prefix in ("B", "I") else None


def _read(path: str | Path, scheme: str | None) -> _Sentences:
    path = Path(path)
    if scheme is not None and scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; choose one of {SCHEMES} (or None to detect it)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    sentences = _read_jsonl(path) if path.suffix.lower() in (".jsonl", ".json") else _read_conll(path)
    if not sentences.tokens:
        raise ValueError(f"{path}: no tagged sentences found")
    _to_iob2(sentences, scheme or detect_scheme(sentences))
    return sentences


def _dataset(sentences: _Sentences) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"tokens": sentences.tokens, "tags": sentences.tags}, features=FEATURES)


def read_tagged_file(path: str | Path, scheme: str | None = None) -> datasets.Dataset:
    """One CoNLL or JSON-lines file -> a Dataset with ``tokens`` and ``tags`` (IOB2) columns."""
    return _dataset(_read(path, scheme))


def load_tagged_files(files: dict[str, str | Path], scheme: str | None = None) -> datasets.DatasetDict:
    """{split: file} -> DatasetDict; a tag in another split that training never has is an error."""
    read = {split: _read(path, scheme) for split, path in files.items()}
    if "train" in read:
        known = {t for tags in read["train"].tags for t in tags}
        for split, sentences in read.items():
            for tags, lines in zip(sentences.tags, sentences.lines):
                for tag, number in zip(tags, lines):
                    if tag not in known:
                        raise ValueError(f"{sentences.path}:{number}: tag {tag!r} (as IOB2) never occurs in the "
                                         f"training file {read['train'].path}, whose tags are {sorted(known)}; "
                                         "the splits must share one tag set")
    return datasets.DatasetDict({split: _dataset(s) for split, s in read.items()})


def is_tagged_jsonl(path: str | Path) -> bool:
    """Whether a .jsonl file's first record has ``tokens`` and ``tags`` (so it is tagging data)."""
    path = Path(path)
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(record, dict) and "tokens" in record and "tags" in record
    return False


def load_conll2003(root: Path) -> datasets.DatasetDict:
    """CoNLL-2003 English from ``root/conll2003/``: "train", "validation" (dev.txt), "test" when present."""
    from .local import LocalCopyMissing

    candidates = {"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}
    files = {split: Path(root) / "conll2003" / name for split, name in candidates.items()}
    files = {split: path for split, path in files.items() if path.is_file()}
    if not files:
        raise LocalCopyMissing(f"no local copy of 'conll2003' under {root}: expected {CONLL2003_LAYOUT}")
    return load_tagged_files(files)
