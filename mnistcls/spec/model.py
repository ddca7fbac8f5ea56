"""A spec's `model:` list: each entry normalized to {"type": NAME, **args} and checked against Keras.

    - dense: 128                  # a bare value sets the layer's primary argument
    - flatten                     # no arguments
    - conv2d: {filters: 32, ...}  # arguments by name

Layer names and argument checks come from the registry in mnistcls.layers.
"""

from dataclasses import dataclass

from mnistcls import checks, layers
from mnistcls.spec.reader import locate


@dataclass
class LayerSpec:
    type: str  # a short name from layers.LAYERS or a Keras class name
    args: dict  # keyword arguments for the Keras layer
    index: int  # position in the model list, for messages ("model.3")


def normalize_model(raw, origins, source, problems):
    if isinstance(raw.get("model"), list):
        raw["model"] = [_normalize_layer(entry, f"model.{i}", origins, source, problems)
                        for i, entry in enumerate(raw["model"])]


def _normalize_layer(entry, path, origins, source, problems):
    """`- dense: 128` / `- flatten` / `- conv2d: {...}` -> {"type": ..., **args}."""
    if entry is None or (isinstance(entry, dict) and "type" in entry):
        return entry  # normalized already, or reported already
    if isinstance(entry, str):
        return {"type": entry}
    if isinstance(entry, dict) and len(entry) == 1:
        (name, value), = entry.items()
        # Arguments live one level up in a normalized layer: model.3.units, not model.3.dense.units.
        for key in [k for k in origins if k.startswith(f"{path}.{name}.")]:
            origins[f"{path}.{key[len(path) + len(str(name)) + 2:]}"] = origins[key]
        if value is None:
            return {"type": name}
        if isinstance(value, dict):
            return {"type": name, **value}
        resolved = layers.resolve(name) if isinstance(name, str) else None
        if resolved and resolved[1].primary:
            return {"type": name, resolved[1].primary: value}
        problems.append(locate(origins, source, path, _unknown_layer(name) if resolved is None else
                               f"'{name}' takes a mapping of arguments, e.g. `- {name}: {{...}}`"))
        return None
    problems.append(locate(origins, source, path,
                           "a layer is `- NAME`, `- NAME: VALUE` or `- NAME: {ARG: VALUE, ...}`"))
    return None


def check_model(raw_model, source, origins, problems):
    if not isinstance(raw_model, list) or not raw_model:
        problems.append(locate(origins, source, "model", "must be a non-empty list of layers"))
        return []
    model = []
    for i, entry in enumerate(raw_model):
        if entry is None:
            continue
        path = f"model.{i}"
        args = {k: v for k, v in entry.items() if k != "type"}
        name = entry["type"]
        resolved = layers.resolve(name) if isinstance(name, str) else None
        if resolved is None:
            problems.append(locate(origins, source, path, _unknown_layer(name)))
            continue
        cls, layer_type = resolved
        for arg, message in layers.check_arguments(cls, args, layer_type.limits):
            problems.append(locate(origins, source, f"{path}.{arg}" if arg else path, message))
        model.append(LayerSpec(name, args, i))
    return model


def _unknown_layer(name):
    """What is wrong with a layer name the registry does not resolve."""
    if name in layers.FORBIDDEN:
        return f"'{name}': forbidden: it can run arbitrary code"
    choices = sorted(layers.LAYERS) + layers.keras_layer_names()
    return (f"'{name}': unknown layer" + checks.did_you_mean(str(name), choices)
            + f"; short names: {', '.join(sorted(layers.LAYERS))}, or any Keras layer class name")


# Layers that pass values through at inference: they do not change what the output is.
PASS_THROUGH = {"dropout", "flatten", "Dropout", "Flatten", "Identity", "Reshape", "SpatialDropout2D",
                "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization"}


def output_activation(model):
    """'softmax' when the model's output is probabilities, else None (logits).

    Decided by the last layer that is not a pass-through one: its `activation`
    argument, or a Softmax layer.
    """
    acting = [layer for layer in model if layer.type not in PASS_THROUGH]
    if not acting:
        return None
    last = acting[-1]
    return "softmax" if last.type == "Softmax" or last.args.get("activation") == "softmax" else None
