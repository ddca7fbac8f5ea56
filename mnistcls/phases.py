"""Where a command's time goes, phase by phase: what `--verbose` prints at the end of `train`.

A command's fixed cost (imports, data, building, saving, the final test) is time a
user waits for besides the epochs themselves; measuring each phase, every time,
lets the next person see which is worth cutting. The phases are summed per process
(a study trains many runs in one).
"""

import time
from contextlib import contextmanager

_SPENT = {}  # phase -> [seconds, the phase it is part of or None], in the order the phases first ran


@contextmanager
def phase(name, part_of=None):
    """Time the block as (part of) phase `name`; `part_of`: a phase whose time includes this one's."""
    started = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - started, part_of)


def add(name, seconds, part_of=None):
    _SPENT.setdefault(name, [0.0, part_of])[0] += seconds


def reset():
    """Start counting afresh (a new command in the same process)."""
    _SPENT.clear()


def spent():
    """[(phase, seconds, the phase it is part of or None)] so far, in the order the phases first ran."""
    return [(name, seconds, part_of) for name, (seconds, part_of) in _SPENT.items()]


def since_process_start():
    """Seconds since this process started (the interpreter's own start-up included)."""
    import psutil

    return time.time() - psutil.Process().create_time()
