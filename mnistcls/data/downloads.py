"""Fetching a dataset's files from its mirrors (or MNISTCLS_MIRROR) into mnistcls' cache, with the standard library."""

import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from mnistcls.data.catalogue import IdxFile, KnownDataset
from mnistcls.data.idx import Bad, Copy
from mnistcls.data.messages import missing_error
from mnistcls.data.stamps import Stamps, inspect, judge
from mnistcls.errors import DataError
from mnistcls.files import atomic_path

DOWNLOAD_TIMEOUT_S = 30
CHUNK_BYTES = 1 << 16


def mirrors(known: KnownDataset) -> tuple[str, ...]:
    """Base URLs to download `known`'s files from: env MNISTCLS_MIRROR, else the dataset's own.

    MNISTCLS_MIRROR holds one or more base URLs (space-separated), each with one
    subfolder per dataset, laid out like a data folder: <URL>/mnist/, <URL>/fashion/.
    """
    override = os.environ.get("MNISTCLS_MIRROR", "").split()
    return tuple(f"{url.rstrip('/')}/{known.name}/" for url in override) or known.mirrors


def download(known: KnownDataset, file: IdxFile, cache: Path, stamps: Stamps, places, progress) -> Copy:
    """Fetch `file` into the cache from the first mirror that delivers it intact.

    Each transfer goes to a temporary file, is verified, and only then moved into
    place, so a failed or wrong download leaves nothing behind (not even the folders
    made for it).
    """
    final = cache / known.name / f"{file.name}.gz"
    failures = []
    for base in mirrors(known):
        url = base + final.name
        try:
            with atomic_path(final, make_folders=True) as tmp:
                fetch(url, tmp, f"{known.title} {final.name}", progress)
                record, _ = inspect(Copy(tmp), file.kind)
                reason = judge(known, file, record)
                if reason:
                    raise Bad(f"the file received {reason}")
        except Bad as bad:
            failures.append(f"{url}: {bad}")
            continue
        except OSError as error:
            raise DataError(
                f"Cannot write to the mnistcls cache {final.parent} ({error.strerror or error}). "
                "Set MNISTCLS_CACHE_DIR to a writable folder."
            ) from None
        stamps.put(Copy(final), record)  # the rename kept size and mtime, so the record stays valid
        return Copy(final)
    raise missing_error(known, [file], places, failures=failures)


def fetch(url: str, target: Path, description: str, progress) -> None:
    """Copy `url` into `target`, reporting progress; Bad when the transfer fails or is cut short."""
    with target.open("wb") as out:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                length = response.headers.get("Content-Length", "")
                total = int(length) if length.isdigit() else None
                done = 0
                if progress:
                    progress(description, done, total)
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(description, done, total)
        except urllib.error.HTTPError as error:
            raise Bad(f"HTTP error {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            raise Bad(f"cannot connect ({error.reason})") from None
        except (http.client.HTTPException, OSError) as error:
            raise Bad(f"the transfer failed ({type(error).__name__}: {error})") from None
    if total is not None and done != total:
        raise Bad(f"the transfer was cut short after {done:,} of {total:,} bytes")
