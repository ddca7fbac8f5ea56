"""The blocks of a spec: entries of `model:` whose arguments hold entries of their own.

    - residual:                    # y = x + f(x): the layers are f
        - conv2d: {filters: 32, kernel_size: 3, padding: same}
        - batchnorm
    - residual:
        shortcut: projection       # identity (default) | projection: 1x1 convolution + batchnorm
        layers: [...]
    - repeat: {times: 3, layers: [...]}   # copies in sequence, each with its own weights
    - parallel:                    # branches on the same input, merged
        merge: concat              # concat | add | average | maximum
        branches: [[...], [...]]   # an empty branch passes its input through

A block is an entry of a registry like the layers of layers.py, normalized and
checked by the same recursive functions (spec/model.py) and laid out by the same
ones (build.py), which call the block's `lay_out` with the entries already
checked. A bare value sets a block's primary argument, as it does a layer's:
`- residual: [...]` is `- residual: {layers: [...]}`. Adding a block is one entry
in BLOCKS and its layout function.

Fields inside a block have dotted paths like any other, the block's name left out
as a layer's is: `model.3.layers.0.filters`, `model.2.times`,
`model.5.branches.1.0.kernel_size`.

Keras is imported only when a block is laid out.
"""

from dataclasses import dataclass

from mnistcls import checks

MAX_DEPTH = 8  # blocks within blocks; deeper is a spec problem, not a recursion error
MAX_TIMES = 1000  # copies of a repeat

SHORTCUTS = ("identity", "projection")
MERGES = ("concat", "add", "average", "maximum")
REQUIRED = object()  # an option without a default


@dataclass(frozen=True)
class BlockType:
    """What a block name stands for.

    Args:
        entries: the argument holding the block's own entries.
        branched: that argument is a list of lists of entries (branches), not one list.
        options: the block's other arguments: name -> (default or REQUIRED, check).
        lay_out: `lay_out(layout, block, x, final)`: the block's output tensor for input `x`
            (see build.Layout; `final`: the model's output, which computes in float32).
    """

    entries: str
    branched: bool
    options: dict
    lay_out: object

    @property
    def primary(self):
        """The argument a bare value sets: the block's entries."""
        return self.entries


def _times(value):
    return checks.integer(value, 1) or (f"must be <= {MAX_TIMES}, got {value}" if value > MAX_TIMES else None)


# --- layouts: each returns the block's output, or raises the layout's problem ---------------------

def _residual(layout, block, x, final):
    """f(x) + x: the identity, or a projection to f(x)'s shape (torchvision's `downsample`)."""
    import keras

    body = layout.entries(block.args["layers"], x, final=False)
    if block.args["shortcut"] == "projection":
        shortcut = _projection(layout, block, x, body)
    elif tuple(x.shape) != tuple(body.shape):
        raise layout.problem(block.path, f"residual: its layers turn {layout.shape(x)} into {layout.shape(body)}, "
                                         "and an identity shortcut adds only equal shapes: set `shortcut: "
                                         "projection` (a 1x1 convolution and batch normalization that match the "
                                         "shapes), or keep the filters and strides")
    else:
        shortcut = x
    return layout.apply(keras.layers.Add(dtype=layout.dtype(final)), [shortcut, body], block.path)


def _projection(layout, block, x, body):
    """A 1x1 convolution (a Dense layer on flat input) without bias, and batch normalization, from x to body's shape."""
    import keras

    path = f"{block.path}.shortcut"
    if len(x.shape) == len(body.shape) == 2:
        step = keras.layers.Dense(body.shape[-1], use_bias=False, dtype=layout.dtype(False))
    elif len(x.shape) == len(body.shape) == 4:
        strides = tuple(-(-size // out) for size, out in zip(x.shape[1:3], body.shape[1:3]))  # ceil
        if any(-(-size // s) != out for size, s, out in zip(x.shape[1:3], strides, body.shape[1:3])):
            raise layout.problem(block.path, f"residual: its layers turn {layout.shape(x)} into "
                                             f"{layout.shape(body)}, a size no stride of a 1x1 projection gives: "
                                             "use padding: same in its layers, so that only strides shrink the image")
        step = keras.layers.Conv2D(body.shape[-1], 1, strides=strides, padding="same", use_bias=False,
                                   dtype=layout.dtype(False))
    else:
        raise layout.problem(block.path, f"residual: its layers turn {layout.shape(x)} into {layout.shape(body)}; "
                                         "a shortcut cannot join images and flat features: flatten before the block, "
                                         "or keep its layers on images")
    y = layout.apply(step, x, path)
    return layout.apply(layout.batch_normalization(), y, path)


_MERGE_LAYERS = {"concat": "Concatenate", "add": "Add", "average": "Average", "maximum": "Maximum"}


def _parallel(layout, block, x, final):
    """Each branch on the same input, then one merge of their outputs."""
    import keras

    outputs = [layout.entries(branch, x, final=False) for branch in block.args["branches"]]
    merge = block.args["merge"]
    # concat joins the channels, so only the other dimensions must agree; the others need equal shapes
    compared = [tuple(out.shape[:-1] if merge == "concat" else out.shape) for out in outputs]
    for b, shape in enumerate(compared[1:], 1):
        if shape != compared[0] or len(outputs[b].shape) != len(outputs[0].shape):
            what, fix = (("the same image size", "give every branch the same strides, and padding: same")
                         if merge == "concat" else
                         ("the same shape", "give every branch the same filters (or units) and strides, "
                                            "or set merge: concat"))
            raise layout.problem(block.path, f"parallel: merge {merge} needs {what} from every branch, but branch 0 "
                                             f"gives {layout.shape(outputs[0])} and branch {b} "
                                             f"{layout.shape(outputs[b])}: {fix}")
    layer = getattr(keras.layers, _MERGE_LAYERS[merge])(dtype=layout.dtype(final))
    return layout.apply(layer, outputs, block.path)


def _repeat(layout, block, x, final):
    """`times` copies of the layers in sequence, each with its own weights."""
    times = block.args["times"]
    for copy in range(1, times + 1):
        x = layout.entries(block.args["layers"], x, final=final and copy == times, copy=(copy, times))
    return x


BLOCKS = {
    "residual": BlockType("layers", False, {"shortcut": ("identity", lambda v: checks.one_of(v, SHORTCUTS))},
                          _residual),
    "repeat": BlockType("layers", False, {"times": (REQUIRED, _times)}, _repeat),
    "parallel": BlockType("branches", True, {"merge": ("concat", lambda v: checks.one_of(v, MERGES))}, _parallel),
}
