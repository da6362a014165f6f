// The playground page: controls <-> URL, the server's events -> canvas. Plain JavaScript, no build step.
"use strict";
const $ = (id) => document.getElementById(id);
const KNOBS = ["n", "noise", "test", "dseed"];
const FIELDS = ["dataset", ...KNOBS, "loss", "optimizer", "lr", "batch", "epochs", "seed", "reg", "rate"];
const stats = { frames: 0, playAt: 0, firstFrameAt: 0, lastFrameAt: 0, done: null };
window.playgroundStats = stats;  // read by the browser test and bench/playground.py
let options = null, run = null, latest = null, drawing = false, playing = false, paused = false;

async function post(path, payload) {
  const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload || {}) });
  return { status: response.status, body: await response.json() };
}

// ---- state: the controls as the URL's query (only values that differ from the defaults)
function state() {
  const s = {};
  for (const key of FIELDS) {
    const el = $(key);
    if (KNOBS.includes(key) && el.closest("label").hidden) continue;
    s[key] = el.value.trim();
  }
  s.features = [...document.querySelectorAll("#features input:checked")].map((c) => c.value).join(",");
  s.hidden = [...document.querySelectorAll("#hidden li")].map((li) => `${li.querySelector("input").value.trim()}:${li.querySelector("select").value}`).join(",");
  return s;
}
function query(s) {
  const preset = options.datasets[s.dataset] || {};
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(s)) {
    const same = KNOBS.includes(k) ? String(preset[k]) === v : options.defaults[k] === v;
    if (!same) q.set(k, v);
  }
  return q;
}
function setState(params) {
  const s = { ...options.defaults };
  for (const [k, v] of params) s[k] = v;
  showKnobs(s);
  for (const key of FIELDS) {
    if (KNOBS.includes(key) && !(key in s)) continue;
    const el = $(key);
    // A value the page does not offer is kept as an option, so the check names it instead of losing it.
    if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === s[key])) addOption(el, s[key]);
    el.value = s[key];
  }
  const features = s.features.split(",").filter(Boolean);
  for (const name of features) if (!options.features.includes(name)) addFeature(name);  // kept for the check, as above
  for (const box of document.querySelectorAll("#features input")) box.checked = features.includes(box.value);
  $("hidden").textContent = "";
  for (const layer of s.hidden.split(",")) { const [units, activation] = layer.split(":"); addLayer(units, activation || ""); }
}
function addFeature(name) {
  const label = document.createElement("label"), box = document.createElement("input");
  box.type = "checkbox"; box.value = name;
  label.append(box, ` ${name.replace("_squared", "\u00b2").replace("sin_", "sin ").replace("x1_x2", "x1\u00b7x2")}`);
  $("features").append(label);
}
function addOption(select, value) { const o = document.createElement("option"); o.textContent = value; select.append(o); }
function showKnobs(s) {
  const preset = options.datasets[s.dataset] || {};
  for (const k of KNOBS) {
    const label = document.querySelector(`[data-knob=${k}]`);
    label.hidden = !(k in preset);
    if (k in preset) $(k).value = k in s ? s[k] : preset[k];
  }
}
function addLayer(units = "4", activation = "tanh") {
  const li = document.createElement("li");
  const n = $("hidden").children.length + 1;
  li.innerHTML = `<input type="text" inputmode="numeric" aria-label="units of hidden layer ${n}"><select aria-label="activation of hidden layer ${n}"></select><button type="button" aria-label="remove hidden layer ${n}">&minus;</button>`;
  const select = li.querySelector("select");
  for (const a of options.activations) addOption(select, a);
  if (!options.activations.includes(activation)) addOption(select, activation);
  li.querySelector("input").value = units;
  select.value = activation;
  li.querySelector("button").onclick = () => { li.remove(); changed(); };
  $("hidden").append(li);
}

