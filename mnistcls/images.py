"""Turn a user's picture into a 28x28 model input, prepared the way the model's training images were.

Both datasets' images are bright content on a black background, but they were
made differently, and a model only does well on pictures made its way:

- mnist: the digit is scaled to fit a 20x20 box and placed in 28x28 so that its
  centre of mass is at the centre;
- fashion: the item was trimmed to its bounding box, scaled so that its longer
  side is 28 pixels, and centred by that box (then negated: dark garments on
  white become bright on black).

Steps shared by both (`PREPARATIONS` has the rest):

1. read the file and make it grey, at full precision whatever its mode (16-bit
   and float pictures included); transparent parts become paper;
2. estimate the background from the border (a plane, so uneven light is
   background too) and find the polarity: if the content is darker than the
   background, invert;
3. subtract the background and its grain, so the content is bright on black.
"""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mnistcls.errors import UsageError

SIZE = 28  # side of the model input
BOX = 20  # mnist: side of the box the content is scaled to fit
CENTRE = 14  # mnist: where the centre of mass goes (row and column)
NOISE = 0.25  # mnist: ink fainter than this fraction of the strongest ink is dropped
TRIM = 0.1  # fashion: the bounding box holds what is at least this fraction of the strongest content
MIN_CONTRAST = 25  # grey levels between background and ink below which the image counts as blank
BACKGROUND_SPREADS = 6  # ink must depart from the background by more than this many of its border's deviations

# Modes whose values go beyond 8 bits, and the value that stands for white in each.
_WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": None, "F": None}


def load_picture(path, style="mnist"):
    """Read an image file and prepare it in `style` (a key of PREPARATIONS).

    Any size, colour or grey, 1 to 32 bits per pixel, with or without
    transparency, dark content on light paper or light content on a dark background.

    Args:
        path: a PNG, JPEG, TIFF, BMP or GIF file (anything Pillow reads).
        style: "mnist" or "fashion", as the model's training images were made.

    Returns:
        (original, model_input): the picture as a grey uint8 array of its own
        size, as the user sees it (for display), and the 28x28 uint8 array with
        bright content on black that the model should be given.

    Raises:
        UsageError: the file is missing, not a readable image, too large, or blank.
    """
    path = Path(path)
    grey = _read_grey(path)
    ink = _ink(grey)
    if ink.max() < MIN_CONTRAST:
        raise UsageError(
            f"{path}: the image is blank (nothing found on it); give a picture of one dark "
            "thing on light paper, or a light one on a dark background"
        )
    return np.round(grey).astype(np.uint8), PREPARATIONS[style](ink)


def _read_grey(path):
    """The file's pixels as grey float32 values in [0, 255], transparency composited onto paper."""
    if not path.is_file():
        raise UsageError(f"{path}: not found or not a file; check the path")
    try:
        with warnings.catch_warnings():
            # Pillow only warns about images between its pixel limit and twice it: refuse them too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decode now, so broken data fails here and not later
                return _grey(ImageOps.exif_transpose(image))  # phone photos store their rotation in EXIF
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UsageError(f"{path}: too large to read ({exc}); give a smaller picture") from None
    # Pillow reports bad files as OSError (unknown format, truncated data), SyntaxError
    # (broken PNG chunks) or ValueError.
    except (OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable image ({exc}); give a PNG, JPEG, TIFF, BMP or GIF file") from None


def _grey(image):
    """Grey values in [0, 255] of an open image of any mode, transparency composited onto paper."""
    if image.mode in _WIDE_MODES:
        values = np.asarray(image, dtype=np.float64)
        # 32-bit integer and float pictures have no fixed white: the smallest usual one that holds them.
        white = _WIDE_MODES[image.mode] or next((w for w in (1.0, 255.0, 65535.0) if values.max() <= w),
                                                values.max())
        return (np.clip(values, 0, None) * (255.0 / white)).astype(np.float32)
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        grey = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float32)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        return _on_paper(grey, alpha)
    return np.asarray(image.convert("L"), dtype=np.float32)


