// The page's copy of infer/images.py and infer/files.py, for pictures drawn in the browser: label cycling,
// grid layout, padding, upscaling and to_uint8's rounding, so a grid here has `mnist-gen infer`'s pixels.
"use strict";

const RENDER = (() => {
  const PADDING = 2;  // pixels between grid cells, before upscaling (images.py)

  // plan_grid: a conditional model cycles the digits (default: every class), ten to a row when all cycle.
  function planGrid(info, n, digit, scale) {
    let labels = null;
    let nrow = null;
    if (info.num_classes) {
      const cycle = digit == null ? [...Array(info.num_classes).keys()] : [digit];
      labels = Array.from({ length: n }, (_, i) => cycle[i % cycle.length]);
      if (cycle.length > 1 && n >= cycle.length) nrow = cycle.length;
    }
    return { n, labels, nrow: nrow || Math.max(1, Math.ceil(Math.sqrt(n))), scale, size: info.image_size };
  }

  function gridShape(grid) {
    const ncol = Math.max(1, Math.min(grid.nrow, grid.n));
    const rows = Math.ceil(grid.n / ncol);
    const cell = grid.size + PADDING;
    return [(rows * cell + PADDING) * grid.scale, (ncol * cell + PADDING) * grid.scale];
  }

  // np.rint rounds half to even.
  function rint(v) {
    const r = Math.round(v);
    return (r - v === 0.5 && r % 2 !== 0) ? r - 1 : r;
  }

  // to_uint8: float32 [N, C, H, W] in [-1, 1] -> one Uint8Array of RGBA pixels [H, W, 4] per image,
  // computed in float32 as numpy does ((x + 1) * 127.5, rounded half to even, clipped).
  function toRGBA(data, count, channels, size) {
    const plane = size * size;
    const images = [];
    for (let i = 0; i < count; i++) {
      const rgba = new Uint8ClampedArray(plane * 4);
      for (let p = 0; p < plane; p++) {
        for (let c = 0; c < 3; c++) {
          const x = data[(i * channels + (channels === 3 ? c : 0)) * plane + p];
          rgba[p * 4 + c] = Math.min(255, Math.max(0, rint(Math.fround(Math.fround(x + 1) * 127.5))));
        }
        rgba[p * 4 + 3] = 255;
      }
      images.push(rgba);
    }
    return images;
  }

  // make_grid + upscale: tiles RGBA [size, size] -> ImageData of the upscaled grid, black padding.
  function assemble(grid, tiles) {
    const [height, width] = gridShape(grid);
    const out = new ImageData(width, height);
    const ncol = Math.max(1, Math.min(grid.nrow, grid.n));
    for (let i = 3; i < out.data.length; i += 4) out.data[i] = 255;
    tiles.forEach((tile, i) => {
      const y0 = PADDING + Math.floor(i / ncol) * (grid.size + PADDING);
      const x0 = PADDING + (i % ncol) * (grid.size + PADDING);
      blit(out, tile, grid.size, x0, y0, grid.scale);
    });
    return out;
  }

  // One tile at (x0, y0) of the un-upscaled picture, each pixel drawn as a scale x scale block.
  function blit(out, tile, size, x0, y0, scale) {
    for (let y = 0; y < size * scale; y++) {
      const row = ((y0 * scale + y) * out.width + x0 * scale) * 4;
      for (let x = 0; x < size * scale; x++) {
        const from = (Math.floor(y / scale) * size + Math.floor(x / scale)) * 4;
        out.data.set(tile.subarray(from, from + 4), row + x * 4);
      }
    }
  }

  function upscaled(tile, size, scale) {
    const out = new ImageData(size * scale, size * scale);
    blit(out, tile, size, 0, 0, scale);
    return out;
  }

  // latent.slerp, in float64 and rounded to float32 at the end as numpy does.
  function slerp(a, b, steps) {
    const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    const na = norm(a), nb = norm(b);
    const cos = a.reduce((s, x, i) => s + (x / na) * (b[i] / nb), 0);
    const omega = Math.acos(Math.min(1, Math.max(-1, cos)));
    const z = new Float32Array(steps * a.length);
    for (let s = 0; s < steps; s++) {
      const t = Math.fround(steps === 1 ? 0 : s / (steps - 1));
      for (let i = 0; i < a.length; i++) {
        z[s * a.length + i] = omega < 1e-6 ? (1 - t) * a[i] + t * b[i]
          : (Math.sin(Math.fround(1 - t) * omega) * a[i] + Math.sin(t * omega) * b[i]) / Math.sin(omega);
      }
    }
    return z;
  }

  return { planGrid, gridShape, toRGBA, assemble, upscaled, slerp };
})();

if (typeof module !== "undefined") module.exports = RENDER;
