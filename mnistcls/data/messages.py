"""The errors a user sees about datasets: what is wrong, where mnistcls looked, and how to get the files."""

from pathlib import Path

from mnistcls.data.catalogue import IdxFile, KnownDataset
from mnistcls.data.idx import Copy
from mnistcls.data.places import DATA_DIR_LABELS
from mnistcls.errors import DataError


def where_to_get(known: KnownDataset, data_folder: Path | None = None) -> list[str]:
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


def bad_copy_error(known: KnownDataset, file: IdxFile, copy: Copy, reason: str) -> DataError:
    return DataError(
        f"{copy}: {reason}.\n"
        f"mnistcls will not use it as {known.title}'s {file.name}. Delete it (mnistcls then looks "
        "further, see `mnistcls data list`) or replace it with the original file. To get the original:\n"
        + "\n".join(where_to_get(known))
    )


def missing_error(known: KnownDataset, missing, places, *, offline=False, failures=()) -> DataError:
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
    data_folder = next((place.path for place in places if place.label in DATA_DIR_LABELS), None)
    lines.extend(where_to_get(known, data_folder))
    return DataError("\n".join(lines))
