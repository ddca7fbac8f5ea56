"""Find, verify, download and load MNIST, Fashion-MNIST and look-alike datasets.

A dataset is four IDX files, the format of the original MNIST distribution: training
and test images, training and test labels, each gzipped (`.gz`) or not, named as the
originals (`train-images-idx3-ubyte`) or in the dotted form many copies use
(`train-images.idx3-ubyte`). For each file
`load` uses the first copy found in these places:

1. a data folder (the `data_dir` argument, else env MNISTCLS_DATA_DIR) holding one
   subfolder per dataset: `mnist/`, `fashion/` (or Keras' name `fashion-mnist/`);
2. mnistcls's own cache (env MNISTCLS_CACHE_DIR, else the user's cache folder);
3. Keras' cache ($KERAS_HOME or ~/.keras, subfolder `datasets/`);
4. system folders (`SYSTEM_DIRS`, e.g. Debian's package dataset-fashion-mnist);
5. a download from the dataset's mirrors into mnistcls's cache, unless offline.

Every copy is checked before it is first used: the SHA-256 of its decompressed content
must match the published data, so Debian's recompressed archives pass while a damaged
file, the test set under the training set's name or another dataset's file do not.
The verdict is kept in a stamp (`stamps.json` in the cache) keyed by path, size and
modification time, and a verified file is decompressed once into the cache as `.npy`,
which later runs memory-map: loading then takes milliseconds instead of seconds.

`dataset` may also be the path of a folder holding the four files of some other
dataset (KMNIST, your own): its headers are checked, but no checksum is known for it.

Every problem a user can fix is raised as `DataError`, naming the file and what to do.
TensorFlow is never imported here: downloads use the standard library.
"""

import contextlib
import difflib
import enum
import gzip
import hashlib
import http.client
import io
import itertools
import json
import math
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import platformdirs

from mnistcls.errors import DataError, UsageError

# --------------------------------------------------------------------------------------
# Facts about the datasets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    """One of the four IDX files every dataset is made of."""

    name: str  # file name, without ".gz"
    split: str  # "train" or "test"
    kind: str  # "images" or "labels"
    key: str  # the `Dataset` attribute it fills, also its array's name in Keras' mnist.npz
    count: int  # number of items in MNIST and in Fashion-MNIST

    @property
    def file_names(self) -> tuple[str, ...]:
        """The names a copy may have: the original's, or the dotted form that Kaggle and several
        packages ship (`train-images.idx3-ubyte`), each gzipped or not; the first is preferred."""
        dotted = self.name.replace("-idx", ".idx")
        return (f"{self.name}.gz", self.name, f"{dotted}.gz", dotted)


FILES = (
    _File("train-images-idx3-ubyte", "train", "images", "x_train", 60_000),
    _File("train-labels-idx1-ubyte", "train", "labels", "y_train", 60_000),
    _File("t10k-images-idx3-ubyte", "test", "images", "x_test", 10_000),
    _File("t10k-labels-idx1-ubyte", "test", "labels", "y_test", 10_000),
)
SPLITS = ("train", "test")
_IMAGE_SHAPE = (28, 28)  # of MNIST and Fashion-MNIST images


@dataclass(frozen=True)
class _Known:
    """A dataset mnistcls knows by name: where to find it and how to recognise it."""

    name: str
    title: str
    folders: tuple[str, ...]  # accepted names of its subfolder in a data folder or system folder
    class_names: tuple[str, ...]
    content_sha256: dict[str, str]  # file name -> SHA-256 of the decompressed IDX content
    mirrors: tuple[str, ...]  # base URLs holding the .gz files, tried in order
    keras_cache: str  # what Keras keeps under its datasets/ folder: a folder of .gz files, or an .npz
    package: str | None = None  # a system package that installs the files


