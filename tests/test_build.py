"""Spec -> Keras model: multiply-accumulates against hand counts, and which errors are spec problems."""

import json

import pytest
from click.testing import CliRunner

from mnistcls import build, layers, spec as specs
from mnistcls.cli import cli
from mnistcls.errors import SpecError


def summary_of(tmp_path, model_yaml, input_shape=(8, 8, 1)):
    path = tmp_path / "m.yaml"
    path.write_text("model:\n" + model_yaml)
    spec = specs.load_spec(str(path))
    model = build.build_model(spec, input_shape=input_shape, num_classes=10)
    return build.summarize(model, spec.name)


def macs_by_type(summary):
    return {row.kind: row.macs for row in summary.rows}


# Each layer's multiply-accumulates per image, counted by hand on an 8x8x1 input.
HAND_COUNTS = [
    # 3x3x1x4 kernel at 6x6 output positions
    ("  - conv2d: {filters: 4, kernel_size: 3}\n", "Conv2D", 3 * 3 * 1 * 4 * 6 * 6),
    # after a 1x1 conv to 4 channels: depthwise 3x3 per channel at 6x6, then 1x1 from 4 to 6 at 6x6
    ("  - conv2d: {filters: 4, kernel_size: 1}\n  - SeparableConv2D: {filters: 6, kernel_size: 3}\n",
     "SeparableConv2D", 3 * 3 * 4 * 6 * 6 + 4 * 6 * 6 * 6),
    # a 3x3 window per channel (4 of them), at 6x6 output positions
    ("  - conv2d: {filters: 4, kernel_size: 1}\n  - DepthwiseConv2D: {kernel_size: 3}\n",
     "DepthwiseConv2D", 3 * 3 * 4 * 6 * 6),
    # each of the 8x8 input positions spreads over a 3x3 window of 5 filters (stride 2: a 17x17 output)
    ("  - Conv2DTranspose: {filters: 5, kernel_size: 3, strides: 2}\n", "Conv2DTranspose", 8 * 8 * 3 * 3 * 1 * 5),
]


@pytest.mark.parametrize("model_yaml, kind, macs", HAND_COUNTS, ids=[kind for _, kind, _ in HAND_COUNTS])
def test_multiply_accumulates_match_hand_counts(tmp_path, model_yaml, kind, macs):
    summary = summary_of(tmp_path, model_yaml + "  - globalavgpool\n  - dense: {units: 10, activation: softmax}\n")
    counted = macs_by_type(summary)
    assert counted[kind] == macs
    channels = {"Conv2D": 4, "SeparableConv2D": 6, "DepthwiseConv2D": 4, "Conv2DTranspose": 5}[kind]
    assert counted["Dense"] == channels * 10  # a (channels -> 10) kernel, once per image
    assert counted["GlobalAveragePooling2D"] == 0  # deliberately: no kernel, next to nothing


def test_a_layer_mnistcls_cannot_count_is_unknown_not_zero(tmp_path):
    summary = summary_of(tmp_path, "  - flatten\n"
                                   "  - EinsumDense: {equation: 'ab,bc->ac', output_shape: 10, activation: softmax}\n")
    assert macs_by_type(summary)["EinsumDense"] is None
    assert summary.macs is None and summary.to_dict()["flops_per_image"] is None

    path = tmp_path / "m.yaml"
    result = CliRunner().invoke(cli, ["summary", "-c", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["macs_per_image"] is None
    result = CliRunner().invoke(cli, ["summary", "-c", str(path)])
    assert result.exit_code == 0 and "n/a" in result.output


def test_a_layer_that_cannot_take_its_input_is_a_spec_problem(tmp_path):
    with pytest.raises(SpecError, match="cannot work here"):
        summary_of(tmp_path, "  - flatten\n  - conv2d: {filters: 4, kernel_size: 3}\n"
                             "  - dense: {units: 10, activation: softmax}\n")


def test_a_bug_while_building_is_not_reported_as_a_spec_problem(tmp_path, monkeypatch):
    def broken(name, args):
        raise KeyError("a bug in mnistcls")

    monkeypatch.setattr(layers, "make_layer", broken)
    with pytest.raises(KeyError):
        summary_of(tmp_path, "  - flatten\n  - dense: {units: 10, activation: softmax}\n")
