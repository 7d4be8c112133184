// The GLIP web page: pick or drop an image, name what to find, POST /v1/detect, draw the boxes.
// Plain JavaScript, no dependencies (works offline). With "masks" (a model with a mask head), each
// detection's COCO RLE mask (rle.js decodes it) is drawn as a translucent fill under the boxes. The
// canvas's data-boxes-drawn and data-masks-drawn attributes hold the number of boxes and masks drawn
// by the last detection (used by the browser test). "Describe" (a model with a caption head) POSTs
// /v1/caption with grounded=true, shows the caption and draws each noun phrase's box. The question
// box sends the picture and a question to POST /v1/vqa (a model with a VQA head) and lists the best
// answers.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, image: null, busy: false, captionHead: false, vqa: false, asking: false };
const DISPLAY_SIZE = 512;
const MASK_ALPHA = 115;  // of 255, as glip.visualize.MASK_OPACITY (0.45)

// Same colours as glip.visualize.phrase_colour: golden-ratio hue steps, saturation 0.85, value 0.95.
function phraseRgb(index) {
  const hue = (index * 0.618033988749895) % 1.0;
  const s = 0.85, v = 0.95, i = Math.floor(hue * 6), f = hue * 6 - i;
  const p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  const [r, g, b] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return [r, g, b].map((c) => Math.round(c * 255));
}

function phraseColour(index) {
  return `rgb(${phraseRgb(index).join(", ")})`;
}