DATASETS = {
    known.name: known
    for known in (
        _Known(
            name="mnist",
            title="MNIST",
            folders=("mnist",),
            class_names=tuple(str(digit) for digit in range(10)),
            content_sha256={
                # The training images' hash is not published upstream; it is that of the
                # content of the original archive (MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873):
                # 47,040,016 bytes, pixel mean 0.1307 and std 0.3081 of x/255, as published.
                "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            },
            mirrors=(
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ),
            keras_cache="mnist.npz",
        ),
        _Known(
            name="fashion",
            title="Fashion-MNIST",
            folders=("fashion", "fashion-mnist"),
            class_names=(
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            content_sha256={
                "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            },
            mirrors=(
                # An S3 website endpoint: plain HTTP only, which is safe as files are verified.
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            ),
            keras_cache="fashion-mnist",
            package="dataset-fashion-mnist",
        ),
    )
}
DATASET_NAMES = tuple(DATASETS)

# Folders where system packages install datasets; each serves the dataset whose
# `folders` include its name. Tests replace this list.
SYSTEM_DIRS = [Path("/usr/share/datasets/fashion-mnist"), Path("/usr/share/datasets/mnist")]

_DOWNLOAD_TIMEOUT_S = 30
_CHUNK_BYTES = 1 << 16

# --------------------------------------------------------------------------------------
# What callers get back
# --------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """A loaded dataset. Arrays of splits not asked for are None.

    Arrays of the built-in datasets are read-only memory maps of the cache: copy them
    (e.g. `x / 255.0`) before changing them.
    """

    name: str  # "mnist", "fashion", or the custom folder's name
    class_names: list[str]
    x_train: np.ndarray | None  # uint8 (N, H, W)
    y_train: np.ndarray | None  # integers (N,)
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    source: str  # the folder(s) the files were read from
    verified: bool | None  # True: checked against known hashes; None: custom data, no checksum known
    files: dict[str, str] = field(default_factory=dict)  # IDX file name -> the copy that was read

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int]:
        images = self.x_train if self.x_train is not None else self.x_test
        return tuple(images.shape[1:])


class Status(enum.StrEnum):
    """What `survey` found out about one file in one place."""

    MISSING = "missing"
    VERIFIED = "verified"
    BAD = "bad"
    UNCHECKED = "not checked"


@dataclass(frozen=True)
class FileReport:
    file: str  # IDX file name, without ".gz"
    path: str | None  # the copy found, None when missing
    status: Status
    reason: str = ""  # for BAD: what is wrong with it


@dataclass(frozen=True)
class PlaceReport:
    place: str  # why it is looked at, e.g. "MNISTCLS_DATA_DIR", "mnistcls cache"
    path: str
    exists: bool
    files: tuple[FileReport, ...]  # in the order of FILES


@dataclass(frozen=True)
class DatasetReport:
    name: str
    title: str
    places: tuple[PlaceReport, ...]  # in the order they are searched
    advice: tuple[str, ...] = ()  # how to get the files, for when some are missing

    @property
    def missing(self) -> list[str]:
        """Files found in no place at all."""
        return [
            file.name
            for i, file in enumerate(FILES)
            if all(place.files[i].status == Status.MISSING for place in self.places)
        ]

    @property
    def ready(self) -> bool:
        """Whether `load` would succeed without a download: each file's first copy is verified."""
        for i in range(len(FILES)):
            found = [p.files[i] for p in self.places if p.files[i].status != Status.MISSING]
            if not found or found[0].status != Status.VERIFIED:
                return False
        return True


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------


def load(dataset, *, data_dir=None, offline=None, splits=SPLITS, progress=None) -> Dataset:
    """Load a dataset by name ("mnist", "fashion") or from a folder of IDX files.

    Only the files of `splits` are needed, so `splits=("test",)` works for evaluation
    when the training files are missing. Missing files are downloaded into the cache
    unless `offline` (None: env MNISTCLS_OFFLINE) forbids it; `progress(description,
    done_bytes, total_bytes_or_None)` is called while downloading.
    """
    files = _files_of(splits)
    known = DATASETS.get(dataset)
    if known is None:
        return _load_custom(_custom_folder(dataset), files)

    cache = cache_dir()
    stamps = _Stamps(cache)
    places = _places(known, data_dir)
    arrays, copies, missing = {}, {}, []
    try:
        for file in files:
            copies[file.name] = _first_copy(places, file)
            if copies[file.name] is None:
                missing.append(file)
            else:
                arrays[file.key] = _load_verified(known, file, copies[file.name], stamps, cache)
        if missing and _is_offline(offline):
            raise _missing_error(known, missing, places, offline=True)
        for file in missing:
            copies[file.name] = _download(known, file, cache, stamps, places, progress)
            arrays[file.key] = _load_verified(known, file, copies[file.name], stamps, cache)
    finally:
        stamps.save()

    return Dataset(
        name=known.name,
        class_names=list(known.class_names),
        **{file.key: arrays.get(file.key) for file in FILES},
        source=", ".join(dict.fromkeys(str(copy.folder) for copy in copies.values())),
        verified=True,
        files={name: str(copy) for name, copy in copies.items()},
    )


def download(dataset, *, data_dir=None, splits=SPLITS, offline=None, progress=None) -> Path:
    """Download the files of a built-in dataset that are found nowhere; return the cache folder.

    Files that already have a copy somewhere are checked instead, and a bad copy is
    reported (DataError) rather than hidden behind a fresh download.
    """
    known = DATASETS.get(dataset)
    if known is None:
        raise DataError(f"Cannot download '{dataset}': only {', '.join(DATASET_NAMES)} can be downloaded.")
    cache = cache_dir()
    stamps = _Stamps(cache)
    places = _places(known, data_dir)
    try:
        missing = []
        for file in _files_of(splits):
            copy = _first_copy(places, file)
            if copy is None:
                missing.append(file)
            else:
                _verify(known, file, copy, stamps)
        if missing and _is_offline(offline):
            raise _missing_error(known, missing, places, offline=True)
        for file in missing:
            _download(known, file, cache, stamps, places, progress)
    finally:
        stamps.save()
    return cache / known.name


def survey(*, data_dir=None, verify=True) -> list[DatasetReport]:
    """Report, for each built-in dataset, every place looked in and what each holds.

    Files are checked (once; the verdict is stamped) unless `verify` is False, in which
    case files without a stamp are reported as not checked. Never downloads.
    """
    cache = cache_dir()
    stamps = _Stamps(cache)
    reports = []
    try:
        for known in DATASETS.values():
            places = tuple(
                PlaceReport(
                    place=place.label,
                    path=str(place.path),
                    exists=place.path.exists(),
                    files=tuple(_report(known, file, place, stamps, verify) for file in FILES),
                )
                for place in _places(known, data_dir)
            )
            reports.append(DatasetReport(known.name, known.title, places, tuple(_where_to_get(known))))
    finally:
        stamps.save()
    return reports


def read_idx(path) -> np.ndarray:
    """Read one IDX file (gzipped when its name ends in .gz), checking its header."""
    copy = _Copy(Path(path))
    try:
        return _parse_idx(_read_raw(copy), kind=None)
    except _Bad as bad:
        raise DataError(f"{copy}: {bad}. Replace it with a complete IDX file.") from None


def write_idx(path, array) -> None:
    """Write `array` as an IDX file, gzipped when the name ends in .gz (reproducibly: no timestamp)."""
    path = Path(path)
    content = _idx_bytes(array)
    path.write_bytes(gzip.compress(content, mtime=0) if path.suffix == ".gz" else content)


# --------------------------------------------------------------------------------------
# Where files are looked for
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Copy:
    """One copy of one IDX file: a file on disk, or an array inside Keras' mnist.npz."""

    path: Path
    member: str | None = None  # the array's name, when `path` is an .npz

    @property
    def folder(self) -> Path:
        return self.path if self.member else self.path.parent

    def __str__(self):
        return f"{self.path} [{self.member}]" if self.member else str(self.path)


@dataclass(frozen=True)
class _Place:
    """A folder of IDX files (or Keras' mnist.npz) that may hold a dataset's files."""

    label: str  # why it is looked at
    path: Path

    def find(self, file: _File) -> _Copy | None:
        if self.path.suffix == ".npz":
            return _Copy(self.path, file.key) if self.path.is_file() else None
        for name in file.file_names:
            if (self.path / name).is_file():
                return _Copy(self.path / name)
        return None


# How a data folder is labelled, depending on whether it came from the argument or the environment.
_DATA_DIR_LABELS = ("data_dir", "MNISTCLS_DATA_DIR")


def _places(known: _Known, data_dir) -> list[_Place]:
    """The places where `known`'s files are looked for, in order."""
    places = []
    argument, env = _DATA_DIR_LABELS
    root, label = (data_dir, argument) if data_dir else (os.environ.get(env), env)
    if root:
        root = Path(root).expanduser()
        existing = [root / name for name in known.folders if (root / name).is_dir()]
        places.append(_Place(label, existing[0] if existing else root / known.folders[0]))
    places.append(_Place("mnistcls cache", cache_dir() / known.name))
    places.append(_Place("Keras cache", _keras_datasets_dir() / known.keras_cache))
    places.extend(_Place("system folder", folder) for folder in SYSTEM_DIRS if folder.name in known.folders)
    return places


def _first_copy(places, file) -> _Copy | None:
    return next((copy for place in places if (copy := place.find(file))), None)


def cache_dir() -> Path:
    """mnistcls' own cache: $MNISTCLS_CACHE_DIR, else the platform's user cache folder."""
    return Path(os.environ.get("MNISTCLS_CACHE_DIR") or platformdirs.user_cache_dir("mnistcls")).expanduser()


def _keras_datasets_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "datasets"


def _is_offline(offline) -> bool:
    if offline is not None:
        return bool(offline)
    return os.environ.get("MNISTCLS_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _files_of(splits) -> list[_File]:
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    if not splits or set(splits) - set(SPLITS):
        raise ValueError(f"splits must be a non-empty selection of {SPLITS}, not {splits!r}")
    return [file for file in FILES if file.split in splits]


# --------------------------------------------------------------------------------------
# Reading and checking IDX content
# --------------------------------------------------------------------------------------

# IDX type codes (third byte of the magic number) and the big-endian types they stand for.
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# The largest IDX content read (MNIST's largest file is 47 MB): a header or a gzip stream
# claiming more is refused before anything that size is allocated.
MAX_IDX_BYTES = 1 << 30


class _Bad(Exception):
    """What is wrong with a file, as a phrase that follows its path: "<path>: <reason>."."""


def _read_raw(copy: _Copy) -> bytes:
    """The decompressed IDX content of a copy."""
    try:
        if copy.path.stat().st_size > MAX_IDX_BYTES:
            raise _Bad(f"is {copy.path.stat().st_size:,} bytes, more than the {MAX_IDX_BYTES:,} an IDX file may be")
        data = copy.path.read_bytes()
    except OSError as error:
        raise _Bad(f"cannot be read ({error.strerror or error})") from None
    if copy.member:
        return _npz_member_as_idx(data, copy.member)
    if copy.path.suffix == ".gz":
        try:
            return _gunzip_idx(data)
        except (OSError, EOFError, zlib.error) as error:
            raise _Bad(f"is not a complete gzip file ({error}): it is truncated or damaged") from None
    return data


def _gunzip_idx(data: bytes) -> bytes:
    """Decompress gzipped IDX content no further than one byte past what its header claims.

    A gzip bomb (a small file that decompresses to gigabytes) is stopped there,
    and a header claiming more than MAX_IDX_BYTES before anything is decompressed.
    Content that is not IDX is read no further than its first bytes.
    """
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        content = stream.read(4)
        if len(content) == 4 and not content[0] and not content[1] and content[2] in _IDX_TYPES:
            content += stream.read(4 * content[3])
            offset = 4 + 4 * content[3]
            if len(content) == offset:
                claimed = offset + math.prod(int.from_bytes(content[i:i + 4], "big") for i in range(4, offset, 4)
                                             ) * _IDX_TYPES[content[2]].itemsize
                _check_claim(claimed, content)
                content += stream.read(claimed - offset + 1)
    return content


def _check_claim(claimed: int, header: bytes) -> None:
    if claimed > MAX_IDX_BYTES:
        shape = " x ".join(str(int.from_bytes(header[i:i + 4], "big")) for i in range(4, len(header), 4))
        raise _Bad(f"has an IDX header ({shape}) that claims {claimed:,} bytes, more than the "
                   f"{MAX_IDX_BYTES:,} mnistcls reads: it is damaged or not a dataset file")


def _npz_member_as_idx(data: bytes, member: str) -> bytes:
    """An array of an .npz archive, serialised as an IDX file so it hashes like one."""
    if not data.startswith(b"PK"):
        raise _Bad("is not a NumPy .npz archive")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            _check_npy_claim(archive.zip, f"{member}.npy")
            array = archive[member]
    except KeyError:
        raise _Bad(f"has no array '{member}'") from None
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as error:
        raise _Bad(f"is not a readable .npz archive ({error})") from None
    try:
        return _idx_bytes(array)
    except ValueError as error:
        raise _Bad(str(error)) from None


def _check_npy_claim(archive: zipfile.ZipFile, name: str) -> None:
    """Refuse an .npy member whose size, or whose header's shape, claims more than MAX_IDX_BYTES:
    NumPy allocates what the header claims before reading the data."""
    with archive.open(name) as member:  # a KeyError when it is not there
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
    claimed = max(archive.getinfo(name).file_size, math.prod(shape) * dtype.itemsize)
    if claimed > MAX_IDX_BYTES:
        raise _Bad(f"has an array '{name}' of {' x '.join(map(str, shape))} {dtype} ({claimed:,} bytes), more than "
                   f"the {MAX_IDX_BYTES:,} mnistcls reads: it is damaged or not a dataset file")


def _idx_bytes(array) -> bytes:
    """`array` serialised as an IDX file: magic number, dimensions, big-endian data."""
    array = np.asarray(array)
    kind_and_size = (array.dtype.kind, array.dtype.itemsize)
    code = next((code for code, t in _IDX_TYPES.items() if (t.kind, t.itemsize) == kind_and_size), None)
    if code is None or not 1 <= array.ndim <= 255:
        raise ValueError(f"an IDX file cannot hold a {array.ndim}-D {array.dtype} array")
    header = bytes([0, 0, code, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(_IDX_TYPES[code], copy=False).tobytes()


def _idx_header(raw: bytes, kind: str | None) -> tuple[np.dtype, tuple[int, ...], int]:
    """Check an IDX header (against the rules for `kind`, if given): (dtype, shape, data offset)."""
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _IDX_TYPES or not raw[3]:
        raise _Bad(f"is not an IDX file (it starts with bytes {raw[:4].hex() or 'nothing'})")
    magic, dtype, ndim = int.from_bytes(raw[:4], "big"), _IDX_TYPES[raw[2]], raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise _Bad("ends inside its IDX header: it is truncated")
    shape = tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(4, offset, 4))
    if kind == "images" and (dtype != np.uint8 or ndim != 3):
        raise _Bad(
            f"has IDX magic 0x{magic:08x}, but images need 0x00000803: unsigned bytes in 3 dimensions "
            "(count, height, width), i.e. each image 2-D"
        )
    if kind == "labels" and (dtype.kind not in "ui" or ndim != 1):
        raise _Bad(f"has IDX magic 0x{magic:08x}, but labels need 0x00000801: integers in 1 dimension")
    expected = offset + math.prod(shape) * dtype.itemsize
    _check_claim(expected, raw[:offset])
    if len(raw) != expected:
        raise _Bad(
            f"is {len(raw):,} bytes long (uncompressed) but its IDX header "
            f"({' x '.join(map(str, shape))}) calls for {expected:,}: it is truncated or damaged"
        )
    return dtype, shape, offset


def _parse_idx(raw: bytes, kind: str | None) -> np.ndarray:
    """The array held by IDX content, in native byte order."""
    dtype, shape, offset = _idx_header(raw, kind)
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)
    return array if array.dtype.isnative else array.astype(dtype.newbyteorder("="))


def _inspect(copy: _Copy, kind: str) -> tuple[dict, bytes | None]:
    """Read a copy: its stamp record (content hash and shape, or an error) and content."""
    try:
        stat = copy.path.stat()
        record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        raw = _read_raw(copy)
        shape = _idx_header(raw, kind)[1]
    except OSError as error:  # vanished while we looked
        return {"error": f"cannot be read ({error.strerror or error})"}, None
    except _Bad as bad:
        return {**record, "error": str(bad)}, None
    record.update(sha256=hashlib.sha256(raw).hexdigest(), shape=list(shape))
    return record, raw


class _Stamps:
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

    def get(self, copy: _Copy) -> dict | None:
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

    def put(self, copy: _Copy, record: dict) -> None:
        self.files[str(copy)] = record
        self.changed = True

    def forget(self, copy: _Copy) -> None:
        self.changed |= self.files.pop(str(copy), None) is not None

    def save(self) -> None:
        """Write the stamps; if the cache is not writable, they are simply worked out again next time."""
        if not self.changed:
            return
        with contextlib.suppress(OSError), _temporary_beside(self.path) as tmp:
            tmp.write_text(json.dumps({"files": self.files}, indent=1))
            os.replace(tmp, self.path)
        self.changed = False


def _judge(known: _Known, file: _File, record: dict) -> str | None:
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
    if file.kind == "images" and image_shape != _IMAGE_SHAPE:
        return f"holds {image_shape[0]}x{image_shape[1]} images where {known.title}'s are 28x28"
    return (
        f"does not match {known.title}'s {file.name}: its content has SHA-256 {record['sha256'][:16]}..., "
        f"expected {expected[:16]}...; it is damaged or from another dataset"
    )


def _verify(known: _Known, file: _File, copy: _Copy, stamps: _Stamps) -> tuple[dict, bytes | None]:
    """Check a copy, or recall its stamp; DataError when it is not `known`'s `file`.

    Returns its stamp record, and its content when it had to be read.
    """
    record, raw = stamps.get(copy), None
    if record is None:
        record, raw = _inspect(copy, file.kind)
        stamps.put(copy, record)
    reason = _judge(known, file, record)
    if reason:
        raise _bad_copy_error(known, file, copy, reason)
    return record, raw


# --------------------------------------------------------------------------------------
# The cache of decompressed arrays
# --------------------------------------------------------------------------------------


def _load_verified(known: _Known, file: _File, copy: _Copy, stamps: _Stamps, cache: Path) -> np.ndarray:
    """A verified copy's array, memory-mapped from the cache, which gets it on first use."""
    record, raw = _verify(known, file, copy, stamps)
    npy = cache / "arrays" / f"{record['sha256']}.npy"  # named by content, shared by all copies
    if raw is None:  # verified on an earlier run
        with contextlib.suppress(OSError, ValueError):
            return np.load(npy, mmap_mode="r")
        stamps.forget(copy)  # its decompressed copy is gone or damaged: read the source again
        record, raw = _verify(known, file, copy, stamps)
    array = _parse_idx(raw, file.kind)
    try:
        with _temporary_beside(npy) as tmp:
            with tmp.open("wb") as out:
                np.save(out, array)
            os.replace(tmp, npy)
        return np.load(npy, mmap_mode="r")
    except (OSError, ValueError):  # the cache is not writable: do without it
        return array


@contextlib.contextmanager
def _temporary_beside(final: Path):
    """A temporary file in `final`'s folder, to be moved onto `final`.

    If it was not, the temporary file is removed, and so are the folders made for it:
    a failure leaves nothing behind.
    """
    folders = [final.parent, *final.parent.parents]
    made = list(itertools.takewhile(lambda folder: not folder.exists(), folders))  # innermost first
    final.parent.mkdir(parents=True, exist_ok=True)
    # Named ".part-XXXX-<name>": hidden, and with `final`'s suffix (".gz" decides how it is read).
    handle, name = tempfile.mkstemp(dir=final.parent, prefix=".part-", suffix=f"-{final.name}")
    os.close(handle)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
        if not final.exists():
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()


# --------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------


def _mirrors(known: _Known) -> tuple[str, ...]:
    """Base URLs to download `known`'s files from: env MNISTCLS_MIRROR, else the dataset's own.

    MNISTCLS_MIRROR holds one or more base URLs (space-separated), each with one
    subfolder per dataset, laid out like a data folder: <URL>/mnist/, <URL>/fashion/.
    """
    override = os.environ.get("MNISTCLS_MIRROR", "").split()
    return tuple(f"{url.rstrip('/')}/{known.name}/" for url in override) or known.mirrors


def _download(known: _Known, file: _File, cache: Path, stamps: _Stamps, places, progress) -> _Copy:
    """Fetch `file` into the cache from the first mirror that delivers it intact.

    Each transfer goes to a temporary file, is verified, and only then moved into
    place, so a failed or wrong download leaves nothing behind.
    """
    final = cache / known.name / f"{file.name}.gz"
    failures = []
    for base in _mirrors(known):
        url = base + final.name
        try:
            with _temporary_beside(final) as tmp:
                _fetch(url, tmp, f"{known.title} {final.name}", progress)
                record, _ = _inspect(_Copy(tmp), file.kind)
                reason = _judge(known, file, record)
                if reason is None:
                    os.replace(tmp, final)  # keeps size and mtime, so the record stays valid
                    stamps.put(_Copy(final), record)
                    return _Copy(final)
                failures.append(f"{url}: the file received {reason}")
        except _Bad as bad:
            failures.append(f"{url}: {bad}")
        except OSError as error:
            raise DataError(
                f"Cannot write to the mnistcls cache {final.parent} ({error.strerror or error}). "
                "Set MNISTCLS_CACHE_DIR to a writable folder."
            ) from None
    raise _missing_error(known, [file], places, failures=failures)


def _fetch(url: str, target: Path, description: str, progress) -> None:
    """Copy `url` into `target`, reporting progress; _Bad when the transfer fails or is cut short."""
    with target.open("wb") as out:
        try:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                length = response.headers.get("Content-Length", "")
                total = int(length) if length.isdigit() else None
                done = 0
                if progress:
                    progress(description, done, total)
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(description, done, total)
        except urllib.error.HTTPError as error:
            raise _Bad(f"HTTP error {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            raise _Bad(f"cannot connect ({error.reason})") from None
        except (http.client.HTTPException, OSError) as error:
            raise _Bad(f"the transfer failed ({type(error).__name__}: {error})") from None
    if total is not None and done != total:
        raise _Bad(f"the transfer was cut short after {done:,} of {total:,} bytes")


# --------------------------------------------------------------------------------------
# Custom datasets
# --------------------------------------------------------------------------------------


def _custom_folder(dataset) -> Path:
    folder = Path(dataset).expanduser()
    if folder.is_dir():
        return folder
    close = difflib.get_close_matches(str(dataset), DATASET_NAMES, n=1)
    raise UsageError(
        f"Unknown dataset '{dataset}'" + (f" (did you mean '{close[0]}'?)" if close else "")
        + f": give one of {', '.join(DATASET_NAMES)}, or the path of a folder "
        f"holding the four IDX files ({', '.join(file.name for file in FILES)}, each may be .gz)."
    )


def _load_custom(folder: Path, files: list[_File]) -> Dataset:
    """A dataset from a folder of IDX files mnistcls knows no checksums for: headers are checked."""
    place = _Place("custom dataset", folder)
    arrays, copies = {}, {}
    for file in files:
        copy = copies[file.name] = place.find(file)
        if copy is None:
            raise DataError(
                f"{folder} has no {file.name} (named {', '.join(file.file_names[1:])} are accepted too). "
                f"A dataset folder needs {', '.join(f.name for f in files)}, and may have a classes.txt "
                "naming one class per line."
            )
        try:
            array = _parse_idx(_read_raw(copy), file.kind)
        except _Bad as bad:
            raise DataError(f"{copy}: {bad}. Replace it with a valid IDX file.") from None
        if file.kind == "labels" and array.dtype != np.uint8:
            array = array.astype(np.int64)  # native, and wide enough for any IDX integer
        arrays[file.key] = array

    _check_custom_consistency(files, copies, arrays)
    labels = [arrays[file.key] for file in files if file.kind == "labels"]
    return Dataset(
        name=folder.resolve().name,
        class_names=_class_names(folder, max((int(y.max()) for y in labels if y.size), default=-1)),
        **{file.key: arrays.get(file.key) for file in FILES},
        source=str(folder),
        verified=None,
        files={name: str(copy) for name, copy in copies.items()},
    )


def _check_custom_consistency(files, copies, arrays) -> None:
    """Images and labels agree in number; all images have one size; labels are not negative."""
    images = [file for file in files if file.kind == "images"]
    for image_file in images:
        label_file = next(f for f in files if f.split == image_file.split and f.kind == "labels")
        x, y = arrays[image_file.key], arrays[label_file.key]
        if len(x) != len(y):
            raise DataError(
                f"{copies[image_file.name]} holds {len(x):,} images but {copies[label_file.name]} "
                f"holds {len(y):,} labels: they must match one to one. Replace the wrong file."
            )
        if y.size and y.min() < 0:
            raise DataError(f"{copies[label_file.name]}: labels must not be negative. Fix the file.")
    shapes = {arrays[file.key].shape[1:] for file in images}
    if len(shapes) > 1:
        raise DataError(
            "Images differ in size: "
            + ", ".join(f"{copies[f.name]} {arrays[f.key].shape[1:]}" for f in images)
            + ". Training and test images must have one size."
        )


def _class_names(folder: Path, max_label: int) -> list[str]:
    """Names from classes.txt (one per line), else the label values as strings."""
    path = folder / "classes.txt"
    if not path.is_file():
        return [str(label) for label in range(max_label + 1)]
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot be read ({error}). Fix it or remove it.") from None
    if len(names) <= max_label:
        raise DataError(
            f"{path} names {len(names)} classes, but the labels go up to {max_label}. "
            "Give one name per line for every label value from 0 up."
        )
    return names


# --------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------


def _report(known: _Known, file: _File, place: _Place, stamps: _Stamps, verify: bool) -> FileReport:
    """What `survey` says about one file in one place."""
    copy = place.find(file)
    if copy is None:
        return FileReport(file.name, None, Status.MISSING)
    record = stamps.get(copy)
    if record is None and not verify:
        return FileReport(file.name, str(copy), Status.UNCHECKED)
    if record is None:
        record, _ = _inspect(copy, file.kind)
        stamps.put(copy, record)
    reason = _judge(known, file, record)
    return FileReport(file.name, str(copy), Status.BAD if reason else Status.VERIFIED, reason or "")


def _where_to_get(known: _Known, data_folder: Path | None = None) -> list[str]:
    """The ways to obtain `known`'s files, as lines of advice; `data_folder`: the one in use, if any."""
    ways = [
        f"  - put the original files (.gz or uncompressed) into {data_folder}/"
        if data_folder
        else f"  - put the original files (.gz or uncompressed) into <DIR>/{known.folders[0]}/ "
        "and set MNISTCLS_DATA_DIR=<DIR>"
    ]
    if known.package:
        ways.append(f"  - or install them system-wide: apt-get install {known.package}")
    ways.append(f"  - or, with internet access and not offline, run: mnistcls data download {known.name}")
    return ways


def _bad_copy_error(known: _Known, file: _File, copy: _Copy, reason: str) -> DataError:
    return DataError(
        f"{copy}: {reason}.\n"
        f"mnistcls will not use it as {known.title}'s {file.name}. Delete it (mnistcls then looks "
        "further, see `mnistcls data list`) or replace it with the original file. To get the original:\n"
        + "\n".join(_where_to_get(known))
    )


def _missing_error(known: _Known, missing, places, *, offline=False, failures=()) -> DataError:
    """The files are nowhere: say where we looked, what happened, and how to fix it."""
    names = ", ".join(file.name for file in missing)
    lines = [
        f"{known.title}: {names} not found" + (" and could not be downloaded." if failures else "."),
        "Looked in:",
    ]
    for place in places:
        state = "not there" if place.path.exists() else "does not exist"
        lines.append(f"  - {place.path} ({place.label}): {state}")
    if offline:
        lines.append("Downloading is switched off (--offline or MNISTCLS_OFFLINE=1).")
    if failures:
        lines.append("Downloads tried:")
        lines.extend(f"  - {failure}" for failure in failures)
    lines.append("To fix it:")
    data_folder = next((place.path for place in places if place.label in _DATA_DIR_LABELS), None)
    lines.extend(_where_to_get(known, data_folder))
    return DataError("\n".join(lines))
