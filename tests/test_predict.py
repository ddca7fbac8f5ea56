"""`mnistcls predict` on pictures drawn here, with a tiny model trained once on the generated shapes."""

import json

import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageOps

import shapes
from mnistcls.cli import cli


@pytest.fixture
def pictures(tmp_path):
    """A large dark shape drawn on white paper in colour, its inverse, and a file that is no image."""
    drawing = Image.new("RGB", (300, 420), "white")
    pen = ImageDraw.Draw(drawing)
    pen.rectangle([90, 40, 210, 90], fill=(20, 30, 60))  # a pair of trousers: waistband and two legs
    pen.polygon([(90, 90), (145, 90), (140, 380), (95, 380)], fill=(20, 30, 60))
    pen.polygon([(155, 90), (210, 90), (205, 380), (160, 380)], fill=(20, 30, 60))
    drawing.save(tmp_path / "dark_on_white.png")
    ImageOps.invert(drawing).save(tmp_path / "light_on_black.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing after the signature")
    return tmp_path


def predict(runs_dir, *args):
    return CliRunner().invoke(cli, ["predict", "--runs-dir", str(runs_dir), *args])


def test_a_drawing_and_its_inverse_get_the_same_prediction(tiny_run, pictures):
    runs_dir, run_id = tiny_run
    result = predict(runs_dir, "--run", run_id, str(pictures / "dark_on_white.png"),
                     str(pictures / "light_on_black.png"), "--json")
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.stdout)
    dark, light = (entry["top"] for entry in prediction["images"])
    assert len(dark) == 3 and dark[0]["probability"] >= dark[1]["probability"] >= dark[2]["probability"]
    assert [c["class"] for c in dark] == [c["class"] for c in light]
    assert [c["probability"] for c in dark] == pytest.approx([c["probability"] for c in light], abs=1e-6)
    assert {c["class"] for c in dark} <= set(shapes.CLASSES)  # from the folder's classes.txt


def test_unreadable_files_are_reported_and_the_others_still_classified(tiny_run, pictures):
    runs_dir, run_id = tiny_run
    good = str(pictures / "dark_on_white.png")
    args = ["--run", run_id, str(pictures / "broken.png"), good, str(pictures / "missing.png")]
    result = predict(runs_dir, *args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "broken.png: not a readable image" in result.output and "missing.png: not found" in result.output
    assert good in result.output and "Guess 1" in result.output

    entries = json.loads(predict(runs_dir, *args, "--json").stdout)["images"]
    assert ["error" in entry for entry in entries] == [True, False, True] and len(entries[1]["top"]) == 3


def test_show_writes_each_image_beside_the_model_input_without_overwriting(tiny_run, pictures, monkeypatch):
    runs_dir, run_id = tiny_run
    monkeypatch.chdir(pictures)
    (pictures / "predict-inputs.png").write_text("mine")
    result = predict(runs_dir, "--run", run_id, "--show", "dark_on_white.png", "light_on_black.png")
    assert result.exit_code == 0, result.output
    assert "predict-inputs-2.png" in result.output and (pictures / "predict-inputs.png").read_text() == "mine"
    assert "prepared in its mnist style" in " ".join(result.output.split())  # a folder's style, mnist unless told
    width, height = Image.open(pictures / "predict-inputs-2.png").size
    assert height > width  # two rows of (original, model input) pairs


def test_a_missing_run_is_one_clear_error(tmp_path, pictures):
    result = predict(tmp_path, "--run", "nosuchrun", str(pictures / "dark_on_white.png"))
    assert result.exit_code == 2 and "no run 'nosuchrun'" in result.output and "Traceback" not in result.output


def test_a_16_bit_scan_is_classified_and_a_bomb_is_one_line(tiny_run, pictures):
    import numpy as np

    from test_images import _png_claiming

    runs_dir, run_id = tiny_run
    grey = np.asarray(Image.open(pictures / "dark_on_white.png").convert("L"), dtype=np.uint16)
    Image.fromarray(grey * 200 + 5_000).save(pictures / "scan16.png")  # 5,000 to 56,000 of 65,535
    (pictures / "bomb.png").write_bytes(_png_claiming(20_000, 20_000))
    result = predict(runs_dir, "--run", run_id, "--top", "2", str(pictures / "scan16.png"),
                     str(pictures / "dark_on_white.png"), str(pictures / "bomb.png"), "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    scan, drawing, bomb = json.loads(result.stdout)["images"]
    assert [c["class"] for c in scan["top"]] == [c["class"] for c in drawing["top"]] and len(scan["top"]) == 2
    assert "too large to read" in bomb["error"]
