"""`survey`: for each built-in dataset, every place looked in and what each holds (for `mnistcls data list`)."""

import enum
from dataclasses import asdict, dataclass

from mnistcls.data.catalogue import DATASETS, FILES, IdxFile, KnownDataset
from mnistcls.data.messages import where_to_get
from mnistcls.data.places import Place, cache_dir, places
from mnistcls.data.stamps import Stamps, judge, record_of


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

    def to_dict(self) -> dict:
        """As JSON for `data list --json`: the fields, plus `ready` and `missing`."""
        return {**asdict(self), "ready": self.ready, "missing": self.missing}

    @property
    def ready(self) -> bool:
        """Whether `load` would succeed without a download: each file's first copy is verified."""
        for i in range(len(FILES)):
            found = [p.files[i] for p in self.places if p.files[i].status != Status.MISSING]
            if not found or found[0].status != Status.VERIFIED:
                return False
        return True


def survey(*, data_dir=None, verify=True) -> list[DatasetReport]:
    """Report, for each built-in dataset, every place looked in and what each holds.

    Files are checked (once; the verdict is stamped) unless `verify` is False, in which
    case files without a stamp are reported as not checked. Never downloads.
    """
    stamps = Stamps(cache_dir())
    reports = []
    try:
        for known in DATASETS.values():
            looked_in = tuple(
                PlaceReport(
                    place=place.label,
                    path=str(place.path),
                    exists=place.path.exists(),
                    files=tuple(_file_report(known, file, place, stamps, verify) for file in FILES),
                )
                for place in places(known, data_dir)
            )
            reports.append(DatasetReport(known.name, known.title, looked_in, tuple(where_to_get(known))))
    finally:
        stamps.save()
    return reports


def _file_report(known: KnownDataset, file: IdxFile, place: Place, stamps: Stamps, verify: bool) -> FileReport:
    """What `survey` says about one file in one place."""
    copy = place.find(file)
    if copy is None:
        return FileReport(file.name, None, Status.MISSING)
    record, _ = record_of(copy, file, stamps, read=verify)
    if record is None:
        return FileReport(file.name, str(copy), Status.UNCHECKED)
    reason = judge(known, file, record)
    return FileReport(file.name, str(copy), Status.BAD if reason else Status.VERIFIED, reason or "")
