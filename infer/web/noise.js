// The noise of every image, as infer/noise.py draws it (docs/site.md, "Same seed, same digits"): SplitMix64
// words from BigInt arithmetic modulo 2**64, Box-Muller in float64, one rounding to float32 at the end.
"use strict";

const NOISE = (() => {
  const MASK = (1n << 64n) - 1n;
  const GAMMA = 0x9E3779B97F4A7C15n;
  const MAX_SEED = MASK;

  function mix(z) {
    z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & MASK;
    z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & MASK;
    return z ^ (z >> 31n);
  }

  // Float32Array [count * dim]: row k is the z of image start+k of `seed` (a BigInt or a whole number).
  function latents(seed, start, count, dim) {
    seed = BigInt(seed);
    if (seed < 0n || seed > MAX_SEED) throw new RangeError(`seed ${seed} is not in 0..2**64-1`);
    const seedKey = mix(seed);
    const pairs = Math.ceil(dim / 2);
    const z = new Float32Array(count * dim);
    for (let k = 0; k < count; k++) {
      const key = mix((seedKey + (BigInt(start + k) + 1n) * GAMMA) & MASK);
      for (let p = 0; p < pairs; p++) {
        const c = BigInt(2 * p);
        const w1 = mix((key + (c + 1n) * GAMMA) & MASK) >> 11n;
        const w2 = mix((key + (c + 2n) * GAMMA) & MASK) >> 11n;
        const u1 = (Number(w1) + 1) * 2 ** -53;
        const u2 = Number(w2) * 2 ** -53;
        const radius = Math.sqrt(-2 * Math.log(u1));
        const angle = 2 * Math.PI * u2;
        z[k * dim + 2 * p] = radius * Math.cos(angle);
        if (2 * p + 1 < dim) z[k * dim + 2 * p + 1] = radius * Math.sin(angle);
      }
    }
    return z;
  }

  return { latents, MAX_SEED };
})();

if (typeof module !== "undefined") module.exports = NOISE;
