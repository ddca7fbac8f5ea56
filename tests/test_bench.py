"""`mnistcls bench`: it times the model `mnistcls train` would train, with the spec's settings."""

import json

from click.testing import CliRunner

from conftest import TINY_SPEC
from mnistcls import train
from mnistcls.cli import cli


def test_bench_times_a_model_compiled_with_the_specs_precision_and_steps_per_execution(monkeypatch):
    compiled = []

    def keep_the_model(*args, **kwargs):  # the real compiled_model; the test only looks at what it made
        model, callbacks = real(*args, **kwargs)
        compiled.append(model)
        return model, callbacks

    real = train.compiled_model
    monkeypatch.setattr(train, "compiled_model", keep_the_model)
    result = CliRunner().invoke(cli, ["bench", "-c", TINY_SPEC, "--steps", "8", "--precision", "mixed_bfloat16",
                                      "--set", "train.steps_per_execution=4", "--json"])
    assert result.exit_code == 0, result.output
    (speed,) = json.loads(result.stdout)
    assert speed["precision"] == "mixed_bfloat16" and speed["batch_size"] == 64
    assert speed["train_images_per_second"] > 0 and speed["eval_images_per_second"] > 0

    (model,) = compiled
    assert model.steps_per_execution == 4  # 4 divides the 8 timed steps: kept as the spec says
    hidden = [layer for layer in model.layers[1:-1]]
    assert hidden and all(layer.dtype_policy.name == "mixed_bfloat16" for layer in hidden)
    assert model.layers[-1].dtype_policy.name == "float32"  # the output stays float32 for the loss
