"""User images become MNIST-style 28x28 inputs; bad files become UsageErrors."""

import gzip
import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistcls.errors import UsageError
from mnistcls.images import load_picture


def rgb(colour):
    """Pillow reads a bare int as the red channel of an RGB colour; make it a grey."""
    return (colour,) * 3 if isinstance(colour, int) else colour


def draw_seven(size=(300, 200), ink=0, paper=255, mode="RGB", offset=(0, 0)):
    """A thick "7" (bar across the top, stroke down to the left) in a `size` picture."""
    if mode == "RGB":
        ink, paper = rgb(ink), rgb(paper)
    image = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(image)
    dx, dy = offset
    draw.line([(60 + dx, 40 + dy), (240 + dx, 40 + dy)], fill=ink, width=25)
    draw.line([(240 + dx, 40 + dy), (120 + dx, 180 + dy)], fill=ink, width=25)
    return image


def draw_ring(size=(400, 300), ink=0, paper=255, box=(20, 20, 140, 180)):
    image = Image.new("RGB", size, rgb(paper))
    ImageDraw.Draw(image).ellipse(box, outline=rgb(ink), width=18)
    return image


def save(image, path, **options):
    image.save(path, **options)
    return path


def centre_of_mass(array):
    weights = array.astype(np.float64)
    rows, cols = np.indices(array.shape)
    return (rows * weights).sum() / weights.sum(), (cols * weights).sum() / weights.sum()