// ---- checking: the CLI's one-line message beside the control it names; nothing runs
let checking = 0;
function showError(message, control) {
  for (const el of document.querySelectorAll(".error")) el.textContent = "";
  for (const el of document.querySelectorAll(".invalid")) el.classList.remove("invalid");
  if (!message) return;
  const box = [...document.querySelectorAll(".error[data-for]")].find((e) => control && e.dataset.for.split(" ").includes(control)) || $("error");
  box.textContent = message;
  if (control && $(control)) $(control).classList.add("invalid");
}
async function changed() {
  const q = query(state());
  history.replaceState(null, "", q.toString() ? `?${q}` : location.pathname);
  const mine = ++checking;
  const { status, body } = await post("/api/check", { query: Object.fromEntries(q) });
  if (mine !== checking) return;
  showError(status === 200 ? "" : body.error, body.control);
  if (status === 200) $("command").textContent = body.command;
  return status === 200;
}

// ---- transport
async function play() {
  if (playing && !paused) { await post("/api/pause"); paused = true; return setPlay(); }
  if (playing && paused) { await post("/api/resume"); paused = false; return setPlay(); }
  await start(false);
}
async function start(stepOnly) {
  const q = query(state());
  stats.playAt = performance.now(); stats.frames = 0; stats.firstFrameAt = 0; stats.done = null;
  const { status, body } = await post("/api/play", { query: Object.fromEntries(q), paused: stepOnly });
  if (status !== 200) { showError(body.error, body.control); return; }
  showError("");
  $("command").textContent = body.command;
  playing = true; paused = stepOnly; setPlay();
}
function setPlay() { $("play").innerHTML = playing && !paused ? "&#10074;&#10074; Pause" : "&#9654; Play"; }
async function step() { if (playing) { await post("/api/step"); paused = true; setPlay(); } else await start(true); }
async function reset() { await post("/api/reset"); playing = false; paused = false; setPlay(); clearPlot(); }

// ---- events from the server
function connect() {  // resolves once the stream is open: a try's first events are not missed
  const source = new EventSource("/api/events");
  const opened = new Promise((resolve) => { source.onopen = resolve; });
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    ({ start: onStart, frame: onFrame, done: onDone, reset: () => {}, paused: () => { paused = true; setPlay(); },
       error: (e) => { playing = false; setPlay(); showError(e.message, e.control); },
       measuring: (e) => { $("seeds-status").textContent = `training ${e.copies} seeds...`; }, seeds: onSeeds })[event.type]?.(event);
  };
  return opened;
}
function onStart(e) {
  run = { ...e, loss: [], testLoss: [], image: null };
  $("result").textContent = "";
  $("units").textContent = "";
  run.unitCanvases = [];
  e.units.forEach((count, layer) => { for (let j = 0; j < count; j++) {
    const c = document.createElement("canvas"); c.width = c.height = e.unit_resolution; c.title = `layer ${layer + 1}, unit ${j + 1}`;
    $("units").append(c); run.unitCanvases.push(c); } });
  $("status").textContent = "training";
}
function onFrame(e) {
  if (!run) return;
  if (!stats.firstFrameAt) stats.firstFrameAt = performance.now();
  for (const v of e.columns.loss || []) run.loss.push(v);
  for (const v of e.columns.test_loss || []) run.testLoss.push(v);
  latest = e;
  if (!drawing) { drawing = true; requestAnimationFrame(draw); }
}
function draw() {
  drawing = false;
  const e = latest;
  stats.frames += 1; stats.lastFrameAt = performance.now();
  drawBoundary(e); drawUnits(e); drawCurves();
  const c = e.columns;
  $("now-epoch").textContent = e.epoch;
  if (c.loss?.length) { $("now-loss").textContent = c.loss.at(-1).toFixed(4); $("now-accuracy").textContent = pct(c.accuracy.at(-1)); }
  if (c.test_accuracy?.length) $("now-test-accuracy").textContent = pct(c.test_accuracy.at(-1));
}
const pct = (v) => `${(100 * v).toFixed(1)}%`;
function bytes(b64) { const s = atob(b64); const out = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i); return out; }
// Blue (class 0) to white to orange (class 1), as TensorFlow Playground colours them.
function colour(v) { const t = v / 255; return t < 0.5 ? [255 - (255 - 8) * (1 - 2 * t) * 0.8, 255 - (255 - 119) * (1 - 2 * t) * 0.8, 255 - (255 - 189) * (1 - 2 * t) * 0.8]
  : [255 - (255 - 245) * (2 * t - 1) * 0.8, 255 - (255 - 147) * (2 * t - 1) * 0.8, 255 - (255 - 34) * (2 * t - 1) * 0.8]; }
