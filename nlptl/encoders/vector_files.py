"""Vector-file readers: GloVe and word2vec text parsed in numpy chunks, binary word2vec and fastText via gensim.

Text files are parsed with numpy, about 4x faster than gensim's ``load_word2vec_format`` on GloVe
6B. Every reader checks the format first, and its errors name the file, the offending line or
field, and the ``kind=`` that would read the file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import FASTTEXT_MAGIC

_UTF8_BOM = b"\xef\xbb\xbf"  # some editors start UTF-8 files with it; it is not part of the first word
_FORMATS = {"glove": "GloVe text file", "word2vec": "word2vec file", "fasttext": "Facebook fastText .bin model"}


def read_word2vec(path: str | os.PathLike, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Words and (V, D) vectors of a word2vec file; text or binary body detected after the header."""
    path = _check_file(path, "word2vec")
    with open(path, "rb") as f:
        header, body = f.readline(), f.read(1 << 16)
    header = header.removeprefix(_UTF8_BOM)
    fields = _text_fields(path, header, "word2vec")
    if len(fields) != 2 or not all(x.isdigit() for x in fields):
        raise _wrong_format(path, "word2vec", f"its first line {_show(header)} is not a 'count dim' header")
    count, dim = int(fields[0]), int(fields[1])
    if count < 1 or dim < 1:
        raise ValueError(f"{str(path)!r} line 1: the header {_show(header)} must give a positive word count and "
                         "dimension; fix the header")
    if _looks_like_text(body):  # however many numbers: a header that disagrees is then an error, not binary
        return read_text_vectors(path, header=True, limit=limit, kind="word2vec")
    from gensim.models import KeyedVectors

    try:
        kv = KeyedVectors.load_word2vec_format(str(path), binary=True, limit=limit)
    except (EOFError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not a valid binary word2vec file ({exc}); is it damaged or cut short, "
                         "or does the header's 'count dim' not match the vectors?") from None
    words = list(kv.index_to_key)
    if limit is None and len(words) == count:
        _check_binary_end(path, len(header), words, dim)
    return words, _check_finite(path, kv.vectors, words)


def _looks_like_text(body: bytes) -> bool:
    """A text body's first line is a word then numbers; a binary body's raw float bytes never read so."""
    try:
        parts = body.split(b"\n", 1)[0].decode("utf-8").split()
    except UnicodeDecodeError:
        return False
    return len(parts) >= 2 and _all_floats(parts[1:])


def _all_floats(parts: list[str]) -> bool:
    try:
        [float(p) for p in parts]
    except ValueError:
        return False
    return True


def _check_binary_end(path: Path, header_bytes: int, words: list[str], dim: int) -> None:
    """gensim stops after the header's count of vectors: more data after them means the header undercounts."""
    records = header_bytes + sum(len(w.encode("utf-8")) for w in words) + len(words) * (1 + 4 * dim)
    size = path.stat().st_size
    # records may each end with a newline (the C tool's layout) or not (gensim's), plus one trailing newline
    if size > records + len(words) + 1:
        extra = size - records - len(words)
        raise ValueError(f"{str(path)!r}: the header says {len(words)} words of dimension {dim} but about {extra} "
                         f"more bytes (some {max(1, extra // (4 * dim + 2))} vectors) follow them; the header "
                         "undercounts: fix its count, or pass limit= to read only the first vectors on purpose")


def read_text_vectors(path: str | os.PathLike, header: bool, limit: int | None,
                      kind: str) -> tuple[list[str], np.ndarray]:
    """Words and (V, D) vectors of a 'word float ...' text file, parsed in numpy (~4x gensim's speed)."""
    path = _check_file(path, kind)
    words: list[str] = []
    blocks: list[np.ndarray] = []
    with open(path, "rb") as f:
        first = f.readline().removeprefix(_UTF8_BOM)
        fields = _text_fields(path, first, kind)
        is_header = len(fields) == 2 and all(x.isdigit() for x in fields)
        if header != is_header:
            why = ("it has no 'count dim' header line" if header
                   else f"its first line {_show(first)} is a word2vec 'count dim' header")
            raise _wrong_format(path, kind, why)
        count, dim = (int(fields[0]), int(fields[1])) if header else (None, len(fields) - 1)
        if dim < 1:
            raise _wrong_format(path, kind, f"line 1 has a word but no numbers: {_show(first)}")
        line_no, lines = (2, []) if header else (1, [first])
        while limit is None or len(words) < limit:
            lines += f.readlines(1 << 24)
            if limit is not None:
                lines = lines[: limit - len(words)]
            if not lines:
                break
            chunk_words, chunk = _parse_lines(path, lines, line_no, dim)
            words += chunk_words
            blocks.append(chunk)
            line_no, lines = line_no + len(lines), []
    if not words:
        raise _wrong_format(path, kind, "it holds no vectors")
    vectors = np.concatenate(blocks)  # (V, D)
    if limit is None and count is not None and count != len(words):
        raise ValueError(f"{str(path)!r}: the header says {count} words but the file has {len(words)} (vector "
                         "lines); fix the header's count, or restore the file if it was cut short")
    return words, _check_finite(path, vectors, words)


