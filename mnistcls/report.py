"""Everything mnistcls prints: rich tables built by a few shared helpers.

Commands build their output here so every table looks alike: numbers right-aligned
with thousands separators, accuracies as percentages, one style of title.
"""

import json
import sys

from rich.console import Console
from rich.table import Table

from mnistcls.build import format_shape

# Piped output (logs, CI) gets room for wide tables instead of rich's 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False)


def table(title, columns, rows, caption=None):
    """A table whose numeric columns (names ending in '>') are right-aligned."""
    t = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for i, col in enumerate(columns):
        numeric = col.endswith(">")
        # Only free text may wrap: names and numbers stay on one line so rows stay readable.
        t.add_column(col.rstrip(">"), justify="right" if numeric else "left", no_wrap=numeric or i == 0,
                     min_width=None if numeric else 12)
    for row in rows:
        t.add_row(*[str(v) for v in row])
    return t


def count(n):
    return f"{n:,}"


def percent(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def print_json(data):
    """Machine-readable output for `--json`: nothing else goes to stdout."""
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def error(message):
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)


# --- summary -----------------------------------------------------------------------

def model_summary(summary):
    """Keras' summary layout (Layer (type) | Output Shape | Param #) plus MACs."""
    rows = [(f"{r.name} ({r.kind})", format_shape(r.output_shape), count(r.params), count(r.macs))
            for r in summary.rows]
    caption = (f"Total params: {count(summary.total)}\n"
               f"Trainable params: {count(summary.trainable)}\n"
               f"Non-trainable params: {count(summary.non_trainable)}\n"
               f"Multiply-accumulates per image: {count(summary.macs)} "
               f"({2 * summary.macs / 1e6:.1f} MFLOPs)")
    title = f"{summary.name}: {summary.description}" if summary.description else summary.name
    return table(title, ["Layer (type)", "Output Shape", "Param #>", "MACs>"], rows, caption)


def models_overview(summaries):
    """One line per model: what `mnistcls summary` shows without --config."""
    rows = [(s.name, len(s.rows) - 1, count(s.total), count(s.trainable),
             count(s.non_trainable), f"{2 * s.macs / 1e6:.2f}M", s.description) for s in summaries]
    return table("Bundled configs",
                 ["Config", "Layers>", "Params>", "Trainable>", "Non-trainable>", "FLOPs/image>", "Description"],
                 rows)
