"""YAML text in, plain data out, with the line of every field and within size limits.

Specs, `--set` values, run records, study files and search spaces are all read
here, so they share one set of number rules (`1e-4` is a float, as in YAML 1.2),
one set of limits, and messages that point at file and line.
"""

import re

import yaml

from mnistcls.errors import Problem, SpecError


# Limits on what a YAML file may stand for, checked while it is composed, before anything walks it:
# a few lines of nested anchors and aliases can stand for billions of values (a "billion laughs"),
# and thousands of nested brackets would exhaust Python's recursion. Specs use a tiny part of each.
MAX_YAML_CHARS = 1_000_000  # characters of text
MAX_YAML_DEPTH = 50  # levels of nested lists and mappings
MAX_YAML_VALUES = 100_000  # values the document stands for, each alias counted as all it stands for


class YAMLLimitError(yaml.YAMLError):
    """A document beyond one of the limits above; `line` is where it went beyond (1-based), if known."""

    def __init__(self, message, line=None):
        super().__init__(message)
        self.message, self.line = message, line


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers as YAML 1.2 does (`1e-4` is a float, not a string),
    and refusing documents beyond the MAX_YAML limits while composing them."""

    def __init__(self, text):
        if len(text) > MAX_YAML_CHARS:
            raise YAMLLimitError(f"the document is {len(text):,} characters long; "
                                 f"at most {MAX_YAML_CHARS:,} are read")
        super().__init__(text)
        self._depth = 0
        self._sizes = {}  # id of a composed node -> values it stands for, children and aliases included

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        alias = self.check_event(yaml.AliasEvent)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise YAMLLimitError(f"lists and mappings nested more than {MAX_YAML_DEPTH} levels deep",
                                     mark.line + 1)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if alias and id(node) not in self._sizes:  # its anchor's node is still being composed: it holds itself
            raise YAMLLimitError("an alias stands for a list or mapping that contains it, which never ends",
                                 mark.line + 1)
        # An alias gives the node composed for its anchor, whose size is known: adding it once
        # more per alias counts what the document stands for in time linear in its text.
        if id(node) not in self._sizes:
            children = (node.value if isinstance(node, yaml.SequenceNode) else
                        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(child), 1) for child in children)
        if self._sizes[id(node)] > MAX_YAML_VALUES:
            raise YAMLLimitError(f"aliases make the document stand for more than {MAX_YAML_VALUES:,} values",
                                 mark.line + 1)
        return node


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)(?:[eE][-+]?[0-9]+)$"""),
    list("-+0123456789."))


def read_yaml(text):
    """Plain data from YAML text, with the spec's number rules and limits (for `--set` values and run records).

    Raises:
        yaml.YAMLError: not YAML; YAMLLimitError: beyond a MAX_YAML limit.
    """
    loader = SpecLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml_lines(text, source):
    """(plain data, origins) of a spec or another YAML file checked like one (study files, search spaces).

    `origins` maps each field path to its (file, line), for `locate`. Broken YAML,
    or YAML beyond a limit, raises SpecError naming `source` and the line.
    """
    origins = {}
    try:
        loader = SpecLoader(text)
    except YAMLLimitError as err:
        raise SpecError([Problem(source, None, "", err.message)]) from None
    try:
        node = loader.get_single_node()
        data = None if node is None else _construct(loader, node, "", origins, source)
        return data, origins
    except YAMLLimitError as err:
        raise SpecError([Problem(source, err.line, "", err.message)]) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        message = f"YAML syntax error: {err.problem or err}"
        if err.context and err.context_mark and err.context_mark.line + 1 != line:
            message += f" ({err.context} that starts on line {err.context_mark.line + 1})"
        raise SpecError([Problem(source, line, "", message)]) from None
    except yaml.YAMLError as err:
        raise SpecError([Problem(source, None, "", f"YAML error: {err}")]) from None
    finally:
        loader.dispose()


def _construct(loader, node, path, origins, source):
    origins[path] = (source, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            child = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                raise SpecError([Problem(source, key_node.start_mark.line + 1, child,
                                         "field names must be words, e.g. `units: 10`")])
            if key in out:
                raise SpecError([Problem(source, key_node.start_mark.line + 1, child, "duplicate key")])
            out[key] = _construct(loader, value_node, child, origins, source)
            origins[child] = (source, key_node.start_mark.line + 1)  # a field is where its key is
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, f"{path}.{i}", origins, source) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def locate(origins, source, path, message):
    """A Problem at the line of field `path`, or of its nearest parent that has one."""
    probe = path
    while probe not in origins and probe:
        probe = probe.rpartition(".")[0]
    file, line = origins.get(probe, (source, None))
    return Problem(file, line, path, message)
