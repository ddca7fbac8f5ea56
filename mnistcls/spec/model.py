"""A spec's `model:` list: each entry normalized to {"type": NAME, **args} and checked, blocks recursively.

    - dense: 128                  # a bare value sets the layer's primary argument
    - flatten                     # no arguments
    - conv2d: {filters: 32, ...}  # arguments by name
    - residual: [...]             # a block (mnistcls.blocks): entries of its own, normalized the same way

Layer names and argument checks come from the registry in mnistcls.layers, block
names and options from mnistcls.blocks. A field's path leaves the entry's name
out: `model.3.units`, `model.2.layers.0.filters`, `model.5.branches.1.0.units`.
"""

from dataclasses import dataclass

from mnistcls import blocks, checks, layers
from mnistcls.spec.reader import locate


@dataclass
class LayerSpec:
    """One checked entry of `model:`: a layer, or a block whose entries are LayerSpecs too."""

    type: str  # a short name from layers.LAYERS, a Keras class name, or a block from blocks.BLOCKS
    args: dict  # the Keras layer's keyword arguments; a block's options and its entries
    path: str  # where it is in the spec, for messages and --set: "model.3", "model.2.layers.0"

    @property
    def block(self):
        """The blocks.BlockType of a block, None for a layer."""
        return blocks.BLOCKS.get(self.type)

    def children(self):
        """The entries of a block, each list (a branch, or the block's layers) in order; none for a layer."""
        if not self.block:
            return []
        nested = self.args[self.block.entries]
        return nested if self.block.branched else [nested]

    def to_dict(self):
        """The entry as a spec file writes it."""
        if not self.block:
            return {self.type: self.args}
        nested = [[entry.to_dict() for entry in branch] for branch in self.children()]
        return {self.type: {**self.args, self.block.entries: nested if self.block.branched else nested[0]}}


def walk(model):
    """Every entry of `model`, blocks before the entries inside them, in the order of the file."""
    for entry in model:
        yield entry
        for branch in entry.children():
            yield from walk(branch)


def find_entry(model, path):
    """The entry at `path` ("model.2.layers.0"), or None."""
    return next((entry for entry in walk(model) if entry.path == path), None)


# --- normalizing: the plain data of `model:`, before and after --set -----------------------------

def normalize_model(raw, origins, source, problems):
    if isinstance(raw.get("model"), list):
        raw["model"] = _normalize_list(raw["model"], "model", origins, source, problems, depth=0)


def _normalize_list(entries, path, origins, source, problems, depth):
    return [_normalize_entry(entry, f"{path}.{i}", origins, source, problems, depth) for i, entry in enumerate(entries)]


def _normalize_entry(entry, path, origins, source, problems, depth):
    """`- dense: 128` / `- flatten` / `- conv2d: {...}` / `- residual: [...]` -> {"type": ..., **args}."""
    if isinstance(entry, str):
        entry = {"type": entry}
    elif isinstance(entry, dict) and len(entry) == 1 and "type" not in entry:
        entry = _lift(entry, path, origins, source, problems)
    elif not (entry is None or isinstance(entry, dict) and "type" in entry):  # else normalized, or reported
        problems.append(locate(origins, source, path,
                               "a layer is `- NAME`, `- NAME: VALUE` or `- NAME: {ARG: VALUE, ...}`"))
        return None
    block = blocks.BLOCKS.get(entry["type"]) if entry and isinstance(entry["type"], str) else None
    if block:
        _normalize_block(entry, block, path, origins, source, problems, depth)
    return entry


def _lift(entry, path, origins, source, problems):
    """{NAME: VALUE} -> {"type": NAME, **arguments}: a mapping of arguments, or a bare value for the primary one."""
    (name, value), = entry.items()
    resolved = blocks.BLOCKS.get(name) or (layers.resolve(name) if isinstance(name, str) else None)
    primary = resolved.primary if isinstance(resolved, blocks.BlockType) else resolved and resolved[1].primary
    # Arguments live one level up in a normalized entry: model.3.units, not model.3.dense.units
    # (and a bare list of a block's entries is its primary argument: model.3.layers.0, not model.3.residual.0).
    bare = value is not None and not isinstance(value, dict)
    prefix = f"{path}.{name}."
    for key in [k for k in origins if k.startswith(prefix)]:
        origins[f"{path}.{primary}.{key[len(prefix):]}" if bare and primary else f"{path}.{key[len(prefix):]}"] = \
            origins[key]
    if value is None:
        return {"type": name}
    if isinstance(value, dict):
        return {"type": name, **value}
    if resolved and primary:
        if bare and primary:
            origins.setdefault(f"{path}.{primary}", origins.get(f"{path}.{name}", origins.get(path)))
        return {"type": name, primary: value}
    problems.append(locate(origins, source, path, unknown_layer(name) if resolved is None else
                           f"'{name}' takes a mapping of arguments, e.g. `- {name}: {{...}}`"))
    return None