// The masks of `detections` (those with a segmentation), lowest score first, as one translucent
// layer at the canvas's size (each canvas pixel samples the mask at its centre); returns how many.
function drawMasks(ctx, detections, scale) {
  const withMasks = detections.filter((d) => d.segmentation);
  if (!withMasks.length) return 0;
  const { width, height } = ctx.canvas;
  const layer = new ImageData(width, height);
  for (const d of withMasks) {
    const mask = rleDecode(d.segmentation), [r, g, b] = phraseRgb(d.phrase_index);
    for (let cx = 0; cx < width; cx++) {
      const x = Math.min(mask.width - 1, Math.floor((cx + 0.5) / scale));
      const column = x * mask.height;
      for (let cy = 0; cy < height; cy++) {
        if (!mask.data[column + Math.min(mask.height - 1, Math.floor((cy + 0.5) / scale))]) continue;
        const at = (cy * width + cx) * 4;
        layer.data[at] = r; layer.data[at + 1] = g; layer.data[at + 2] = b; layer.data[at + 3] = MASK_ALPHA;
      }
    }
  }
  const overlay = document.createElement("canvas");
  overlay.width = width;
  overlay.height = height;
  overlay.getContext("2d").putImageData(layer, 0, 0);
  ctx.drawImage(overlay, 0, 0);  // blended over the picture, unlike putImageData
  return withMasks.length;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function showImage(detections) {
  const canvas = $("canvas"), image = state.image;
  // Shown DISPLAY_SIZE px on its longer side (enlarged at most 2x); boxes are in original-image pixels.
  const scale = Math.min(2, DISPLAY_SIZE / Math.max(image.naturalWidth, image.naturalHeight));
  canvas.width = Math.round(image.naturalWidth * scale);
  canvas.height = Math.round(image.naturalHeight * scale);
  canvas.dataset.scale = String(scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  const lineWidth = Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 300));
  const fontSize = Math.max(12, Math.round(Math.max(canvas.width, canvas.height) / 45));
  ctx.font = `${fontSize}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  const sorted = [...detections].sort((a, b) => a.score - b.score);  // best drawn last, on top
  canvas.dataset.masksDrawn = String(drawMasks(ctx, sorted, scale));
  for (const d of sorted) {
    const [x1, y1, x2, y2] = d.bbox_xyxy.map((v) => v * scale), colour = phraseColour(d.phrase_index);
    ctx.strokeStyle = colour;
    ctx.lineWidth = lineWidth;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = `${d.phrase} ${d.score.toFixed(2)}`, width = ctx.measureText(label).width + 6;
    const top = Math.max(0, y1 - fontSize - 4);
    ctx.fillStyle = colour;
    ctx.fillRect(x1, top, width, fontSize + 4);
    ctx.fillStyle = "#000";
    ctx.fillText(label, x1 + 3, top + 2);
  }
  canvas.dataset.boxesDrawn = String(detections.length);
}

function showTable(detections) {
  const body = $("detections").querySelector("tbody");
  body.replaceChildren();
  detections.forEach((d, i) => {
    const row = body.insertRow();
    row.className = "detection";
    const swatch = `<span class="swatch" style="background:${phraseColour(d.phrase_index)}"></span>`;
    row.insertCell().textContent = String(i + 1);
    const phrase = row.insertCell();
    phrase.innerHTML = swatch;
    phrase.append(d.phrase);
    row.insertCell().textContent = d.score.toFixed(3);
    row.insertCell().textContent = d.bbox_xyxy.map((v) => v.toFixed(1)).join(", ");
  });
}

function loadFile(file) {
  if (!file) return;
  state.file = file;
  $("file-name").textContent = `${file.name} (${Math.round(file.size / 1024)} KiB)`;
  const image = new Image();
  image.onload = () => {
    state.image = image;
    $("detect-button").disabled = false;
    $("describe-button").disabled = !state.captionHead;
    $("caption-output").textContent = "";
    $("ask-button").disabled = !state.vqa;
    showImage([]);
    showTable([]);
    setStatus(`${image.naturalWidth}x${image.naturalHeight}: press Detect.`);
  };
  image.onerror = () => setStatus(`${file.name}: the browser cannot display this file as an image`, true);
  image.src = URL.createObjectURL(file);
}

async function detect() {
  if (!state.file || state.busy) return;
  const form = new FormData();
  form.append("image", state.file, state.file.name);
  if (mode() === "classes") {
    form.append("classes", $("classes-input").value);
  } else {
    form.append("caption", $("caption-input").value);
    for (const p of $("phrases-input").value.split(",").map((s) => s.trim()).filter(Boolean)) form.append("phrases", p);
  }
  form.append("threshold", $("threshold-input").value);
  form.append("all_names", $("all-names-input").checked ? "true" : "false");
  if ($("masks-input").checked) form.append("masks", "true");
  if ($("adapter-select").value) form.append("adapter", $("adapter-select").value);
  state.busy = true;
  $("detect-button").disabled = true;
  setStatus("Detecting...");
  const started = performance.now();
  try {
    const response = await fetch("/v1/detect", { method: "POST", body: form });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) throw new Error(`${response.status}: ${body.detail}`);
    showImage(body.detections);
    showTable(body.detections);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    setStatus(`${body.detections.length} detections at threshold ${Number($("threshold-input").value).toFixed(2)} ` +
              `(${seconds} s).`);
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    state.busy = false;
    $("detect-button").disabled = !state.file;
  }
}

// The caption's phrases as detections (those with a box), for showImage and showTable.
function phraseDetections(body) {
  return body.phrases.map((p, i) => ({ ...p, phrase_index: i })).filter((p) => p.bbox_xyxy !== null);
}

async function describe() {
  if (!state.file || state.busy) return;
  const form = new FormData();
  form.append("image", state.file, state.file.name);
  form.append("grounded", "true");
  state.busy = true;
  $("describe-button").disabled = true;
  setStatus("Describing...");
  const started = performance.now();
  try {
    const response = await fetch("/v1/caption", { method: "POST", body: form });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) throw new Error(`${response.status}: ${body.detail}`);
    const boxes = phraseDetections(body);
    $("caption-output").textContent = body.caption + (body.truncated ? " [truncated]" : "");
    showImage(boxes);
    showTable(boxes);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    setStatus(`caption with ${boxes.length} boxed phrases (${seconds} s).`);
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    state.busy = false;
    $("describe-button").disabled = !state.file || !state.captionHead;
  }
}

function showAnswers(qa) {
  const body = $("answers").querySelector("tbody");
  body.replaceChildren();
  for (const item of qa) {
    item.answers.forEach((a, i) => {
      const row = body.insertRow();
      row.className = "answer";
      row.insertCell().textContent = i === 0 ? item.question : "";
      row.insertCell().textContent = a.answer;
      row.insertCell().textContent = a.score.toFixed(3);
    });
  }
}

function setVqaStatus(text, isError = false) {
  $("vqa-status").textContent = text;
  $("vqa-status").classList.toggle("error", isError);
}

async function ask() {
  const question = $("question-input").value.trim();
  if (!state.file || state.asking) return;
  if (!question) {
    setVqaStatus("Type a question first.", true);
    return;
  }
  const form = new FormData();
  form.append("image", state.file, state.file.name);
  form.append("question", question);
  form.append("top_k", "3");
  state.asking = true;
  $("ask-button").disabled = true;
  setVqaStatus("Answering...");
  try {
    const response = await fetch("/v1/vqa", { method: "POST", body: form });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) throw new Error(`${response.status}: ${body.detail}`);
    showAnswers(body.qa);
    const best = body.qa[0].answers[0];
    setVqaStatus(`Answer: ${best.answer} (${best.score.toFixed(2)})`);
  } catch (error) {
    setVqaStatus(error.message, true);
  } finally {
    state.asking = false;
    $("ask-button").disabled = !state.file || !state.vqa;
  }
}

async function loadModels() {
  try {
    const info = await (await fetch("/v1/models")).json();
    $("model-info").textContent = `${info.model.name} on ${info.model.device}`;
    state.captionHead = Boolean(info.model.caption_head);
    if (!state.captionHead) $("describe-button").title = "this server's model has no caption head";
    $("describe-button").disabled = !state.file || !state.captionHead;
    if (!info.model.mask_head) {
      $("masks-input").disabled = true;
      $("masks-label").title = "this server's model has no mask head";
    }
    state.vqa = Boolean(info.model.vqa_head);
    if (!state.vqa) {
      $("question-input").disabled = true;
      $("vqa-box").title = "this server's model has no VQA head (glip vqa-train makes one)";
      setVqaStatus("This model has no VQA head.");
    }
    for (const adapter of info.adapters) {
      const option = new Option(`${adapter.name} (${adapter.categories.join(", ")})`, adapter.name);
      $("adapter-select").add(option);
    }
  } catch (error) {
    $("model-info").textContent = "model info unavailable";
  }
}

$("image-input").addEventListener("change", (e) => loadFile(e.target.files[0]));
const zone = $("drop-zone");
zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (e) => {
  e.preventDefault();
  zone.classList.remove("dragging");
  loadFile(e.dataTransfer.files[0]);
});
for (const radio of document.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", () => {
    const caption = mode() === "caption";
    $("classes-input").hidden = caption;
    $("caption-input").hidden = !caption;
    $("phrases-input").hidden = !caption;
  });
}
$("threshold-input").addEventListener("input", (e) => {
  $("threshold-value").textContent = Number(e.target.value).toFixed(2);
});
$("threshold-input").addEventListener("change", () => { if (state.image) detect(); });
$("all-names-input").addEventListener("change", () => { if (state.image) detect(); });
$("masks-input").addEventListener("change", () => { if (state.image) detect(); });
$("detect-button").addEventListener("click", detect);
$("describe-button").addEventListener("click", describe);
$("ask-button").addEventListener("click", ask);
$("question-input").addEventListener("keydown", (e) => { if (e.key === "Enter") ask(); });
loadModels();
