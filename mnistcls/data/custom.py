"""Datasets mnistcls knows no checksums for: a folder holding the four IDX files (KMNIST, your own)."""

import difflib
from pathlib import Path

import numpy as np

from mnistcls.data.catalogue import DATASET_NAMES, FILES, Dataset, IdxFile
from mnistcls.data.idx import Bad, parse_idx, read_raw
from mnistcls.data.places import Place
from mnistcls.errors import DataError, UsageError


def custom_folder(dataset) -> Path:
    """The folder `dataset` names; UsageError (with a suggestion) when it is neither a folder nor a known name."""
    folder = Path(dataset).expanduser()
    if folder.is_dir():
        return folder
    close = difflib.get_close_matches(str(dataset), DATASET_NAMES, n=1)
    raise UsageError(
        f"Unknown dataset '{dataset}'" + (f" (did you mean '{close[0]}'?)" if close else "")
        + f": give one of {', '.join(DATASET_NAMES)}, or the path of a folder "
        f"holding the four IDX files ({', '.join(file.name for file in FILES)}, each may be .gz)."
    )


def load_custom(folder: Path, files: list[IdxFile]) -> Dataset:
    """A dataset from a folder of IDX files mnistcls knows no checksums for: headers are checked."""
    place = Place("custom dataset", folder)
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
            array = parse_idx(read_raw(copy), file.kind)
        except Bad as bad:
            raise DataError(f"{copy}: {bad}. Replace it with a valid IDX file.") from None
        if file.kind == "labels" and array.dtype != np.uint8:
            array = array.astype(np.int64)  # native, and wide enough for any IDX integer
        arrays[file.key] = array

    _check_consistency(files, copies, arrays)
    labels = [arrays[file.key] for file in files if file.kind == "labels"]
    return Dataset(
        name=folder.resolve().name,
        class_names=_class_names(folder, max((int(y.max()) for y in labels if y.size), default=-1)),
        **{file.key: arrays.get(file.key) for file in FILES},
        source=str(folder),
        verified=None,
        files={name: str(copy) for name, copy in copies.items()},
    )


def _check_consistency(files, copies, arrays) -> None:
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
