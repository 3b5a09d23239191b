"""The noise of every image: one portable, counter-based sampler that numpy and the page's JS compute alike.

Image `index` of `seed` has its own z, whatever the batching, so "seed s, image i" names one picture on the
command line, the server and the static site (infer/web/noise.js is the same algorithm, docs/site.md spells
it out). SplitMix64 (Steele, Lea and Flood 2014) gives the 64-bit words: counter-based, so any image is
reached directly, and made of shifts, xors and multiplications that JavaScript's BigInt reproduces exactly.
Box-Muller in float64 turns two words into two normal draws, rounded once to float32 at the end.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import BadValue

MAX_SEED = 2**64 - 1
# Any image is reached directly (no redraw), so the first index is bounded only to keep indices in 64 bits.
MAX_START = 2**63 - 1
GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment: 2**64 / golden ratio, odd
TWO_TO_MINUS_53 = 2.0**-53


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (its "mix64" variant 13): a bijection of uint64 that scrambles every bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def image_keys(seed: int, start: int, count: int) -> np.ndarray:
    """Key of images start..start+count-1: the SplitMix64 stream seeded with mix(seed), at those positions."""
    if not 0 <= seed <= MAX_SEED:
        raise BadValue(f"seed {seed}: seeds are whole numbers in 0..{MAX_SEED}")
    index = np.arange(start, start + count, dtype=np.uint64)
    return mix(mix(np.array([seed], np.uint64)) + (index + np.uint64(1)) * GAMMA)


def latents(seed: int, start: int, count: int, dim: int) -> np.ndarray:
    """float32 [count, dim]: row k is the z of image start+k of `seed`.

    Component pair p of an image with key K uses words w = mix(K + (c+1) * GAMMA) for c = 2p and 2p+1:
    u1 = ((w_2p >> 11) + 1) / 2**53 in (0, 1], u2 = (w_2p+1 >> 11) / 2**53 in [0, 1), then
    z[2p] = sqrt(-2 ln u1) cos(2 pi u2) and z[2p+1] = sqrt(-2 ln u1) sin(2 pi u2) in float64.
    """
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps modulo 2**64 on purpose
        keys = image_keys(seed, start, count)[:, None]
        pairs = -(-dim // 2)
        counters = np.arange(1, 2 * pairs + 1, dtype=np.uint64)[None, :]
        words = mix(keys + counters * GAMMA) >> np.uint64(11)
    u1 = (words[:, 0::2].astype(np.float64) + 1.0) * TWO_TO_MINUS_53
    u2 = words[:, 1::2].astype(np.float64) * TWO_TO_MINUS_53
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * math.pi * u2
    z = np.empty((count, 2 * pairs), np.float64)
    z[:, 0::2] = radius * np.cos(angle)
    z[:, 1::2] = radius * np.sin(angle)
    return z[:, :dim].astype(np.float32)
