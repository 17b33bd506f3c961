// The try-it page: read an image, POST it as proto3 JSON to /v1/classify (the route every
// client uses), draw the top-K answer as bars. No dependencies, no build step.
"use strict";

// google.rpc.Code names, indexed by number: error bodies are google.rpc.Status {code, message}.
const CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];

const $ = (id) => document.getElementById(id);
let image = null; // {name, base64} of the chosen file
let latest = 0; // number of the newest request: an older answer arriving late is dropped

function headers() {
  const h = { "content-type": "application/json" };
  const token = $("token").value.trim();
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file); // "data:<type>;base64,<data>"
  });
}

function showError(title, detail) {
  const box = $("error");
  box.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = title;
  box.append(strong, document.createTextNode(detail));
  box.hidden = false;
  $("result").hidden = true;
}

// An error response: google.rpc.Status JSON when the gateway answered, else the bare status.
async function showHttpError(response) {
  let status = null;
  try { status = await response.json(); } catch (_) { /* not JSON: a proxy's page */ }
  if (status && typeof status.message === "string") {
    const code = Number(status.code || 0);
    showError(`${CODES[code] || "code " + code} (HTTP ${response.status})`, status.message);
  } else {
    showError(`HTTP ${response.status} ${response.statusText}`, "the server answered without a status body");
  }
}

function render(answer, elapsedMs) {
  $("model-name").textContent = answer.model || "";
  $("model-version").textContent = answer.modelVersion || "";
  $("latency").textContent = `${Math.round(elapsedMs)} ms round trip`;
  const items = (answer.predictions || []).map((p) => {
    const probability = Number(p.probability || 0);
    const li = document.createElement("li");
    li.className = "prediction";
    li.dataset.classIndex = String(p.classIndex || 0);
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = p.label;
    label.title = `${p.label} (class ${p.classIndex || 0})`;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${(100 * Math.min(1, Math.max(0, probability))).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "probability";
    value.textContent = `${(100 * probability).toFixed(1)}%`;
    li.append(label, bar, value);
    return li;
  });
  $("predictions").replaceChildren(...items);
  $("error").hidden = true;
  $("result").hidden = false;
}

async function classify() {
  if (!image) return;
  const body = { image: image.base64, topK: Number($("top-k").value) };
  if ($("model").value) body.model = $("model").value;
  const mine = ++latest;
  $("classify").disabled = true;
  $("status").textContent = `Classifying ${image.name}…`;
  document.body.dataset.state = "busy"; // tells tests when an answer has been drawn
  const started = performance.now();
  let response = null;
  let failure = null;
  try {
    response = await fetch("/v1/classify", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  } catch (error) {
    failure = error;
  }
  if (mine !== latest) return; // a newer request (another file, top-K or model) owns the page
  if (failure) {
    showError("Network error", `${failure.message}: is the server running?`);
  } else if (!response.ok) {
    await showHttpError(response);
  } else {
    render(await response.json(), performance.now() - started);
  }
  $("status").textContent = "";
  $("classify").disabled = false;
  document.body.dataset.state = "done";
}

async function choose(file) {
  if (!file) return;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("drop-text").textContent = `${file.name} (${Math.ceil(file.size / 1024)} KiB): drop or choose another`;
  image = { name: file.name, base64: await readBase64(file) };
  await classify();
}

// The served models, for the model selector; the page works without it (server default).
async function loadModels() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (!response.ok) return;
    const { models = [], defaultModel = "" } = await response.json();
    const select = $("model");
    const chosen = select.value;
    select.replaceChildren(new Option(`server default (${defaultModel})`, ""),
      ...models.map((m) => new Option(`${m.name} (${m.architecture}, ${m.numClasses} classes)`, m.name)));
    select.value = chosen;
  } catch (_) { /* offline or unauthorized: keep "server default" */ }
}

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => choose(e.target.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => { e.preventDefault(); choose(e.dataTransfer.files[0]); });
  $("form").addEventListener("submit", (e) => { e.preventDefault(); classify(); });
  $("top-k").addEventListener("change", classify);
  $("model").addEventListener("change", classify);
  $("token").addEventListener("change", loadModels);
  loadModels();
  document.body.dataset.state = "ready";
}

wire();
