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
    tmp = _temporary(path)
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


def _temporary(path):
    """A hidden name beside `path`, of this writer alone (process and a random part: threads write too)."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{os.urandom(4).hex()}.tmp{path.suffix}")


def write_text(path, text):
    """Write `text` to `path` atomically (to a new name, for a NewFile); return the path written."""
    return publish(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def publish(path, write):
    """Have `write(tmp)` write a temporary file, then put it at `path` in one step; return the path.

    A NewFile is never put over an existing file: the temporary file is linked to
    the first free name of numbered(path), which fails on a name another process
    took in the meantime, so two processes never write one name. Any other path is
    replaced (atomic_path).
    """
    if not isinstance(path, NewFile):
        with atomic_path(path) as tmp:
            write(tmp)
        return Path(path)
    tmp = _temporary(Path(path))
    try:
        write(tmp)
        for candidate in numbered(Path(path)):
            try:
                os.link(tmp, candidate)  # exclusive: fails if the name exists
                return candidate
            except FileExistsError:
                continue
    finally:
        tmp.unlink(missing_ok=True)


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


class NewFile(type(Path())):
    """A path that names a new file: written at this name, or path-2, path-3... if it is taken then
    (see publish). Nothing is overwritten, even by two processes writing at once."""


def new_file(path):
    """`path` as a NewFile (relative: in the current folder)."""
    return NewFile(path)


def name_part(text):
    """`text` as one part of a file or folder name that stays in its folder: runs of characters other than
    letters, digits, `.`, `-` and `_` (slashes among them) become one `_`, and leading and trailing dots and
    underscores go, so `..`, an absolute path or an empty name cannot lead out of the folder."""
    import re

    return re.sub(r"[^\w.-]+", "_", str(text)).strip("_.") or "_"


def inside(folder, *names):
    """The path of `names` (each made a name_part) within `folder`: never outside it."""
    return Path(folder).joinpath(*map(name_part, names))
