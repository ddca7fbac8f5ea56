"""Turn a user's picture of a digit (or garment) into a 28x28 MNIST-style model input.

MNIST digits are bright ink on a black background, scaled to fit a 20x20 box and
placed in a 28x28 image so that their centre of mass is at the centre. A photo or
drawing gets the same treatment here, so the model sees what it was trained on:

1. read the file and make it grey (transparent parts become white paper);
2. find the polarity: if the ink is darker than the background, invert;
3. subtract the background and drop faint noise;
4. crop to the ink, scale it to fit 20x20 (keeping its aspect ratio);
5. paste it into 28x28 so its centre of mass lands on (14, 14).
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mnistcls.errors import UsageError

SIZE = 28  # side of the model input
BOX = 20  # side of the box the content is scaled to fit, as in MNIST
CENTRE = 14  # where the centre of mass goes (row and column)
NOISE = 0.25  # ink fainter than this fraction of the strongest ink is dropped
MIN_CONTRAST = 25  # grey levels between background and ink below which the image counts as blank


def load_digit_image(path):
    """Read an image file and prepare it the way MNIST images were prepared.

    Any size, colour or grey, with or without transparency, dark ink on light
    paper or light ink on a dark background.

    Args:
        path: a PNG or JPEG file (anything Pillow reads).

    Returns:
        (original, model_input): the picture as a grey uint8 array of its own
        size, as the user sees it (for display), and the 28x28 uint8 array with
        bright content on black that the model should be given.

    Raises:
        UsageError: the file is missing, not a readable image, or blank.
    """
    path = Path(path)
    original = _read_grey(path)
    ink = _ink(original)
    if ink.max() < MIN_CONTRAST:
        raise UsageError(
            f"{path}: the image is blank (no digit found); give a picture of one dark "
            "digit on light paper, or a light one on a dark background"
        )
    ink = np.where(ink >= NOISE * ink.max(), ink, 0)
    return original, _centre(_fit_box(ink))


def _read_grey(path):
    """The file's pixels as a grey uint8 array, with transparency flattened onto white."""
    if not path.is_file():
        raise UsageError(f"{path}: not found or not a file; check the path")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so broken data fails here and not later
            image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                paper = Image.new("RGBA", image.size, "white")
                image = Image.alpha_composite(paper, image.convert("RGBA"))
            return np.asarray(image.convert("L"))
    # Pillow reports bad files as OSError (unknown format, truncated data), SyntaxError
    # (broken PNG chunks), ValueError or DecompressionBombError (absurdly large).
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UsageError(f"{path}: not a readable image ({exc}); give a PNG or JPEG file") from exc


def _ink(grey):
    """How far each pixel is from the background, towards the ink, as int32 in [0, 255].

    The background level is the median of the border pixels. The ink is whatever
    departs furthest from it: darker (pencil on paper, then we invert) or lighter
    (chalk on a board). Comparing against the background, rather than against
    mid-grey, also works for grey paper in a dim photo.
    """
    grey = grey.astype(np.int32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = int(np.median(border))
    if background - grey.min() > grey.max() - background:
        grey, background = 255 - grey, 255 - background
    return np.clip(grey - background, 0, 255)


def _fit_box(ink):
    """Crop to the ink's bounding box, scale it (antialiased) to fit BOX x BOX, make it uint8.

    Scaling works on floats, so faint ink is not rounded away before the stretch.
    """
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float32)
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    box = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))
    box = np.clip(box, 0, None)  # Lanczos overshoots slightly below 0 next to edges
    # Stretch so the strongest ink is white, as in MNIST (scaling greys thin strokes).
    return np.round(box * (255.0 / box.max())).astype(np.uint8)


def _centre(content):
    """Paste `content` into a black SIZE x SIZE image with its centre of mass at CENTRE.

    The shift is rounded to whole pixels and clipped so no content is cut off.
    """
    height, width = content.shape
    weights = content.astype(np.float64)
    total = weights.sum()
    com_row = (weights.sum(axis=1) @ np.arange(height)) / total
    com_col = (weights.sum(axis=0) @ np.arange(width)) / total
    top = int(np.clip(round(CENTRE - com_row), 0, SIZE - height))
    left = int(np.clip(round(CENTRE - com_col), 0, SIZE - width))
    out = np.zeros((SIZE, SIZE), dtype=np.uint8)
    out[top:top + height, left:left + width] = content
    return out
