"""Writing files so that a crash or a kill never leaves a half-written one behind, and never over another."""

import contextlib
import itertools
import json
import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path, *, make_folders=False):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    On an error the temporary file is removed and `path` is left as it was.
    The temporary name keeps the suffix, for writers that choose a format by it
    (Keras' `.keras`, matplotlib's `.png`, gzip's `.gz`). With `make_folders`, the
    missing folders above `path` are made first, and removed again when `path` was
    not written: a failure leaves nothing behind.
    """
    path = Path(path)
    made = []
    if make_folders:
        made = list(itertools.takewhile(lambda folder: not folder.exists(), path.parents))  # innermost first
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        if not path.exists():
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path, default=None):
    """The JSON in `path`, or `default` when it is missing or unreadable (nested too deep included)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return default


def numbered(path):
    """`path`, then path-2, path-3... (the number before the suffix), without end."""
    first = Path(path)
    yield first
    for n in itertools.count(2):
        yield first.with_name(f"{first.stem}-{n}{first.suffix}")


def new_file(path):
    """The first of `numbered(path)` that does not exist (relative: in the current folder): nothing is overwritten."""
    return next(candidate for candidate in numbered(path) if not candidate.exists())


def name_part(text):
    """`text` as part of a file or folder name: runs of other characters than letters, digits, `.`,
    `-` and `_` become one `_`."""
    import re

    return re.sub(r"[^\w.-]+", "_", str(text)).strip("_") or "_"
