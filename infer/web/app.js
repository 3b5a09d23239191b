// The one page of `mnist-gen serve` and `mnist-gen site`. Served by `mnist-gen serve`, the server draws every
// picture (its API, the renderer of `mnist-gen infer`); built by `mnist-gen site`, a static folder with a
// site.json beside the page, onnxruntime-web draws them in this browser with the same noise (noise.js) and
// the same grid (render.js). The controls, checks and messages are the same in both.
"use strict";

const $ = (id) => document.getElementById(id);

function say(element, message, isError = false) {
  element.textContent = message;
  element.classList.toggle("error", isError);
}

// The server's checks, made here first so both kinds of page refuse bad input alike, with its words.
function whole(name, text, min, max) {
  if (!/^\s*\d+\s*$/.test(text)) {
    throw new Error(`${name}=${text}: Input should be a valid integer, unable to parse string as an integer`);
  }
  const value = BigInt(text.trim());
  if (value < BigInt(min)) throw new Error(`${name}=${text}: Input should be greater than or equal to ${min}`);
  if (value > BigInt(max)) throw new Error(`${name}=${text}: Input should be less than or equal to ${max}`);
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

function seedOf(name, text) {
  if (text.trim() === "") return crypto.getRandomValues(new Uint32Array(1))[0] >>> 1;  // as the server: < 2**31
  return whole(name, text, 0, NOISE.MAX_SEED);
}

const optional = (text) => (text === "" ? null : Number(text));

// mnist-gen serve: every picture comes from the API.
const server = {
  async get(path, params) {
    const query = new URLSearchParams(Object.entries(params).filter(([, value]) => value !== "" && value != null));
    const response = await fetch(`${path}?${query}`);
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try { message = (await response.json()).error || message; } catch { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  },
  async load() {
    return (await this.get("api/info", {})).json();
  },
  async grid({ digit, n, seed, scale }) {
    const response = await this.get("api/generate", { digit, n, seed: String(seed), scale });
    return URL.createObjectURL(await response.blob());
  },
  async walk({ seed, toSeed, digit, to, steps, scale }) {
    const response = await this.get("api/interpolate",
      { seed: String(seed), to_seed: toSeed == null ? null : String(toSeed), digit, to, steps, scale, format: "json" });
    return (await response.json()).frames.map((png) => `data:image/png;base64,${png}`);
  },
};

// mnist-gen site: onnxruntime-web (WebAssembly) runs the model in this browser; no server but static files.
const browser = {
  BATCH: 64,
  async load(site) {
    await new Promise((resolve, reject) => {
      const script = Object.assign(document.createElement("script"), { src: site.runtime.script });
      script.onload = resolve;
      script.onerror = () => reject(new Error(`cannot load ${site.runtime.script}`));
      document.head.append(script);
    });
    // Threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages.
    const asked = Number(new URLSearchParams(location.search).get("threads")) || 0;
    const threads = crossOriginIsolated ? (asked || Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.wasmPaths = new URL(site.runtime.folder, document.baseURI).href;
    this.session = await ort.InferenceSession.create(site.model_file,
      { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    this.info = site;
    // Most static hosts cannot send the COOP/COEP headers that isolate a page: the card says which case this is.
    const isolation = crossOriginIsolated ? "cross-origin isolated" : "not cross-origin isolated";
    site.provider = `onnxruntime-web ${ort.env.versions.web}, WebAssembly, ${threads} thread${threads > 1 ? "s" : ""}`
      + ` (${isolation}), in this browser`;
    return site;
  },
  // One onnxruntime-web call: z Float32Array [count, latent_dim], labels [count] -> float32 [count, C, H, W].
  async run(z, labels) {
    const count = z.length / this.info.latent_dim;
    const feeds = { z: new ort.Tensor("float32", z, [count, this.info.latent_dim]) };
    if (this.info.num_classes) feeds.labels = new ort.Tensor("int64", BigInt64Array.from(labels, BigInt), [count]);
    return (await this.session.run(feeds)).images.data;
  },
  async tiles(seed, labels, n) {
    const { latent_dim: dim, channels, image_size: size } = this.info;
    const tiles = [];
    for (let start = 0; start < n; start += this.BATCH) {
      const count = Math.min(this.BATCH, n - start);
      const images = await this.run(NOISE.latents(seed, start, count, dim), labels && labels.slice(start, start + count));
      tiles.push(...RENDER.toRGBA(images, count, channels, size));
    }
    return tiles;
  },
  async grid({ digit, n, seed, scale }) {
    const grid = RENDER.planGrid(this.info, n, digit, scale);
    return pictureUrl(RENDER.assemble(grid, await this.tiles(seed, grid.labels, n)));
  },
  // images.render_walk: a slerp between seed's first two z (or seed's first and to_seed's first);
  // from `digit` to `to` the two digits' images cross-fade along the walk.
  async walk({ seed, toSeed, digit, to, steps, scale }) {
    const { latent_dim: dim, channels, image_size: size, num_classes: classes } = this.info;
    const ends = NOISE.latents(seed, 0, 2, dim);
    const b = toSeed == null ? ends.subarray(dim) : NOISE.latents(toSeed, 0, 1, dim);
    const z = RENDER.slerp(ends.subarray(0, dim), b, steps);
    let images = await this.run(z, classes ? Array(steps).fill(digit ?? 0) : null);
    if (classes && to != null) {
      const other = await this.run(z, Array(steps).fill(to));
      const plane = images.length / steps;
      images = images.map((x, i) => {
        const t = Math.fround(Math.floor(i / plane) / (steps - 1));
        return Math.fround(Math.fround(Math.fround(1 - t) * x) + Math.fround(t * other[i]));
      });
    }
    const frames = RENDER.toRGBA(images, steps, channels, size);
    return Promise.all(frames.map((tile) => pictureUrl(RENDER.upscaled(tile, size, scale), false)));
  },
};

// ImageData -> a PNG URL (a blob: URL for the grid, which is downloaded; data: URLs for walk frames).
async function pictureUrl(imageData, blob = true) {
  const canvas = Object.assign(document.createElement("canvas"), { width: imageData.width, height: imageData.height });
  canvas.getContext("2d").putImageData(imageData, 0, 0);
  if (!blob) return canvas.toDataURL("image/png");
  return URL.createObjectURL(await new Promise((resolve) => canvas.toBlob(resolve, "image/png")));
}

let backend = null;
let info = null;

async function loadCard() {
  if (location.protocol === "file:") {  // browsers fetch neither site.json nor the model from a file:// page
    throw new Error("open this page through a web server, e.g. python -m http.server -d FOLDER -b 127.0.0.1");
  }
  const site = await fetch("site.json").then((r) => (r.ok ? r.json() : null)).catch(() => null);
  backend = site ? browser : server;
  info = await backend.load(site);
  window.mnistGen = { info, backend };  // for scripts that drive the page (benchmarks/site_speed.py)
  if (site) $("footer").textContent = "A static page: the digits are drawn in this browser by onnxruntime-web; "
    + "nothing is sent anywhere.";
  const meta = info.metadata;
  const rows = [
    ["provider", info.provider + (info.provider_note ? ` (CUDA not used: ${info.provider_note})` : "")],
    ["model", info.model],
    ["architecture", meta.architecture],
    ["classes", info.num_classes ? `${info.num_classes} (conditional)` : "none (unconditional)"],
    ["image size", `${info.image_size}x${info.image_size}${info.channels === 3 ? ", RGB" : ""}`],
    ["latent size", info.latent_dim],
    ["epochs", meta.training_epochs],
    ["precision", meta.precision ?? "fp32"],
    ["mnist-gen", info.version],
    ["limits", `n <= ${info.limits.n}, scale <= ${info.limits.scale}, steps <= ${info.limits.steps}`],
  ];
  const card = $("card");
  card.replaceChildren();
  for (const [name, value] of rows) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = value ?? "-";
    card.append(dt, dd);
  }
  $("n").max = info.limits.n;
  $("scale").max = info.limits.scale;
  $("walk-steps").max = info.limits.steps;
  for (let d = 0; d < info.num_classes; d++) {  // digits show as 0-9, named classes by their names
    const name = info.class_names[d] === String(d) ? String(d) : `${d}: ${info.class_names[d]}`;
    for (const id of ["digit", "walk-digit", "walk-to"]) $(id).append(new Option(name, String(d)));
  }
  if (!info.num_classes) {  // an unconditional model draws no chosen digit
    for (const id of ["digit", "walk-digit", "walk-to"]) $(id).closest(".field").hidden = true;
  }
}

let gridUrl = null;

async function generate(event) {
  event.preventDefault();
  const status = $("generate-status");
  if (!info) return say(status, "error: the model is still loading", true);
  $("generate").disabled = true;
  try {
    const request = {
      digit: optional($("digit").value),
      n: whole("n", $("n").value, 1, info.limits.n),
      seed: seedOf("seed", $("seed").value),
      scale: whole("scale", $("scale").value, 1, info.limits.scale),
    };
    say(status, "Generating...");
    const started = performance.now();
    const url = await backend.grid(request);
    const img = $("grid");
    img.src = url;
    await img.decode();
    img.hidden = false;
    const { n, seed, digit } = request;
    img.alt = `${n} generated digits (${digit == null ? "all digits in turn" : digit}), seed ${seed}`;
    if (gridUrl) URL.revokeObjectURL(gridUrl);
    gridUrl = url;
    const download = $("download");
    download.href = url;
    download.download = `mnist-gen_seed${seed}.png`;
    download.hidden = false;
    img.dataset.seed = String(seed);
    img.dataset.ms = String(performance.now() - started);
    say(status, `${n} digits, seed ${seed} (enter it as the seed to draw them again)`);
  } catch (error) {
    say(status, `error: ${error.message}`, true);
  } finally {
    $("generate").disabled = false;
  }
}

let frames = [];
let timer = null;

function showFrame(index) {
  const img = $("walk-frame");
  img.src = frames[index];
  img.alt = `latent walk, step ${index + 1} of ${frames.length}`;
  img.hidden = false;
  $("walk-step").value = index;
  $("walk-step-label").textContent = `${index + 1} / ${frames.length}`;
}

function stop() {
  clearInterval(timer);
  timer = null;
  $("play").textContent = "Play";
  $("play").setAttribute("aria-pressed", "false");
}

function play() {
  if (timer) return stop();
  let step = 1;  // there and back again
  timer = setInterval(() => {
    let index = Number($("walk-step").value) + step;
    if (index < 0 || index >= frames.length) { step = -step; index += 2 * step; }
    showFrame(Math.max(0, Math.min(frames.length - 1, index)));
  }, 120);
  $("play").textContent = "Pause";
  $("play").setAttribute("aria-pressed", "true");
}

async function walk(event) {
  event.preventDefault();
  stop();
  const status = $("walk-status");
  if (!info) return say(status, "error: the model is still loading", true);
  try {
    const request = {
      seed: seedOf("seed", $("walk-seed").value),
      toSeed: $("walk-to-seed").value.trim() === "" ? null : seedOf("to_seed", $("walk-to-seed").value),
      digit: optional($("walk-digit").value),
      to: optional($("walk-to").value),
      steps: whole("steps", $("walk-steps").value, 2, info.limits.steps),
      scale: 4,
    };
    say(status, "Walking...");
    frames = await backend.walk(request);
    const slider = $("walk-step");
    slider.max = frames.length - 1;
    slider.disabled = false;
    $("play").disabled = false;
    showFrame(0);
    const to = request.toSeed == null ? "" : ` to seed ${request.toSeed}`;
    say(status, `${frames.length} steps from seed ${request.seed}${to}; drag the slider or press Play`);
  } catch (error) {
    say(status, `error: ${error.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("generate-form").addEventListener("submit", generate);
  $("walk-form").addEventListener("submit", walk);
  $("play").addEventListener("click", play);
  $("walk-step").addEventListener("input", (event) => { stop(); showFrame(Number(event.target.value)); });
  loadCard().catch((error) => say($("generate-status"), `error: ${error.message}`, true));
});
