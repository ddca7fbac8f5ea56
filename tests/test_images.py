"""User images become MNIST-style 28x28 inputs; bad files become UsageErrors."""

import gzip

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


def test_real_mnist_digits_survive_the_round_trip(tmp_path, shared_data_dir):
    """A real MNIST digit, printed large and dark on white, comes back close to itself."""
    raw = gzip.decompress((shared_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
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
