"""`--set KEY=VALUE` overrides, applied to a spec's plain data before it is checked, and sweeps.

A value is read as YAML (`--set train.epochs=3` sets a number); `KEY=a,b,c`
sweeps over three values, one run each.
"""

import yaml

from mnistcls.errors import Problem
from mnistcls.spec.reader import YAMLLimitError, read_yaml


def split_sweep(override):
    """`key=a,b,c` -> [`key=a`, `key=b`, `key=c`]; a YAML list or mapping is one value."""
    key, sep, value = override.partition("=")
    if not sep or value.lstrip().startswith(("[", "{")) or "," not in value:
        return [override]
    return [f"{key}={v.strip()}" for v in value.split(",")]


def apply_override(raw, text, origins, problems):
    """Apply one `--set a.b.c=value` to the raw tree; the value is read as YAML."""
    key, sep, value_text = text.partition("=")
    where = f"--set {text}"
    if not sep or not key:
        problems.append(Problem(where, None, "", "expected KEY=VALUE, e.g. --set train.epochs=3"))
        return
    try:
        value = read_yaml(value_text)
    except YAMLLimitError as err:
        problems.append(Problem(where, None, key, err.message))
        return
    except yaml.YAMLError:
        value = value_text
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        path = ".".join(parts[:depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node) or node[int(part)] is None:
                problems.append(Problem(where, None, path, f"no such list entry (the list has {len(node)})"))
                return
            part = int(part)
        elif not isinstance(node, dict):
            problems.append(Problem(where, None, path, "cannot set a field inside a plain value"))
            return
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
    for stale in [k for k in origins if k == key or k.startswith(key + ".")]:
        del origins[stale]
    origins[key] = (where, None)