def content_box(array):
    rows = np.flatnonzero(array.any(axis=1))
    cols = np.flatnonzero(array.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_dark_on_light_and_light_on_dark_give_the_same_input(tmp_path):
    dark = save(draw_seven(ink=0, paper=255), tmp_path / "dark.png")
    light = save(draw_seven(ink=255, paper=0), tmp_path / "light.png")
    original, from_dark = load_picture(dark)
    _, from_light = load_picture(light)
    assert np.array_equal(from_dark, from_light)
    # The original is returned as the user drew it, not inverted.
    assert original.shape == (200, 300) and original.dtype == np.uint8
    assert original[0, 0] == 255 and original[40, 150] == 0


@pytest.mark.parametrize(
    "name, image, options",
    [
        ("blue ink on cream, JPEG", draw_seven((600, 400), ink=(20, 30, 160), paper=(245, 235, 215), offset=(250, 150)),
         {"quality": 85}),
        ("pencil on grey paper, JPEG", draw_seven(ink=(30, 30, 30), paper=(120, 120, 110)), {"quality": 85}),
        ("chalk on a board, PNG", draw_seven(ink=(230, 230, 230), paper=(40, 60, 40)), {}),
        ("ring in a corner, PNG", draw_ring(), {}),
        ("small grey digit, PNG", draw_seven(ink=0, paper=255, mode="L").resize((30, 20)), {}),
    ],
)
def test_model_input_is_mnist_like(tmp_path, name, image, options):
    suffix = ".jpg" if "JPEG" in name else ".png"
    original, model_input = load_picture(save(image, tmp_path / f"digit{suffix}", **options))
    assert original.shape == (image.height, image.width) and original.dtype == np.uint8
    assert model_input.shape == (28, 28) and model_input.dtype == np.uint8
    assert model_input.max() == 255  # the ink is bright
    assert model_input[0].max() == model_input[-1].max() == 0  # on a black background
    height, width = content_box(model_input)
    assert max(height, width) in (19, 20, 21)  # scaled to fit the 20x20 box (+-1 for resampling fringe)
    row, col = centre_of_mass(model_input)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1


def test_transparent_background_counts_as_white_paper(tmp_path):
    # Transparent pixels are black (0, 0, 0, 0): ignoring alpha would give an all-black image.
    rgba = draw_seven(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    _, from_rgba = load_picture(save(rgba, tmp_path / "rgba.png"))
    _, from_rgb = load_picture(save(draw_seven(), tmp_path / "rgb.png"))
    assert np.array_equal(from_rgba, from_rgb)


def test_text_file_named_png_is_a_usage_error(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(UsageError, match="notes.png: not a readable image"):
        load_picture(path)


def test_truncated_png_is_a_usage_error(tmp_path):
    whole = save(draw_seven(), tmp_path / "whole.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UsageError, match="cut.png: not a readable image"):
        load_picture(path)


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="nothing.png: not found"):
        load_picture(tmp_path / "nothing.png")


@pytest.mark.parametrize("paper", [255, 0, 128])
def test_blank_image_is_a_usage_error(tmp_path, paper):
    path = save(Image.new("RGB", (120, 80), (paper,) * 3), tmp_path / "blank.jpg", quality=90)
    with pytest.raises(UsageError, match="blank.jpg: the image is blank"):
        load_picture(path)


def test_real_mnist_digits_survive_the_round_trip(tmp_path, real_data_dir):
    """A real MNIST digit, printed large and dark on white, comes back close to itself."""
    raw = gzip.decompress((real_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    digits = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:20]
    correlations = []
    for i, digit in enumerate(digits):
        page = Image.new("L", (400, 320), 255)
        page.paste(Image.fromarray(255 - digit).resize((224, 224), Image.Resampling.BICUBIC), (10 * i, 40))
        _, model_input = load_picture(save(page, tmp_path / f"{i}.jpg", quality=85))
        correlations.append(np.corrcoef(model_input.ravel(), digit.ravel())[0, 1])
    # Thin strokes may land one pixel off, which costs a few digits some correlation.
    assert np.median(correlations) > 0.95
    assert min(correlations) > 0.5


# --- every mode a PNG, JPEG, TIFF, BMP or GIF decodes to ------------------------------------

def _seven_mask():
    """Where the seven's ink is, as a boolean array (height 200, width 300)."""
    return np.asarray(draw_seven(mode="L")) < 128


def _transparent(mode, ink, hidden=0):
    """The seven opaque in `ink` on fully transparent pixels whose hidden colour is `hidden`."""
    mask = _seven_mask()
    grey = np.where(mask, ink, hidden).astype(np.uint8)
    alpha = np.where(mask, 255, 0).astype(np.uint8)
    la = Image.merge("LA", [Image.fromarray(grey), Image.fromarray(alpha)])
    return la.convert(mode) if mode != "LA" else la


def _paletted_with_transparent_paper():
    image = draw_seven(mode="L").convert("P")
    image.info["transparency"] = image.getpixel((0, 0))  # the paper's palette entry
    return image


def _wide(mode, dtype, ink, paper):
    """A seven in a mode of more than 8 bits: a 16-bit scan, a 32-bit integer or a float image."""
    image = Image.fromarray(np.where(_seven_mask(), ink, paper).astype(dtype))
    return image if image.mode == mode else image.convert(mode)


MODES = [  # (mode Pillow reads, how the file is made, file suffix)
    ("1", lambda: draw_seven(mode="L").convert("1"), ".png"),
    ("L", lambda: draw_seven(mode="L"), ".png"),
    ("P", lambda: draw_seven(mode="L").convert("P"), ".gif"),
    ("P", _paletted_with_transparent_paper, ".png"),
    ("LA", lambda: _transparent("LA", ink=0), ".png"),
    # Pillow writes PA's alpha to TIFF as opaque: the paper's own colour must be white here.
    ("PA", lambda: _transparent("PA", ink=0, hidden=255), ".tif"),
    ("RGB", lambda: draw_seven(ink=(20, 30, 120)), ".bmp"),
    ("RGBA", lambda: _transparent("RGBA", ink=0), ".png"),
    ("RGBA", lambda: _transparent("RGBA", ink=255, hidden=255), ".png"),  # white ink on transparent white
    ("CMYK", lambda: draw_seven().convert("CMYK"), ".tif"),
    ("CMYK", lambda: draw_seven().convert("CMYK"), ".jpg"),
    ("I;16", lambda: _wide("I;16", np.uint16, ink=5_000, paper=60_000), ".png"),
    ("I", lambda: _wide("I", np.int32, ink=5_000, paper=60_000), ".tif"),
    ("F", lambda: _wide("F", np.float32, ink=0.05, paper=0.95), ".tif"),
]


@pytest.mark.parametrize("mode, make, suffix", MODES, ids=[f"{m}{s}" for m, _, s in MODES])
def test_every_image_mode_gives_the_input_of_the_same_drawing_in_grey(tmp_path, mode, make, suffix):
    _, expected = load_picture(save(draw_seven(mode="L"), tmp_path / "grey.png"))
    path = save(make(), tmp_path / f"seven{suffix}")
    with Image.open(path) as written:
        assert written.mode == mode  # the file really is in the mode under test
    original, model_input = load_picture(path)
    assert original.shape == (200, 300)
    lossy = suffix == ".jpg"
    assert np.abs(model_input.astype(int) - expected).mean() < (3 if lossy else 0.5)


def _png_claiming(width, height):
    """A PNG whose header claims width x height pixels; its few bytes of data decompress to almost nothing."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 50_000], ids=["past-the-limit", "past-twice-the-limit"])
def test_a_decompression_bomb_is_refused_with_a_message_not_a_warning(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail the test
        with pytest.raises(UsageError, match=r"bomb.png: too large to read .*pixels.*give a smaller picture"):
            load_picture(path)


@pytest.mark.parametrize("content, name", [(b"GIF89a" + b"\0" * 7, "short.gif"), (b"%PDF-1.4\n", "doc.png"),
                                           (b"", "empty.jpg")])
def test_files_that_are_not_the_images_they_claim_to_be_are_usage_errors(tmp_path, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UsageError, match=f"{name}: not a readable image"):
        load_picture(path)
