// The page of `mnist-gen serve`: every picture comes from the API, the same renderer as `mnist-gen infer`.
"use strict";

const $ = (id) => document.getElementById(id);

function say(element, message, isError = false) {
  element.textContent = message;
  element.classList.toggle("error", isError);
}

// GET an API route with the non-empty parameters; an error answer is {"error": "..."}.
async function api(path, params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, value]) => value !== "" && value != null));
  const response = await fetch(`${path}?${query}`);
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message = (await response.json()).error || message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

async function loadCard() {
  const info = await (await api("/api/info", {})).json();
  const meta = info.metadata;
  const rows = [
    ["provider", info.provider + (info.provider_note ? ` (CUDA not used: ${info.provider_note})` : "")],
    ["model", info.model],
    ["architecture", meta.architecture],
    ["classes", info.num_classes ? `${info.num_classes} (conditional)` : "none (unconditional)"],
    ["image size", `${info.image_size}x${info.image_size}`],
    ["latent size", info.latent_dim],
    ["epochs", meta.training_epochs],
    ["precision", meta.precision],
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
  say(status, "Generating...");
  $("generate").disabled = true;
  try {
    const response = await api("/api/generate",
      { digit: $("digit").value, n: $("n").value, seed: $("seed").value, scale: $("scale").value });
    const seed = response.headers.get("X-Seed");
    const url = URL.createObjectURL(await response.blob());
    const img = $("grid");
    img.src = url;
    await img.decode();
    img.hidden = false;
    const digit = $("digit").value;
    img.alt = `${$("n").value} generated digits (${digit === "" ? "all digits in turn" : digit}), seed ${seed}`;
    if (gridUrl) URL.revokeObjectURL(gridUrl);
    gridUrl = url;
    const download = $("download");
    download.href = url;
    download.download = `mnist-gen_seed${seed}.png`;
    download.hidden = false;
    img.dataset.seed = seed;
    say(status, `${$("n").value} digits, seed ${seed} (enter it as the seed to draw them again)`);
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
  img.src = `data:image/png;base64,${frames[index]}`;
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
  say(status, "Walking...");
  try {
    const response = await api("/api/interpolate", {
      seed: $("walk-seed").value, to_seed: $("walk-to-seed").value, digit: $("walk-digit").value,
      to: $("walk-to").value, steps: $("walk-steps").value, scale: 4, format: "json",
    });
    const walkData = await response.json();
    frames = walkData.frames;
    const slider = $("walk-step");
    slider.max = frames.length - 1;
    slider.disabled = false;
    $("play").disabled = false;
    showFrame(0);
    const to = walkData.to_seed == null ? "" : ` to seed ${walkData.to_seed}`;
    say(status, `${frames.length} steps from seed ${walkData.seed}${to}; drag the slider or press Play`);
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
