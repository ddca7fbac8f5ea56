"""Find, verify, download and load MNIST, Fashion-MNIST and look-alike datasets.

A dataset is four IDX files, the format of the original MNIST distribution: training
and test images, training and test labels, each gzipped (`.gz`) or not, named as the
originals (`train-images-idx3-ubyte`) or in the dotted form many copies use
(`train-images.idx3-ubyte`). For each file
`load` uses the first copy found in these places (`places`):

1. a data folder (the `data_dir` argument, else env MNISTCLS_DATA_DIR) holding one
   subfolder per dataset: `mnist/`, `fashion/` (or Keras' name `fashion-mnist/`);
2. mnistcls's own cache (env MNISTCLS_CACHE_DIR, else the user's cache folder);
3. Keras' cache ($KERAS_HOME or ~/.keras, subfolder `datasets/`);
4. system folders (`SYSTEM_DIRS`, e.g. Debian's package dataset-fashion-mnist);
5. a download from the dataset's mirrors into mnistcls's cache, unless offline (`downloads`).

Every copy is checked before it is first used (`stamps`): the SHA-256 of its decompressed
content must match the published data (`catalogue`), so Debian's recompressed archives pass
while a damaged file, the test set under the training set's name or another dataset's file
do not. The verdict is kept in a stamp (`stamps.json` in the cache) keyed by path, size and
modification time, and a verified file is decompressed once into the cache as `.npy`,
which later runs memory-map: loading then takes milliseconds instead of seconds.

`dataset` may also be the path of a folder holding the four files of some other
dataset (KMNIST, your own; `custom`): its headers are checked, but no checksum is known for it.

Every problem a user can fix is raised as `DataError`, naming the file and what to do
(`messages`). TensorFlow is never imported here: downloads use the standard library.
"""

import hashlib
from pathlib import Path

from mnistcls.data.catalogue import DATASET_NAMES, DATASETS, FILES, SPLITS, Dataset, files_of
from mnistcls.data.custom import custom_folder, load_custom
from mnistcls.data.downloads import download as download_file
from mnistcls.data.idx import MAX_IDX_BYTES, read_idx, write_idx
from mnistcls.data.messages import missing_error
from mnistcls.data.places import cache_dir, first_copy, is_offline, places
from mnistcls.data.reports import DatasetReport, FileReport, PlaceReport, Status, survey
from mnistcls.data.stamps import Stamps, load_verified, verify
from mnistcls.errors import DataError
from mnistcls.files import name_part

__all__ = [
    "DATASETS", "DATASET_NAMES", "FILES", "MAX_IDX_BYTES", "SPLITS", "SYSTEM_DIRS", "Dataset", "DatasetReport",
    "FileReport", "PlaceReport", "Status", "cache_dir", "dataset_key", "dataset_label", "download", "load",
    "read_idx", "survey", "write_idx",
]

# Folders where system packages install datasets; each serves the dataset whose
# `folders` include its name. Read from here at each search, so tests can replace it.
SYSTEM_DIRS = [Path("/usr/share/datasets/fashion-mnist"), Path("/usr/share/datasets/mnist")]


def dataset_label(dataset) -> str:
    """A dataset as people name it in tables: a built-in one by its name, a folder by its own name."""
    return str(dataset) if dataset in DATASET_NAMES else Path(str(dataset)).name or str(dataset)


def dataset_key(dataset) -> str:
    """A dataset as part of a file name: a built-in one by its name, a folder by its name and a short
    hash of its full path (two folders of one name, say two versions of data/mine, stay apart)."""
    if dataset in DATASET_NAMES or not Path(dataset).is_dir():
        return name_part(dataset_label(dataset))
    folder = Path(dataset).resolve()
    return f"{name_part(folder.name)}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"


def load(dataset, *, data_dir=None, offline=None, splits=SPLITS, progress=None) -> Dataset:
    """Load a dataset by name ("mnist", "fashion") or from a folder of IDX files.

    Only the files of `splits` are needed, so `splits=("test",)` works for evaluation
    when the training files are missing. Missing files are downloaded into the cache
    unless `offline` (None: env MNISTCLS_OFFLINE) forbids it; `progress(description,
    done_bytes, total_bytes_or_None)` is called while downloading.
    """
    files = files_of(splits)
    known = DATASETS.get(dataset)
    if known is None:
        return load_custom(custom_folder(dataset), files)

    arrays = {}

    def keep_array(file, copy, stamps, cache):
        arrays[file.key] = load_verified(known, file, copy, stamps, cache)

    copies = _each_copy(known, files, data_dir, offline, progress, keep_array)
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

    def check(file, copy, stamps, cache):
        verify(known, file, copy, stamps)

    _each_copy(known, files_of(splits), data_dir, offline, progress, check)
    return cache_dir() / known.name


def _each_copy(known, files, data_dir, offline, progress, use) -> dict:
    """Find each file's first copy, downloading the missing ones unless offline, and call
    `use(file, copy, stamps, cache)` on each (which verifies it); return file name -> copy.

    Every copy found is used before anything is downloaded, so a bad copy is reported
    rather than hidden behind a fresh download, and nothing is fetched when one is.
    """
    cache = cache_dir()
    stamps = Stamps(cache)
    looked_in = places(known, data_dir)
    copies = dict.fromkeys(file.name for file in files)  # in the order of `files`, whatever is downloaded
    try:
        missing = []
        for file in files:
            copies[file.name] = first_copy(looked_in, file)
            if copies[file.name] is None:
                missing.append(file)
            else:
                use(file, copies[file.name], stamps, cache)
        if missing and is_offline(offline):
            raise missing_error(known, missing, looked_in, offline=True)
        for file in missing:
            copies[file.name] = download_file(known, file, cache, stamps, looked_in, progress)
            use(file, copies[file.name], stamps, cache)
    finally:
        stamps.save()
    return copies