def read_fasttext(path: str | os.PathLike):
    """gensim FastTextKeyedVectors of a Facebook .bin model, after checking it is one."""
    path = _check_file(path, "fasttext")
    with open(path, "rb") as f:
        magic = int.from_bytes(f.read(4), "little")
    if magic != FASTTEXT_MAGIC:
        raise _wrong_format(path, "fasttext", "it does not start with fastText's magic number "
                            "(a fastText .vec file is word2vec text: pass kind='word2vec')")
    from gensim.models.fasttext import load_facebook_vectors

    from .fasttext_layout import check_fasttext_layout

    check_fasttext_layout(path)  # gensim loops forever on a file cut short inside its vocabulary
    try:
        return load_facebook_vectors(str(path))
    except (EOFError, ValueError, OSError, NotImplementedError, AssertionError) as exc:
        raise ValueError(f"{str(path)!r} starts like a fastText .bin but cannot be read ({exc}); "
                         "is it damaged?") from None


def _parse_lines(path: Path, lines: list[bytes], first_no: int, dim: int) -> tuple[list[str], np.ndarray]:
    stripped = [line.rstrip() for line in lines]
    words, rests = [], []
    for line in stripped:
        if line:  # blank lines (a trailing one, say) carry nothing
            word, _, rest = line.partition(b" ")
            words.append(word)
            rests.append(rest)
    try:
        values = np.fromstring(b" ".join(rests), dtype=np.float32, sep=" ")
    except ValueError:
        values = None
    if values is None or values.size != len(words) * dim:
        _raise_bad_line(path, stripped, first_no, dim)
    try:
        decoded = b"\n".join(words).decode("utf-8").split("\n")
    except UnicodeDecodeError:
        bad = next(i for i, line in enumerate(stripped) if not _is_utf8(line.partition(b" ")[0]))
        raise ValueError(f"{str(path)!r} line {first_no + bad}: the word is not UTF-8 text") from None
    return decoded, values.reshape(len(words), dim)  # (n, D)


def _raise_bad_line(path: Path, lines: list[bytes], first_no: int, dim: int) -> None:
    """Find the first line that breaks the format and say which it is (the slow path, only on errors)."""
    for i, line in enumerate(lines):
        if not line:
            continue
        word, _, rest = line.partition(b" ")
        parts = rest.split()
        if len(parts) != dim:
            raise ValueError(f"{str(path)!r} line {first_no + i}: word {word[:40].decode('utf-8', 'replace')!r} has "
                             f"{len(parts)} numbers but the vectors have {dim} (from the first line: the header's "
                             "dimension, or the first vector's length); make every line and the header agree")
        for part in parts:
            try:
                float(part)
            except ValueError:
                raise ValueError(f"{str(path)!r} line {first_no + i}: {part[:20].decode('utf-8', 'replace')!r} "
                                 "is not a number") from None
    raise ValueError(f"{str(path)!r}: lines {first_no}-{first_no + len(lines) - 1} could not be parsed as vectors")


def _check_finite(path: Path, vectors: np.ndarray, words: list[str]) -> np.ndarray:
    finite = np.isfinite(vectors).all(1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise ValueError(f"{str(path)!r}: the vector of {words[bad]!r} (row {bad + 1}) holds NaN or infinity")
    return vectors


def _check_file(path: str | os.PathLike, kind: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"kind={kind!r} takes a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{kind} vector file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"{kind} vector file {str(path)!r} is not a file; pass the {_FORMATS[kind]} itself")
    return path


def _text_fields(path: Path, line: bytes, kind: str) -> list[str]:
    if line[:4] and int.from_bytes(line[:4], "little") == FASTTEXT_MAGIC:
        raise _wrong_format(path, kind, "it is a binary fastText model")
    if line.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\0\0" in (line[1:4:2], line[0:3:2]):
        raise ValueError(f"{str(path)!r} is UTF-16 text; {kind} files must be UTF-8: convert it, e.g. "
                         "iconv -f UTF-16 -t UTF-8 IN > OUT")
    if b"\0" in line or not _is_utf8(line):
        raise _wrong_format(path, kind, "its first line is not UTF-8 text (a binary file?)")
    return line.decode("utf-8").split()


def _show(line: bytes) -> str:
    return repr(line[:60].decode("utf-8", "replace").rstrip())


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _wrong_format(path: Path, kind: str, why: str) -> ValueError:
    from . import infer_kind

    try:
        guess = infer_kind(path)
    except ValueError:
        guess = kind
    hint = f"; it looks like a {_FORMATS[guess]}: pass kind={guess!r}" if guess != kind else ""
    return ValueError(f"{str(path)!r} is not a {_FORMATS[kind]}: {why}{hint}")
