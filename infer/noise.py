"""The noise of every generated image: one function, so every surface draws the same z for the same image.

Provisional body: numpy's default_rng(seed) stream, row by row (the pixels of every earlier release). The
web page will need a sampler it can reproduce in JavaScript; that replaces this body, not its signature.
"""

from __future__ import annotations

import threading

import numpy as np

MAX_SEED = 2**64 - 1
# The highest first index a request may start from: this body reaches image `start` by drawing every row
# before it (about a second of CPU at this bound), so an unbounded start would be unbounded work.
MAX_START = 1_000_000
_last = threading.local()  # the stream where the previous call stopped, so batch after batch costs no redraw


def latents(seed: int, start: int, count: int, dim: int) -> np.ndarray:
    """z of images start .. start+count-1 for `seed`: float32 [count, dim]; row k depends on seed and start+k only.

    Drawing image 5 alone (start=5, count=1) gives the same row as drawing images 0..9 and taking the sixth.
    """
    state = getattr(_last, "state", None)
    if state is not None and state[0] == (seed, dim, start):
        rng = state[1]
    else:
        rng = np.random.default_rng(seed)
        for skip in range(0, start, 4096):  # discard the rows before `start` in bounded chunks
            rng.standard_normal((min(4096, start - skip), dim), dtype=np.float32)
    z = rng.standard_normal((count, dim), dtype=np.float32)
    _last.state = ((seed, dim, start + count), rng)
    return z
