"""The datasets mnistcls knows by name: their four IDX files, class names, hashes and mirrors; what `load` returns."""

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class IdxFile:
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
    IdxFile("train-images-idx3-ubyte", "train", "images", "x_train", 60_000),
    IdxFile("train-labels-idx1-ubyte", "train", "labels", "y_train", 60_000),
    IdxFile("t10k-images-idx3-ubyte", "test", "images", "x_test", 10_000),
    IdxFile("t10k-labels-idx1-ubyte", "test", "labels", "y_test", 10_000),
)
SPLITS = ("train", "test")
IMAGE_SHAPE = (28, 28)  # of MNIST and Fashion-MNIST images


@dataclass(frozen=True)
class KnownDataset:
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
        KnownDataset(
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
        KnownDataset(
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


def files_of(splits) -> list[IdxFile]:
    """The files of `splits` ("train", "test", or a selection of both), in the order of FILES."""
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    if not splits or set(splits) - set(SPLITS):
        raise ValueError(f"splits must be a non-empty selection of {SPLITS}, not {splits!r}")
    return [file for file in FILES if file.split in splits]


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