def _on_paper(grey, alpha):
    """`grey` composited onto paper where `alpha` is below 1.

    The paper is white under dark content and black under light content (a white
    drawing on a transparent background stays visible).
    """
    if alpha.sum() == 0:
        return np.full_like(grey, 255.0)
    content = float((grey * alpha).sum() / alpha.sum())
    paper = 0.0 if content > 127.5 else 255.0
    return grey * alpha + paper * (1.0 - alpha)


def _ink(grey):
    """How far each pixel is from the background, towards the ink, as float32 in [0, 255].

    The background is estimated from the border pixels, where a photo shows only
    paper or backdrop: a plane fitted to them, so that light falling from one side
    is background too, not ink. The ink is whatever departs furthest from it:
    darker (pencil on paper, then we invert) or lighter (chalk on a board). Ink is
    where the departure, averaged over a small neighbourhood, rises above what the
    border departs from its plane (grain, texture, noise, light the plane does not
    follow); everything else is background.
    """
    height, width = grey.shape
    rows, cols = np.mgrid[0:height, 0:width]
    border = np.zeros((height, width), bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    # background ~ a + b * row + c * column, fitted on the border
    design = np.stack([np.ones(border.sum()), rows[border], cols[border]], axis=1).astype(np.float64)
    coefficients = np.linalg.lstsq(design, grey[border].astype(np.float64), rcond=None)[0]
    departure = grey - (coefficients[0] + coefficients[1] * rows + coefficients[2] * cols)
    if -departure.min() > departure.max():
        departure = -departure
    # Averaging over a neighbourhood quiets grain far more than a stroke or a garment.
    smooth = _box_mean(departure, max(1, min(height, width) // 60))
    edge = np.concatenate([smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1]])
    spread = 1.4826 * np.median(np.abs(edge - np.median(edge)))  # a standard deviation, robustly
    inked = smooth > np.median(edge) + BACKGROUND_SPREADS * spread
    return np.where(inked, np.clip(departure, 0, 255), 0).astype(np.float32)


def _box_mean(values, radius):
    """Each value averaged with its neighbours within `radius` (a square window, shrunk at the edges)."""
    padded = np.pad(values.astype(np.float64), radius, mode="edge")
    sums = padded.cumsum(0).cumsum(1)
    sums = np.pad(sums, ((1, 0), (1, 0)))
    side = 2 * radius + 1
    window = sums[side:, side:] - sums[:-side, side:] - sums[side:, :-side] + sums[:-side, :-side]
    return window / side ** 2


def _mnist_style(ink):
    """Drop faint noise, fit into BOX x BOX, centre by mass in SIZE x SIZE."""
    ink = np.where(ink >= NOISE * ink.max(), ink, 0)
    return _centre_by_mass(_scaled(_trimmed(ink, 0), BOX))


def _fashion_style(ink):
    """Trim to the bounding box of the content, scale the longer side to SIZE, centre by the box."""
    content = _scaled(_trimmed(ink, TRIM * ink.max()), SIZE)
    height, width = content.shape
    out = np.zeros((SIZE, SIZE), dtype=np.uint8)
    top, left = (SIZE - height) // 2, (SIZE - width) // 2
    out[top:top + height, left:left + width] = content
    return out


PREPARATIONS = {"mnist": _mnist_style, "fashion": _fashion_style}  # spec.STYLES describes each


def _trimmed(ink, threshold):
    """`ink` cropped to the bounding box of its values above `threshold`."""
    rows = np.flatnonzero((ink > threshold).any(axis=1))
    cols = np.flatnonzero((ink > threshold).any(axis=0))
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _scaled(crop, side):
    """`crop` scaled (antialiased, aspect kept) so its longer side is `side`, stretched so its maximum is 255.

    Scaling works on floats, so faint ink is not rounded away before the stretch.
    """
    height, width = crop.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    box = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS))
    box = np.clip(box, 0, None)  # Lanczos overshoots slightly below 0 next to edges
    # Stretch so the strongest content is white, as in both datasets (scaling greys thin strokes).
    return np.round(box * (255.0 / box.max())).astype(np.uint8)


def _centre_by_mass(content):
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
