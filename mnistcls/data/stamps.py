"""Verification: each copy checked once against the published hashes, the verdict kept in a stamp.

The stamps (`stamps.json` in the cache) are keyed by path, size and modification
time, so a changed file is read again. A verified file is decompressed once into the
cache as `.npy` (named by its content's hash), which later runs memory-map.
"""

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np

from mnistcls.data.catalogue import DATASETS, FILES, IMAGE_SHAPE, IdxFile, KnownDataset
from mnistcls.data.idx import Bad, Copy, idx_header, parse_idx, read_raw
from mnistcls.data.messages import bad_copy_error
from mnistcls.files import atomic_path


class Stamps:
    """What earlier runs found out about files, kept in the cache as JSON.

    `files` maps a copy to its size and mtime when read and what it held: the SHA-256
    and shape of its content, or an error. A changed file no longer matches its stamp
    and is read again.
    """

    def __init__(self, cache: Path):
        self.path = cache / "stamps.json"
        try:
            saved = json.loads(self.path.read_text())
            self.files = dict(saved["files"])
        except (OSError, ValueError, KeyError, TypeError):  # no stamps yet, or unreadable: start afresh
            self.files = {}
        self.changed = False

    def get(self, copy: Copy) -> dict | None:
        record = self.files.get(str(copy))
        try:
            stat = copy.path.stat()
        except OSError:
            return None
        unchanged = isinstance(record, dict) and (record.get("size"), record.get("mtime_ns")) == (
            stat.st_size,
            stat.st_mtime_ns,
        )
        return record if unchanged else None

    def put(self, copy: Copy, record: dict) -> None:
        self.files[str(copy)] = record
        self.changed = True

    def forget(self, copy: Copy) -> None:
        self.changed |= self.files.pop(str(copy), None) is not None

    def save(self) -> None:
        """Write the stamps; if the cache is not writable, they are simply worked out again next time."""
        if not self.changed:
            return
        with contextlib.suppress(OSError), atomic_path(self.path, make_folders=True) as tmp:
            tmp.write_text(json.dumps({"files": self.files}, indent=1))
        self.changed = False


def inspect(copy: Copy, kind: str) -> tuple[dict, bytes | None]:
    """Read a copy: its stamp record (content hash and shape, or an error) and content."""
    try:
        stat = copy.path.stat()
        record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        raw = read_raw(copy)
        shape = idx_header(raw, kind)[1]
    except OSError as error:  # vanished while we looked
        return {"error": f"cannot be read ({error.strerror or error})"}, None
    except Bad as bad:
        return {**record, "error": str(bad)}, None
    record.update(sha256=hashlib.sha256(raw).hexdigest(), shape=list(shape))
    return record, raw


def judge(known: KnownDataset, file: IdxFile, record: dict) -> str | None:
    """Why a copy with this stamp record is not `known`'s `file`; None when it is verified."""
    if "error" in record:
        return record["error"]
    expected = known.content_sha256[file.name]
    if record["sha256"] == expected:
        return None

    # Not the right content: say why as precisely as we can.
    for other in DATASETS.values():
        for name, sha256 in other.content_sha256.items():
            if sha256 == record["sha256"]:
                return f"holds {other.title}'s {name}, not {known.title}'s {file.name}"
    count, image_shape = record["shape"][0], tuple(record["shape"][1:])
    if count != file.count:
        swapped = " (are training and test files swapped?)" if any(f.count == count for f in FILES) else ""
        return f"holds {count:,} {file.kind} where {known.title}'s {file.name} has {file.count:,}{swapped}"
    if file.kind == "images" and image_shape != IMAGE_SHAPE:
        return f"holds {image_shape[0]}x{image_shape[1]} images where {known.title}'s are 28x28"
    return (
        f"does not match {known.title}'s {file.name}: its content has SHA-256 {record['sha256'][:16]}..., "
        f"expected {expected[:16]}...; it is damaged or from another dataset"
    )


def record_of(copy: Copy, file: IdxFile, stamps: Stamps, *, read=True) -> tuple[dict | None, bytes | None]:
    """A copy's stamp record (read and stamped now when it has none, unless not `read`), and its
    content when it had to be read."""
    record, raw = stamps.get(copy), None
    if record is None and read:
        record, raw = inspect(copy, file.kind)
        stamps.put(copy, record)
    return record, raw


def verify(known: KnownDataset, file: IdxFile, copy: Copy, stamps: Stamps) -> tuple[dict, bytes | None]:
    """Check a copy, or recall its stamp; DataError when it is not `known`'s `file`.

    Returns its stamp record, and its content when it had to be read.
    """
    record, raw = record_of(copy, file, stamps)
    reason = judge(known, file, record)
    if reason:
        raise bad_copy_error(known, file, copy, reason)
    return record, raw


def load_verified(known: KnownDataset, file: IdxFile, copy: Copy, stamps: Stamps, cache: Path) -> np.ndarray:
    """A verified copy's array, memory-mapped from the cache, which gets it on first use."""
    record, raw = verify(known, file, copy, stamps)
    npy = cache / "arrays" / f"{record['sha256']}.npy"  # named by content, shared by all copies
    if raw is None:  # verified on an earlier run
        with contextlib.suppress(OSError, ValueError):
            return np.load(npy, mmap_mode="r")
        stamps.forget(copy)  # its decompressed copy is gone or damaged: read the source again
        record, raw = verify(known, file, copy, stamps)
    array = parse_idx(raw, file.kind)
    try:
        with atomic_path(npy, make_folders=True) as tmp, tmp.open("wb") as out:
            np.save(out, array)
        return np.load(npy, mmap_mode="r")
    except (OSError, ValueError):  # the cache is not writable: do without it
        return array
