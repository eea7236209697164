"""Writing artefacts safely: atomic files, and directories replaced whole or not at all.

Why a helper and not ``shutil.rmtree`` + ``os.replace``: deleting the old directory first loses
the user's model when the process dies in between, and deletes whatever else the user kept in
that directory. ``save_directory`` instead

* refuses, *before writing anything*, a target that is the working directory, one of its parents
  or the home directory, a file, or a directory holding anything but a saved nlptl artefact (its
  ``marker`` file plus the files that save wrote, listed in ``nlptl_files.json``);
* writes the new artefact into a staging directory next to the target, then swaps the two in one
  step (Linux ``renameat2(RENAME_EXCHANGE)``), so a kill at any moment leaves the old artefact or
  the new one at the target. Where the exchange is unavailable it renames the old one aside,
  renames the new one in, and ``recover_directory`` (run by every later save and load) puts the
  aside copy back if a kill came between the two renames;
* removes stray staging/aside directories of earlier killed saves of the same target.

One writer per target at a time: two processes saving into one directory at once is not supported.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import json
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

MANIFEST_NAME = "nlptl_files.json"
_STAGING, _ASIDE = "nlptl-staging", "nlptl-aside"
# Files an nlptl or Hugging Face save writes, accepted in artefacts saved before manifests existed.
_LEGACY_FILES = (
    "nlptl_encoder.json", "nlptl_model.json", "config.json", "generation_config.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json",
    "merges.txt", "spiece.model", "sentencepiece.bpe.model", "preprocessor_config.json", "processor_config.json",
    "chat_template.jinja", "*.safetensors", "model.safetensors.index.json",
)
# A TransferModel's sub-folders: encoder/ (an encoder artefact, known by its marker) and heads/ (weights only).
_LEGACY_SUBDIRECTORIES = {"encoder": "nlptl_encoder.json", "heads": None}
_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


# ----- files ------------------------------------------------------------------------------------

@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike, mode: str = "wb", **open_options: Any) -> Iterator[IO]:
    """Yield a new file beside ``path``, open for writing; when the block ends without error, rename it over ``path``.

    Readers see the old file or the new one, never half. The new file gets the permission bits a
    plain ``open(path, "w")`` would leave: those of the file it replaces, else the umask's
    (``tempfile.mkstemp`` would make every report and metrics file private to its owner). On an
    error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    temporary = _new_sibling(path.parent, f".{path.name}.", directory=False, like=path)
    try:
        with open(temporary, mode, **open_options) as f:
            yield f
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``replaced_atomically``: the old file or the new one, never half."""
    with replaced_atomically(path) as f:
        f.write(data)


def _new_sibling(parent: Path, prefix: str, directory: bool, like: Path) -> Path:
    """Create a fresh, uniquely named file or directory in ``parent`` with the mode ``like`` has, or the umask's.

    ``tempfile.mkstemp``/``mkdtemp`` would give 0600/0700 whatever the umask, and that mode would
    stay on the file or artefact directory it is renamed to.
    """
    for _ in range(100):
        candidate = parent / f"{prefix}{secrets.token_hex(6)}{'' if directory else '.tmp'}"
        try:
            if directory:
                os.mkdir(candidate, 0o777)  # the umask applies, as for any new directory
            else:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        try:
            if like.exists() and like.is_dir() == directory:
                os.chmod(candidate, stat.S_IMODE(like.stat().st_mode))  # replacing keeps the old bits
        except BaseException:
            (os.rmdir if directory else os.unlink)(candidate)
            raise
        return candidate
    raise FileExistsError(f"could not create a new temporary name beginning {prefix!r} in {parent}")


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """``write_bytes_atomically`` for UTF-8 text."""
    write_bytes_atomically(path, text.encode("utf-8"))


def check_results_table(path: str | os.PathLike, resume: bool, overwrite: bool) -> None:
    """Before a long measuring run: refuse to replace the results table an earlier run left at ``path``.

    A recipe's table can hold hours of measurements (SetFit seeds, 12 adaptation pairs), so running
    the same command again must not silently start it over: ``resume`` keeps its rows and
    ``overwrite`` replaces it. Raises ``ValueError`` for both at once, ``FileExistsError`` for neither.
    """
    if resume and overwrite:
        raise ValueError("--resume keeps the rows of an earlier run and --overwrite replaces them: pass one, not both")
    if not (resume or overwrite) and Path(path).exists():
        raise FileExistsError(f"{path} already holds an earlier run's results; pass --resume to keep its rows and "
                              "run the rest, --overwrite to replace it, or choose another --output")


# ----- directories ------------------------------------------------------------------------------

def save_directory(directory: str | os.PathLike, write: Callable[[Path], None], marker: str) -> Path:
    """Save an artefact to ``directory`` atomically: ``write(staging)`` fills a fresh directory that then replaces it.

    ``marker`` is the file that identifies this kind of artefact (``nlptl_encoder.json``,
    ``nlptl_model.json``); ``write`` must create it. Returns the absolute target path.
    """
    target = Path(directory).expanduser().resolve()
    recover_directory(target)  # a killed earlier save may have left the artefact aside
    check_replaceable(target, marker)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target, clean=True)
    staging = _new_sibling(target.parent, _sibling_prefix(target, _STAGING), directory=True, like=target)
    try:
        write(staging)
        if not (staging / marker).is_file():
            raise RuntimeError(f"the artefact writer did not write {marker} into {staging}")
        _write_manifest(staging)
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after an exchange, the old artefact lives here
    return target


def check_replaceable(target: Path, marker: str) -> None:
    """Raise unless ``target`` is absent, empty, or a saved artefact with nothing foreign in it; writes nothing."""
    protected = {Path.cwd().resolve(), Path.home().resolve()}
    protected |= {*Path.cwd().resolve().parents, *Path.home().resolve().parents}
    if target in protected:
        raise ValueError(f"refusing to save into {str(target)!r}: it is the working directory, one of its parents "
                         "or the home directory, and saving replaces the whole directory; pass a new sub-directory "
                         f"such as {str(target / 'my-model')!r}")
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir():
        raise FileExistsError(f"cannot save into {str(target)!r}: it is a file, not a directory; pass a directory path")
    entries = sorted(p.name for p in target.iterdir())
    if not entries:
        return
    if marker not in entries:
        raise FileExistsError(
            f"refusing to replace {str(target)!r}: it is not a saved nlptl artefact (no {marker}) and holds "
            f"{_listing(entries)}; saving would delete them. Save into a new or empty directory, or move them away")
    foreign = foreign_files(target)
    if foreign:
        raise FileExistsError(
            f"refusing to replace {str(target)!r}: besides the saved artefact it holds {_listing(foreign)}, "
            "which saving would delete; move them out of the directory, or save somewhere else")


def foreign_files(directory: Path) -> list[str]:
    """Paths under ``directory`` (relative, '/'-separated) that the saved artefact there did not write."""
    manifest = _read_manifest(directory)
    present = _walk(directory)
    if manifest is not None:
        return _topmost([p for p in present if p not in manifest and p != MANIFEST_NAME])
    return _topmost(_legacy_foreign(directory, present))


def recover_directory(target: str | os.PathLike, clean: bool = False) -> None:
    """Finish what a killed save left: put an aside copy back if the target is missing; with ``clean``, drop strays."""
    target = Path(target).expanduser().resolve()
    parent = target.parent
    if not parent.is_dir():
        return
    asides = sorted(parent.glob(_sibling_prefix(target, _ASIDE) + "*"), key=lambda p: p.stat().st_mtime)
    complete = [a for a in asides if a.is_dir() and any(a.iterdir())]  # an empty one was made, never filled
    if complete and not target.exists() and not target.is_symlink():
        os.rename(complete[-1], target)  # the last complete artefact before the killed save
        asides.remove(complete[-1])
    if clean:
        for stray in [*asides, *parent.glob(_sibling_prefix(target, _STAGING) + "*")]:
            shutil.rmtree(stray, ignore_errors=True)


def verify_sizes(directory: str | os.PathLike) -> None:
    """Raise when a weights file is not the size it was saved with (cut short, or another file)."""
    directory = Path(directory)
    manifest = _read_manifest(directory) or {}
    for name, size in manifest.items():
        path = directory / name
        if name.endswith(".safetensors") and size is not None and path.is_file() and path.stat().st_size != size:
            raise ValueError(f"{str(path)!r} is {path.stat().st_size} bytes but was saved with {size} bytes: it is "
                             "damaged or cut short; restore it or save the artefact again")


# ----- internals --------------------------------------------------------------------------------

def _sibling_prefix(target: Path, role: str) -> str:
    return f".{target.name}.{role}-"


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _walk(directory: Path) -> list[str]:
    """Every file and directory under ``directory``, relative, directories with a trailing '/'."""
    out = []
    for root, dirs, files in os.walk(directory):
        rel = Path(root).relative_to(directory)
        out += [(rel / d).as_posix() + "/" for d in dirs] + [(rel / f).as_posix() for f in files]
    return sorted(out)


def _write_manifest(staging: Path) -> None:
    files = {p: (None if p.endswith("/") else (staging / p).stat().st_size) for p in _walk(staging)}
    (staging / MANIFEST_NAME).write_text(json.dumps({"files": files}, indent=1, sort_keys=True))


def _read_manifest(directory: Path) -> dict[str, int | None] | None:
    try:
        files = json.loads((directory / MANIFEST_NAME).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if isinstance(files, dict) else None


def _legacy_foreign(directory: Path, present: list[str]) -> list[str]:
    """Foreign paths of an artefact saved before manifests: anything an nlptl or HF save would not write."""
    def allowed(path: str) -> bool:
        parts, is_dir = path.rstrip("/").split("/"), path.endswith("/")
        in_sub = parts[0] in _LEGACY_SUBDIRECTORIES and (
            _LEGACY_SUBDIRECTORIES[parts[0]] is None
            or (directory / parts[0] / _LEGACY_SUBDIRECTORIES[parts[0]]).is_file())
        if len(parts) == 1:
            return in_sub if is_dir else _legacy_name(parts[0])
        return len(parts) == 2 and in_sub and not is_dir and _legacy_name(parts[1])

    return [p for p in present if not allowed(p)]


def _legacy_name(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in _LEGACY_FILES)


def _topmost(paths: list[str]) -> list[str]:
    """Drop paths inside a listed directory, so a foreign folder is named once, not with every file in it."""
    dirs = [p for p in paths if p.endswith("/")]
    return [p for p in paths if not any(p != d and p.startswith(d) for d in dirs)]


def _swap_in(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        return  # staging now holds the old artefact; the caller removes it
    aside = Path(tempfile.mkdtemp(prefix=_sibling_prefix(target, _ASIDE), dir=target.parent))
    os.rename(target, aside)  # over the empty aside directory just made: a fresh, unique name
    os.rename(staging, target)
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False  # this filesystem or kernel cannot exchange: rename aside instead
    raise OSError(code, f"cannot swap {a} into place: {os.strerror(code)}", str(b))


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