function paint(canvas, values) {
  const ctx = canvas.getContext("2d"), n = canvas.width, image = ctx.createImageData(n, n);
  for (let i = 0; i < values.length; i++) { const [r, g, b] = colour(values[i]); image.data.set([r, g, b, 255], 4 * i); }
  return image;
}
function drawBoundary(e) {
  const canvas = $("boundary"), ctx = canvas.getContext("2d"), n = run.resolution;
  const small = run.small || (run.small = Object.assign(document.createElement("canvas"), { width: n, height: n }));
  small.getContext("2d").putImageData(paint(small, bytes(e.boundary)), 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  const [x0, x1, y0, y1] = run.extent;
  for (const [x, y, label, split] of run.points) {
    const px = ((x - x0) / (x1 - x0)) * canvas.width, py = (1 - (y - y0) / (y1 - y0)) * canvas.height;
    ctx.beginPath(); ctx.arc(px, py, run.points.length > 100 ? 3 : 7, 0, 2 * Math.PI);
    ctx.fillStyle = label ? "#f59322" : "#0877bd"; ctx.strokeStyle = split ? "#000" : "#fff"; ctx.lineWidth = split ? 1.5 : 1;
    if (split) ctx.stroke(); else { ctx.fill(); ctx.stroke(); }
  }
}
function drawUnits(e) { e.units.forEach((b64, j) => { const c = run.unitCanvases[j]; if (c) c.getContext("2d").putImageData(paint(c, bytes(b64)), 0, 0); }); }
function drawCurves() {
  const canvas = $("curves"), ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const all = [...run.loss, ...run.testLoss].filter(Number.isFinite), top = Math.max(...all, 1e-9);
  const line = (values, colour, dash) => {
    ctx.beginPath(); ctx.setLineDash(dash); ctx.strokeStyle = colour; ctx.lineWidth = 1.5;
    values.forEach((v, i) => { const x = (i / Math.max(run.epochs - 1, 1)) * w, y = h - 4 - (v / top) * (h - 8); i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
    ctx.stroke(); ctx.setLineDash([]);
  };
  line(run.loss, "#183a4a", []); line(run.testLoss, "#c07800", [5, 4]);
  ctx.fillStyle = "#555"; ctx.font = "11px system-ui"; ctx.fillText(`loss, max ${top.toPrecision(3)}`, 4, 12);
}
function clearPlot() { run = null; for (const id of ["boundary", "curves"]) $(id).getContext("2d").clearRect(0, 0, 999, 999); $("units").textContent = ""; $("now-epoch").textContent = "0"; $("status").textContent = "ready"; }
function onDone(e) {
  playing = false; paused = false; setPlay();
  stats.done = e; stats.doneAt = performance.now();
  const m = e.metrics;
  $("result").innerHTML = `final train accuracy <b id="final-accuracy">${m.train_accuracy}</b>, train loss <b id="final-loss">${m.train_loss}</b>` +
    (m.test_accuracy !== undefined ? `, test accuracy <b>${m.test_accuracy}</b>` : "") +
    `, 100% at epoch <b id="convergence-epoch">${m.convergence_epoch ?? "never"}</b>. MLflow run <a id="mlflow-link" href="${e.mlflow}" target="_blank" rel="noopener">${e.run_id}</a> (start <code>uv run mlflow ui</code> to open it).`;
  $("status").textContent = `done in ${e.seconds} s`;
}

// ---- 1000 seeds: the share of seeds at 100% by epoch (Kaplan-Meier), this seed marked
async function seeds() {
  const { status, body } = await post("/api/seeds", { query: Object.fromEntries(query(state())) });
  if (status !== 200) showError(body.error, body.control);
}
function onSeeds(e) {
  const canvas = $("km"), ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height, pad = 24;
  canvas.hidden = false; ctx.clearRect(0, 0, w, h);
  const X = (t) => pad + (t / e.epochs) * (w - 2 * pad), Y = (p) => h - pad - p * (h - 2 * pad);
  ctx.strokeStyle = "#999"; ctx.strokeRect(pad, pad, w - 2 * pad, h - 2 * pad);
  ctx.beginPath(); ctx.strokeStyle = "#183a4a"; ctx.lineWidth = 2; ctx.moveTo(X(0), Y(0));
  let last = 0;
  for (const [t, p] of e.curve) { ctx.lineTo(X(t), Y(last)); ctx.lineTo(X(t), Y(p)); last = p; }
  ctx.lineTo(X(e.epochs), Y(last)); ctx.stroke();
  ctx.fillStyle = "#333"; ctx.font = "11px system-ui";
  ctx.fillText(`share of ${e.copies} seeds at 100% train accuracy by epoch (Kaplan-Meier)`, pad, 14);
  ctx.fillText("0", pad - 10, h - pad + 12); ctx.fillText(String(e.epochs), w - pad - 20, h - pad + 12);
  if (e.seed_epoch !== null) {
    ctx.strokeStyle = "#c07800"; ctx.setLineDash([4, 3]); ctx.beginPath(); ctx.moveTo(X(e.seed_epoch), Y(0)); ctx.lineTo(X(e.seed_epoch), Y(1)); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillText(`seed ${e.seed}: epoch ${e.seed_epoch}`, Math.min(X(e.seed_epoch) + 4, w - 120), pad + 12);
  }
  $("seeds-status").innerHTML = `${(100 * e.converged_share).toFixed(1)}% of ${e.copies} seeds reach 100%; median epoch ${e.median ?? "-"}; seed ${e.seed}: <span id="seed-epoch">${e.seed_epoch ?? "never"}</span> (${e.seconds} s, run ${e.run_id})`;
}

// ---- save as experiment
async function save(event, overwrite = false) {
  event?.preventDefault();
  const name = $("save-name").value.trim();
  const { status, body } = await post("/api/save", { query: Object.fromEntries(query(state())), name, overwrite });
  if (status === 409 && confirm(`Experiment ${name} exists. Replace it?`)) return save(null, true);
  $("save-status").textContent = status === 200 ? `saved ${body.saved}; run it with: uv run ${body.command}` : status === 409 ? "not saved (exists)" : body.error;
}

async function init() {
  options = (await (await fetch("/api/options")).json());
  for (const d of Object.keys(options.datasets)) addOption($("dataset"), d);
  for (const l of options.losses) addOption($("loss"), l);
  for (const o of options.optimizers) addOption($("optimizer"), o);
  for (const f of options.features) addFeature(f);
  const params = new URLSearchParams(location.search);
  const autoplay = params.get("play") === "1";
  params.delete("play");
  setState(params);
  document.body.addEventListener("change", (e) => { if (e.target.id === "dataset") showKnobs({ dataset: e.target.value }); if (e.target.closest(".panel") && e.target.id !== "save-name") changed(); });
  $("add-layer").onclick = () => { addLayer(); changed(); };
  $("play").onclick = play; $("step").onclick = step; $("reset").onclick = reset; $("seeds").onclick = seeds;
  $("save-form").onsubmit = save;
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea, button")) return;
    if (e.key === " ") { e.preventDefault(); play(); } else if (e.key === "s") step(); else if (e.key === "r") reset();
  });
  await connect();
  for (const button of document.querySelectorAll("button[disabled]")) button.disabled = false;  // handlers are set
  const ok = await changed();
  const ready = async () => { const s = await (await fetch("/api/status")).json(); $("status").textContent = s.ready ? "ready" : "loading TensorFlow..."; if (!s.ready) setTimeout(ready, 500); };
  ready();
  if (autoplay && ok) start(false);
}
init();
