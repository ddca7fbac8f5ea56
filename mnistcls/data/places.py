"""Where a dataset's files are looked for, in order: a data folder, mnistcls' cache, Keras' cache, system folders."""

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from mnistcls import data as package  # SYSTEM_DIRS is read from the package at each call: tests replace it
from mnistcls.data.catalogue import IdxFile, KnownDataset
from mnistcls.data.idx import Copy

# How a data folder is labelled, depending on whether it came from the argument or the environment.
DATA_DIR_LABELS = ("data_dir", "MNISTCLS_DATA_DIR")


@dataclass(frozen=True)
class Place:
    """A folder of IDX files (or Keras' mnist.npz) that may hold a dataset's files."""

    label: str  # why it is looked at
    path: Path

    def find(self, file: IdxFile) -> Copy | None:
        if self.path.suffix == ".npz":
            return Copy(self.path, file.key) if self.path.is_file() else None
        for name in file.file_names:
            if (self.path / name).is_file():
                return Copy(self.path / name)
        return None


def places(known: KnownDataset, data_dir) -> list[Place]:
    """The places where `known`'s files are looked for, in order."""
    found = []
    argument, env = DATA_DIR_LABELS
    root, label = (data_dir, argument) if data_dir else (os.environ.get(env), env)
    if root:
        root = Path(root).expanduser()
        existing = [root / name for name in known.folders if (root / name).is_dir()]
        found.append(Place(label, existing[0] if existing else root / known.folders[0]))
    found.append(Place("mnistcls cache", cache_dir() / known.name))
    found.append(Place("Keras cache", _keras_datasets_dir() / known.keras_cache))
    found.extend(Place("system folder", folder) for folder in package.SYSTEM_DIRS if folder.name in known.folders)
    return found


def first_copy(places, file) -> Copy | None:
    return next((copy for place in places if (copy := place.find(file))), None)


def cache_dir() -> Path:
    """mnistcls' own cache: $MNISTCLS_CACHE_DIR, else the platform's user cache folder."""
    return Path(os.environ.get("MNISTCLS_CACHE_DIR") or platformdirs.user_cache_dir("mnistcls")).expanduser()


def _keras_datasets_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "datasets"


def is_offline(offline) -> bool:
    """`offline` when given, else env MNISTCLS_OFFLINE."""
    if offline is not None:
        return bool(offline)
    return os.environ.get("MNISTCLS_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