def _normalize_block(entry, block, path, origins, source, problems, depth):
    """A block's own entries, normalized in place; a block nested beyond blocks.MAX_DEPTH is a problem."""
    if depth >= blocks.MAX_DEPTH:
        problems.append(locate(origins, source, path, f"blocks nested more than {blocks.MAX_DEPTH} deep: "
                                                      "nest fewer of them"))
        entry["type"] = None  # reported: check_model skips it
        return
    where, nested = f"{path}.{block.entries}", entry.get(block.entries)
    if not isinstance(nested, list):
        return  # check_model reports it
    if block.branched:
        entry[block.entries] = [_normalize_list(branch, f"{where}.{b}", origins, source, problems, depth + 1)
                                if isinstance(branch, list) else branch for b, branch in enumerate(nested)]
    else:
        entry[block.entries] = _normalize_list(nested, where, origins, source, problems, depth + 1)


# --- checking: normalized entries -> LayerSpecs, every problem at its line ------------------------

def check_model(raw_model, source, origins, problems):
    if not isinstance(raw_model, list) or not raw_model:
        problems.append(locate(origins, source, "model", "must be a non-empty list of layers"))
        return []
    return _check_list(raw_model, "model", source, origins, problems)


def _check_list(entries, path, source, origins, problems):
    checked = (_check_entry(entry, f"{path}.{i}", source, origins, problems) for i, entry in enumerate(entries))
    return [entry for entry in checked if entry is not None]


def _check_entry(entry, path, source, origins, problems):
    if entry is None or entry["type"] is None:
        return None  # reported while normalizing
    args = {k: v for k, v in entry.items() if k != "type"}
    name = entry["type"]
    block = blocks.BLOCKS.get(name) if isinstance(name, str) else None
    if block:
        return _check_block(name, block, args, path, source, origins, problems)
    resolved = layers.resolve(name) if isinstance(name, str) else None
    if resolved is None:
        problems.append(locate(origins, source, path, unknown_layer(name)))
        return None
    cls, layer_type = resolved
    for arg, message in layers.check_arguments(cls, args, layer_type.limits):
        problems.append(locate(origins, source, f"{path}.{arg}" if arg else path, message))
    return LayerSpec(name, args, path)


def _check_block(name, block, args, path, source, origins, problems):
    """A block's options against blocks.BLOCKS, then its entries, each checked like the model's own."""
    def problem(where, message):
        problems.append(locate(origins, source, where, message))

    allowed = {block.entries, *block.options}
    for key in args:
        if key not in allowed:
            problem(f"{path}.{key}", f"unknown argument for {name}" + checks.did_you_mean(str(key), allowed)
                    + f"; allowed: {', '.join(sorted(allowed))}")
    options = {}
    for option, (default, check) in block.options.items():
        if option not in args and default is blocks.REQUIRED:
            problem(path, f"{name} needs the argument '{option}'")
        elif option in args and check(args[option]):
            problem(f"{path}.{option}", check(args[option]))
        options[option] = args.get(option, default)
    where, nested = f"{path}.{block.entries}", args.get(block.entries)
    if block.branched:
        if not (isinstance(nested, list) and len(nested) >= 2 and all(isinstance(b, list) for b in nested)):
            problem(where if block.entries in args else path,
                    f"{name} needs `{block.entries}:`, a list of two or more branches, each a list of layers "
                    "(an empty one passes its input through), e.g. [[conv2d: 16], [maxpool: 2]]")
            return None
        entries = [_check_list(branch, f"{where}.{b}", source, origins, problems) for b, branch in enumerate(nested)]
    else:
        if not (isinstance(nested, list) and nested):
            problem(where if block.entries in args else path,
                    f"{name} needs `{block.entries}:`, a non-empty list of layers, e.g. `- {name}: [...]`")
            return None
        entries = _check_list(nested, where, source, origins, problems)
    return LayerSpec(name, {**options, block.entries: entries}, path)


def unknown_layer(name):
    """What is wrong with a layer name neither registry resolves."""
    if name in layers.FORBIDDEN:
        return f"'{name}': forbidden: it can run arbitrary code"
    choices = sorted(layers.LAYERS) + sorted(blocks.BLOCKS) + layers.keras_layer_names()
    return (f"'{name}': unknown layer" + checks.did_you_mean(str(name), choices)
            + f"; short names: {', '.join(sorted(layers.LAYERS))}; blocks: {', '.join(blocks.BLOCKS)}; "
            "or any Keras layer class name")


# --- what the model outputs ------------------------------------------------------------------------

# Layers that pass values through at inference: they do not change what the output is.
PASS_THROUGH = {"dropout", "flatten", "Dropout", "Flatten", "Identity", "Reshape", "SpatialDropout2D",
                "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization"}


def output_activation(model):
    """'softmax' when the model's output is probabilities, else None (logits).

    Decided by the last entry that is not a pass-through layer: its `activation`
    argument, or a Softmax layer. A repeat ends as its layers do; a residual adds
    its shortcut, so it never outputs probabilities; a parallel block does only
    when it averages branches that each do.
    """
    acting = [entry for entry in model if entry.type not in PASS_THROUGH]
    if not acting:
        return None
    last = acting[-1]
    if last.type == "repeat":
        return output_activation(last.args["layers"])
    if last.type == "parallel":
        every = all(output_activation(branch) == "softmax" for branch in last.args["branches"])
        return "softmax" if last.args["merge"] == "average" and every else None
    if last.block:
        return None
    return "softmax" if last.type == "Softmax" or last.args.get("activation") == "softmax" else None


def last_entry(model):
    """The path of the entry that makes the model's output: the last one, inside a repeat its last layer's."""
    last = model[-1]
    return last_entry(last.args["layers"]) if last.type == "repeat" else last.path
