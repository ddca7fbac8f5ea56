"""Reading and writing IDX files, the format of the original MNIST distribution, within size limits.

A file is read whole only after its header was checked: content claiming more than
MAX_IDX_BYTES (a damaged header, a gzip bomb, a huge .npz array) is refused before
anything that size is allocated.
"""

import gzip
import io
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistcls.errors import DataError

# IDX type codes (third byte of the magic number) and the big-endian types they stand for.
IDX_TYPES = {
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


class Bad(Exception):
    """What is wrong with a file, as a phrase that follows its path: "<path>: <reason>."."""


@dataclass(frozen=True)
class Copy:
    """One copy of one IDX file: a file on disk, or an array inside Keras' mnist.npz."""

    path: Path
    member: str | None = None  # the array's name, when `path` is an .npz

    @property
    def folder(self) -> Path:
        return self.path if self.member else self.path.parent

    def __str__(self):
        return f"{self.path} [{self.member}]" if self.member else str(self.path)


def read_idx(path) -> np.ndarray:
    """Read one IDX file (gzipped when its name ends in .gz), checking its header."""
    copy = Copy(Path(path))
    try:
        return parse_idx(read_raw(copy), kind=None)
    except Bad as bad:
        raise DataError(f"{copy}: {bad}. Replace it with a complete IDX file.") from None


def write_idx(path, array) -> None:
    """Write `array` as an IDX file, gzipped when the name ends in .gz (reproducibly: no timestamp)."""
    path = Path(path)
    content = idx_bytes(array)
    path.write_bytes(gzip.compress(content, mtime=0) if path.suffix == ".gz" else content)


def read_raw(copy: Copy) -> bytes:
    """The decompressed IDX content of a copy."""
    try:
        if copy.path.stat().st_size > MAX_IDX_BYTES:
            raise Bad(f"is {copy.path.stat().st_size:,} bytes, more than the {MAX_IDX_BYTES:,} an IDX file may be")
        data = copy.path.read_bytes()
    except OSError as error:
        raise Bad(f"cannot be read ({error.strerror or error})") from None
    if copy.member:
        return _npz_member_as_idx(data, copy.member)
    if copy.path.suffix == ".gz":
        try:
            return _gunzip_idx(data)
        except (OSError, EOFError, zlib.error) as error:
            raise Bad(f"is not a complete gzip file ({error}): it is truncated or damaged") from None
    return data


def _gunzip_idx(data: bytes) -> bytes:
    """Decompress gzipped IDX content no further than one byte past what its header claims.

    A gzip bomb (a small file that decompresses to gigabytes) is stopped there,
    and a header claiming more than MAX_IDX_BYTES before anything is decompressed.
    Content that is not IDX is read no further than its first bytes.
    """
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        content = stream.read(4)
        if len(content) == 4 and not content[0] and not content[1] and content[2] in IDX_TYPES:
            content += stream.read(4 * content[3])
            offset = 4 + 4 * content[3]
            if len(content) == offset:
                claimed = offset + math.prod(int.from_bytes(content[i:i + 4], "big") for i in range(4, offset, 4)
                                             ) * IDX_TYPES[content[2]].itemsize
                _check_claim(claimed, content)
                content += stream.read(claimed - offset + 1)
    return content


def _check_claim(claimed: int, header: bytes) -> None:
    if claimed > MAX_IDX_BYTES:
        shape = " x ".join(str(int.from_bytes(header[i:i + 4], "big")) for i in range(4, len(header), 4))
        raise Bad(f"has an IDX header ({shape}) that claims {claimed:,} bytes, more than the "
                  f"{MAX_IDX_BYTES:,} mnistcls reads: it is damaged or not a dataset file")


def _npz_member_as_idx(data: bytes, member: str) -> bytes:
    """An array of an .npz archive, serialised as an IDX file so it hashes like one."""
    if not data.startswith(b"PK"):
        raise Bad("is not a NumPy .npz archive")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            _check_npy_claim(archive.zip, f"{member}.npy")
            array = archive[member]
    except KeyError:
        raise Bad(f"has no array '{member}'") from None
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as error:
        raise Bad(f"is not a readable .npz archive ({error})") from None
    try:
        return idx_bytes(array)
    except ValueError as error:
        raise Bad(str(error)) from None


def _check_npy_claim(archive: zipfile.ZipFile, name: str) -> None:
    """Refuse an .npy member whose size, or whose header's shape, claims more than MAX_IDX_BYTES:
    NumPy allocates what the header claims before reading the data."""
    with archive.open(name) as member:  # a KeyError when it is not there
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
    claimed = max(archive.getinfo(name).file_size, math.prod(shape) * dtype.itemsize)
    if claimed > MAX_IDX_BYTES:
        raise Bad(f"has an array '{name}' of {' x '.join(map(str, shape))} {dtype} ({claimed:,} bytes), more than "
                  f"the {MAX_IDX_BYTES:,} mnistcls reads: it is damaged or not a dataset file")


def idx_bytes(array) -> bytes:
    """`array` serialised as an IDX file: magic number, dimensions, big-endian data."""
    array = np.asarray(array)
    kind_and_size = (array.dtype.kind, array.dtype.itemsize)
    code = next((code for code, t in IDX_TYPES.items() if (t.kind, t.itemsize) == kind_and_size), None)
    if code is None or not 1 <= array.ndim <= 255:
        raise ValueError(f"an IDX file cannot hold a {array.ndim}-D {array.dtype} array")
    header = bytes([0, 0, code, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(IDX_TYPES[code], copy=False).tobytes()


def idx_header(raw: bytes, kind: str | None) -> tuple[np.dtype, tuple[int, ...], int]:
    """Check an IDX header (against the rules for `kind`, if given): (dtype, shape, data offset)."""
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in IDX_TYPES or not raw[3]:
        raise Bad(f"is not an IDX file (it starts with bytes {raw[:4].hex() or 'nothing'})")
    magic, dtype, ndim = int.from_bytes(raw[:4], "big"), IDX_TYPES[raw[2]], raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise Bad("ends inside its IDX header: it is truncated")
    shape = tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(4, offset, 4))
    if kind == "images" and (dtype != np.uint8 or ndim != 3):
        raise Bad(
            f"has IDX magic 0x{magic:08x}, but images need 0x00000803: unsigned bytes in 3 dimensions "
            "(count, height, width), i.e. each image 2-D"
        )
    if kind == "labels" and (dtype.kind not in "ui" or ndim != 1):
        raise Bad(f"has IDX magic 0x{magic:08x}, but labels need 0x00000801: integers in 1 dimension")
    expected = offset + math.prod(shape) * dtype.itemsize
    _check_claim(expected, raw[:offset])
    if len(raw) != expected:
        raise Bad(
            f"is {len(raw):,} bytes long (uncompressed) but its IDX header "
            f"({' x '.join(map(str, shape))}) calls for {expected:,}: it is truncated or damaged"
        )
    return dtype, shape, offset


def parse_idx(raw: bytes, kind: str | None) -> np.ndarray:
    """The array held by IDX content, in native byte order."""
    dtype, shape, offset = idx_header(raw, kind)
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)
    return array if array.dtype.isnative else array.astype(dtype.newbyteorder("="))
