"""A small, learnable dataset generated at test time: ten classes of simple shapes as 28x28 grey images.

The suite's mechanics (training, resuming, evaluating, exporting, tuning, studies) run
on it, so they run on every machine, with or without the real datasets. The images
are deterministic for a seed, bright on black like MNIST, and vary in position,
size, stroke, brightness and noise, so that a tiny CNN learns them well but not
perfectly in an epoch or two.
"""

import numpy as np

SIZE = 28
CLASSES = ["disc", "square", "plus", "cross", "bar", "pillar", "triangle", "ring", "corner", "dots"]


def _masks(y, x, r, stroke):
    """Each class' shape as a boolean mask, for offsets (y, x) from the centre, size r and stroke width."""
    ay, ax, dist = np.abs(y), np.abs(x), np.hypot(y, x)
    return [
        dist <= r * 0.8,                                                                # disc
        (np.maximum(ay, ax) <= r) & (np.maximum(ay, ax) >= r - stroke),                 # square outline
        ((ay <= stroke / 2) & (ax <= r)) | ((ax <= stroke / 2) & (ay <= r)),            # plus
        (np.abs(ay - ax) <= stroke / 2 * 1.4) & (ay <= r),                              # cross (x)
        (ay <= stroke / 2 + 1) & (ax <= r),                                             # horizontal bar
        (ax <= stroke / 2 + 1) & (ay <= r),                                             # vertical bar
        (y <= r * 0.7) & (y >= np.abs(x) * 1.6 - r),                                    # filled triangle
        (dist <= r) & (dist >= r - stroke),                                             # ring
        ((np.abs(y - r + stroke / 2) <= stroke / 2) & (x >= -r) & (x <= r))             # corner: L
        | ((np.abs(x + r - stroke / 2) <= stroke / 2) & (y >= -r) & (y <= r)),
        (np.hypot(y, x - r * 0.6) <= stroke) | (np.hypot(y, x + r * 0.6) <= stroke),    # two dots
    ]


def images(count, seed):
    """(images uint8 (count, 28, 28), labels uint8 (count,)): every class equally often, in a shuffled order."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(CLASSES)).astype(np.uint8)
    grid_y, grid_x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    out = np.empty((count, SIZE, SIZE), np.uint8)
    for i, label in enumerate(labels):
        centre = SIZE / 2 - 0.5 + rng.uniform(-3, 3, size=2)
        r, stroke = rng.uniform(6, 10), rng.uniform(2, 3.5)
        mask = _masks(grid_y - centre[0], grid_x - centre[1], r, stroke)[label]
        picture = mask * rng.uniform(150, 255) + rng.normal(0, 25, size=mask.shape)
        out[i] = np.clip(picture, 0, 255).astype(np.uint8)
    return out, labels


def write_dataset(folder, train=600, test=200, seed=0):
    """A dataset folder as `--dataset FOLDER` reads it: the four IDX files (written by mnistcls' own writer)
    and classes.txt. Returns the folder."""
    from mnistcls import data

    folder.mkdir(parents=True, exist_ok=True)
    for split, count, split_seed in (("train", train, seed), ("t10k", test, seed + 1)):
        x, y = images(count, split_seed)
        data.write_idx(folder / f"{split}-images-idx3-ubyte.gz", x)
        data.write_idx(folder / f"{split}-labels-idx1-ubyte.gz", y)
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return folder
