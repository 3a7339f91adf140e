/* vaelab explorer: the latent pad and its panels. Plain JavaScript, no libraries, no network but this server.
 *
 * The pad shows a plane of the latent space: z = centre + u * a0 + v * a1. With D = 2 it is the whole
 * space (centre 0, axes e0, e1); with D > 2 it is two chosen dimensions (the other coordinates held at the
 * test codes' mean) or the top two principal directions of the test codes.
 *
 * Not every run can do everything: /api/runs says what each can (`capabilities`), and the controls a run
 * does not support are disabled with the server's one-line reason beside them. A run without an encoder
 * (a GAN, the hierarchical VAE) gets an empty pad that still decodes; a run without a latent variable
 * (PixelCNN) only samples. A run whose decoder takes a label (cvae, m2, ...: /api/runs gives `label`) gets a
 * label selector under the pad, and every picture of z (the pad's point, interpolations) is decoded at that label.
 */
"use strict";

const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const $ = (id) => document.getElementById(id);

const state = {
  runs: {}, caps: null, y: null,
  run: null, info: null, plane: "dims", dims: [0, 1], basis: null, view: null, projected: [],
  z: null, dragging: false, inflight: false, pending: false, decodedUrl: null, decodes: 0,
  picking: false, picks: [], samples: [], seed: 0, upload: null,
};

function status(text, isError = false) {
  const el = $("status");
  el.textContent = text || "";
  el.className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const res = await fetch(path, options);
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${res.status}: ${detail}`);
  }
  return res;
}

const postJSON = (path, body) => api(path, {
  method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
});

/* Show `reason` in the element `id` (hidden when there is none). */
function explain(id, reason) {
  const el = $(id);
  el.textContent = reason || "";
  el.hidden = !reason;
}

/* What /api/latents would say of a run that has no test codes to give (it cannot encode). */
function withoutCodes(entry) {
  const d = entry.capabilities.latent_dim || 0;
  const eye = Array.from({length: Math.min(2, d)},
    (_, r) => Array.from({length: d}, (_, k) => (k === r ? 1 : 0)));
  return {
    model: entry.model, data: entry.data, likelihood: entry.likelihood, binarize: entry.binarize,
    latent_dim: d, generative: entry.generative, codes: [], labels: null, count: 0, note: null,
    mean: Array(d).fill(0), std: Array(d).fill(1),
    pca: {axes: eye, scales: eye.map(() => 1), explained: eye.map(() => null)},
  };
}

function labelOptions(id, classes, predict) {
  const opts = Array.from({length: classes}, (_, k) => new Option(String(k), String(k)));
  if (predict) opts.unshift(new Option("predict: argmax q(y|x)", ""));
  $(id).replaceChildren(...opts);
}

function setLabel(y) {
  if (!state.caps || !state.caps.label || y === null || y === undefined) return;
  state.y = y;
  $("label").value = String(y);
}

/* Enable what the run supports; disable the rest and say why. */
function applyCaps(caps) {
  const why = caps.why_not || {};
  $("pad").classList.toggle("off", !caps.decode);
  explain("pad-why", caps.decode ? "" : why.decode);
  explain("decode-why", caps.decode ? "" : why.decode);
  $("decoded-hint").textContent = caps.decoded || "";
  if (!caps.decode) { $("decoded").removeAttribute("src"); $("z-readout").textContent = ""; }
  $("upload").disabled = !caps.encode;
  $("invert").disabled = !caps.encode;
  explain("encode-why", caps.encode ? "" : why.encode);
  $("sample-btn").disabled = !caps.sample;
  explain("sample-why", caps.sample ? "" : why.sample);
  $("interp-btn").disabled = !caps.interpolate;
  explain("interp-why", caps.interpolate ? "" : why.interpolate);
  const lab = caps.label;
  $("label-pick").hidden = !lab || !caps.decode;
  $("encode-label-pick").hidden = !lab || !caps.encode;
  state.y = lab ? lab.default : null;
  if (lab) {
    labelOptions("label", lab.classes, false);
    $("label").value = String(lab.default);
    $("label-note").textContent = `the pad's point is decoded at this label (default ${lab.default})`;
    labelOptions("encode-label", lab.classes, lab.encode === "optional");
    $("encode-label").title = lab.encode === "required"
      ? "this model encodes q(z | x, y): it needs the image's label"
      : "leave on predict to use the model's classifier";
  }
}

/* ---- the plane ---- */

function basis() {
  const info = state.info, d = info.latent_dim;
  const unit = (k) => Array.from({length: d}, (_, i) => (i === k ? 1 : 0));
  if (state.plane === "pca" && d > 2) {
    return {centre: info.mean.slice(), a0: info.pca.axes[0], a1: info.pca.axes[1], names: ["PC1", "PC2"]};
  }
  const [i, j] = d === 1 ? [0, -1] : state.dims;
  const centre = d === 2 ? Array(d).fill(0) : info.mean.slice();
  centre[i] = 0;
  if (j >= 0) centre[j] = 0;
  return {centre, a0: unit(i), a1: j >= 0 ? unit(j) : Array(d).fill(0),
          names: [`z[${i}]`, j >= 0 ? `z[${j}]` : ""]};
}

const dot = (a, b) => a.reduce((s, v, k) => s + v * b[k], 0);

function project(z) {
  const b = state.basis, c = z.map((v, k) => v - b.centre[k]);
  return [dot(c, b.a0), dot(c, b.a1)];
}

function toZ(u, v) {
  const b = state.basis;
  return b.centre.map((c, k) => c + u * b.a0[k] + v * b.a1[k]);
}

/* Square bounds around the test codes (and samples and the upload, so they stay in sight). */
function computeView() {
  let lo = [Infinity, Infinity], hi = [-Infinity, -Infinity];
  const extra = state.samples.concat(state.upload ? [state.upload.mean] : []).map(project);
  for (const [u, v] of state.projected.concat(extra)) {
    lo = [Math.min(lo[0], u), Math.min(lo[1], v)];
    hi = [Math.max(hi[0], u), Math.max(hi[1], v)];
  }
  if (!state.projected.length || (state.info.generative && state.plane !== "pca")) {
    lo = [Math.min(lo[0], -3), Math.min(lo[1], -3)];
    hi = [Math.max(hi[0], 3), Math.max(hi[1], 3)];
  }
  const cx = (lo[0] + hi[0]) / 2, cy = (lo[1] + hi[1]) / 2;
  const half = 0.54 * Math.max(hi[0] - lo[0], hi[1] - lo[1], 1e-3);
  return {x0: cx - half, x1: cx + half, y0: cy - half, y1: cy + half};
}

function setPlane() {
  state.basis = basis();
  const codes = state.info.codes;
  state.projected = codes.map(project);
  state.view = computeView();
  const d = state.info.latent_dim;
  $("plane-controls").hidden = d <= 2;
  $("plane-text").textContent = d === 2 ? "the whole 2-D latent plane"
    : d === 1 ? "a 1-D latent space: only the horizontal axis matters" : "";
  draw();
}

/* ---- drawing ---- */

function canvasSize() {
  const pad = $("pad"), ratio = window.devicePixelRatio || 1;
  const w = Math.round(pad.clientWidth * ratio) || pad.width;
  if (pad.width !== w) { pad.width = w; pad.height = w; }
  return {w, ratio};
}

function toPx(u, v, w) {
  const vw = state.view;
  return [(u - vw.x0) / (vw.x1 - vw.x0) * w, (1 - (v - vw.y0) / (vw.y1 - vw.y0)) * w];
}

function fromPx(px, py, w) {
  const vw = state.view;
  return [vw.x0 + px / w * (vw.x1 - vw.x0), vw.y0 + (1 - py / w) * (vw.y1 - vw.y0)];
}

function niceStep(span) {
  const raw = span / 6, p = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
}

function draw() {
  if (!state.info) return;
  const {w, ratio} = canvasSize();
  const ctx = $("pad").getContext("2d");
  ctx.clearRect(0, 0, w, w);
  if (!state.caps.decode) return;
  const vw = state.view, step = niceStep(vw.x1 - vw.x0);
  ctx.font = `${11 * ratio}px system-ui, sans-serif`;
  ctx.lineWidth = ratio;
  ctx.fillStyle = "#9aa1ae";
  for (let k = Math.ceil(vw.x0 / step); k * step <= vw.x1; k++) {
    const x = toPx(k * step, 0, w)[0];
    ctx.strokeStyle = k === 0 ? "#c3c8d2" : "#eef0f3";
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, w); ctx.stroke();
    ctx.fillText(+(k * step).toFixed(6), x + 3 * ratio, w - 5 * ratio);
  }
  for (let k = Math.ceil(vw.y0 / step); k * step <= vw.y1; k++) {
    const y = toPx(0, k * step, w)[1];
    ctx.strokeStyle = k === 0 ? "#c3c8d2" : "#eef0f3";
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(+(k * step).toFixed(6), 4 * ratio, y - 3 * ratio);
  }
  const labels = state.info.labels;
  ctx.globalAlpha = 0.55;
  state.projected.forEach(([u, v], k) => {
    const [x, y] = toPx(u, v, w);
    ctx.fillStyle = labels ? TAB10[((labels[k] % 10) + 10) % 10] : "#56607a";
    ctx.beginPath(); ctx.arc(x, y, 2.1 * ratio, 0, 2 * Math.PI); ctx.fill();
  });
  ctx.globalAlpha = 1;
  ctx.fillStyle = "#4b5263";
  ctx.fillText(state.basis.names[0] + " →", w - 60 * ratio, w - 18 * ratio);
  if (state.basis.names[1]) ctx.fillText("↑ " + state.basis.names[1], 8 * ratio, 16 * ratio);
  drawMarks(ctx, w, ratio);
}

function drawMarks(ctx, w, ratio) {
  ctx.strokeStyle = "#111"; ctx.lineWidth = 1.2 * ratio;
  for (const z of state.samples) {
    const [x, y] = toPx(...project(z), w), s = 4 * ratio;
    ctx.beginPath(); ctx.moveTo(x - s, y); ctx.lineTo(x + s, y); ctx.moveTo(x, y - s); ctx.lineTo(x, y + s); ctx.stroke();
  }
  if (state.picks.length) {
    const pts = state.picks.map((z) => toPx(...project(z), w));
    ctx.strokeStyle = "#3056d3"; ctx.lineWidth = 2 * ratio;
    ctx.beginPath(); pts.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); ctx.stroke();
    ctx.fillStyle = "#3056d3";
    pts.forEach(([x, y]) => { ctx.beginPath(); ctx.arc(x, y, 5 * ratio, 0, 2 * Math.PI); ctx.fill(); });
  }
  if (state.upload) drawEllipse(ctx, w, ratio, state.upload);
  if (state.z) {
    const [x, y] = toPx(...project(state.z), w);
    ctx.strokeStyle = "#d92d20"; ctx.lineWidth = 2 * ratio;
    ctx.beginPath(); ctx.arc(x, y, 7 * ratio, 0, 2 * Math.PI); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(x - 12 * ratio, y); ctx.lineTo(x + 12 * ratio, y);
    ctx.moveTo(x, y - 12 * ratio); ctx.lineTo(x, y + 12 * ratio); ctx.stroke();
  }
}

/* The 2-sigma ellipse of q(z|x) = N(mean, diag(std^2)) projected on the plane. */
function drawEllipse(ctx, w, ratio, {mean, std}) {
  const b = state.basis, s2 = std.map((s) => s * s);
  const a = s2.reduce((t, v, k) => t + v * b.a0[k] ** 2, 0);
  const d = s2.reduce((t, v, k) => t + v * b.a1[k] ** 2, 0);
  const c = s2.reduce((t, v, k) => t + v * b.a0[k] * b.a1[k], 0);
  const root = Math.sqrt(((a - d) / 2) ** 2 + c * c);
  const l1 = (a + d) / 2 + root, l2 = Math.max((a + d) / 2 - root, 0);
  const angle = 0.5 * Math.atan2(2 * c, a - d), scale = w / (state.view.x1 - state.view.x0);
  const [x, y] = toPx(...project(mean), w);
  ctx.strokeStyle = "#111"; ctx.fillStyle = "rgba(17,17,17,0.08)"; ctx.lineWidth = 1.5 * ratio;
  ctx.beginPath();
  ctx.ellipse(x, y, Math.max(2 * Math.sqrt(l1) * scale, ratio), Math.max(2 * Math.sqrt(l2) * scale, ratio),
              -angle, 0, 2 * Math.PI);
  ctx.fill(); ctx.stroke();
  ctx.beginPath(); ctx.arc(x, y, 3 * ratio, 0, 2 * Math.PI); ctx.fillStyle = "#111"; ctx.fill();
}

/* ---- decoding: at most one request in flight; the latest z wins ---- */

function setZ(z) {
  state.z = z;
  $("z-readout").textContent = z.map((v, k) => `z[${k}] = ${v >= 0 ? " " : ""}${v.toFixed(3)}`).join("\n");
  draw();
  decode();
}

async function decode() {
  if (state.inflight) { state.pending = true; return; }
  state.inflight = true;
  try {
    const body = {run: state.run, z: state.z};
    if (state.caps.label) body.y = state.y;
    const res = await postJSON("/api/decode", body);
    const url = URL.createObjectURL(await res.blob());
    const img = $("decoded");
    img.dataset.label = res.headers.get("x-vaelab-label") ?? "";
    if (state.decodedUrl) URL.revokeObjectURL(state.decodedUrl);
    state.decodedUrl = url;
    img.src = url;
    state.decodes += 1;
    img.dataset.decodes = String(state.decodes);
  } catch (e) {
    status(`decode failed: ${e.message}`, true);
  } finally {
    state.inflight = false;
    if (state.pending) { state.pending = false; decode(); }
  }
}

function eventUV(ev) {
  const pad = $("pad"), r = pad.getBoundingClientRect(), w = pad.width;
  return fromPx((ev.clientX - r.left) / r.width * w, (ev.clientY - r.top) / r.height * w, w);
}

function onDown(ev) {
  if (!state.info || !state.caps.decode) return;
  const z = toZ(...eventUV(ev));
  if (state.picking) { pick(z); return; }
  state.dragging = true;
  $("pad").setPointerCapture(ev.pointerId);
  setZ(z);
}

function onMove(ev) {
  if (state.dragging) setZ(toZ(...eventUV(ev)));
}

function onUp() { state.dragging = false; }

/* ---- sampling, interpolation, upload ---- */

async function sampleMany() {
  try {
    const res = await (await postJSON("/api/sample", {run: state.run, n: 16, seed: state.seed++})).json();
    state.samples = res.z && state.caps.decode ? res.z : [];
    if (state.caps.decode) state.view = computeView();
    $("sample-note").textContent = res.source;
    const box = $("samples");
    box.replaceChildren(...res.images.map((src, k) => {
      const img = new Image();
      img.src = src; img.className = "pixels"; img.alt = `sample ${k + 1}`;
      const at = res.y ? ` at label ${res.y[k]}` : "";
      if (res.z && state.caps.decode) {
        img.title = `show this z${at}`;
        img.onclick = () => { setLabel(res.y ? res.y[k] : null); setZ(res.z[k]); };
      } else {
        img.title = "a sample (no single z to show)";
      }
      return img;
    }));
    draw();
  } catch (e) { status(`sampling failed: ${e.message}`, true); }
}

function togglePicking() {
  state.picking = !state.picking;
  if (state.picking) state.picks = [];
  $("interp-btn").classList.toggle("active", state.picking);
  $("pad").classList.toggle("picking", state.picking);
  $("interp-hint").textContent = state.picking ? "click two points on the pad" : "";
  draw();
}

async function pick(z) {
  state.picks.push(z);
  draw();
  if (state.picks.length < 2) { $("interp-hint").textContent = "now click the second point"; return; }
  togglePicking();
  state.picks = state.picks.slice(0, 2);
  const path = document.querySelector("input[name=path]:checked").value;
  try {
    const body = {run: state.run, z0: state.picks[0], z1: state.picks[1], steps: 10, path};
    if (state.caps.label) body.y = state.y;
    const res = await (await postJSON("/api/interpolate", body)).json();
    $("strip").replaceChildren(...res.images.map((src, k) => {
      const img = new Image();
      img.src = src; img.className = "pixels"; img.alt = `step ${k + 1}`;
      img.onclick = () => setZ(res.z[k]);
      return img;
    }));
    $("interp-hint").textContent = `${path} path, ${res.images.length} steps`;
    draw();
  } catch (e) { status(`interpolation failed: ${e.message}`, true); }
}

async function uploadFile() {
  const file = $("upload").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("run", state.run);
  form.append("file", file);
  form.append("invert", $("invert").checked ? "true" : "false");
  if (state.caps.label && $("encode-label").value !== "") form.append("y", $("encode-label").value);
  try {
    const res = await (await api("/api/encode", {method: "POST", body: form})).json();
    $("input-seen").src = res.input;
    $("recon").src = res.reconstruction;
    $("encoded").hidden = false;
    $("posterior").textContent = res.mean.map((m, k) =>
      `z[${k}] = ${m >= 0 ? " " : ""}${m.toFixed(3)} ± ${res.std[k].toFixed(3)}`).join("\n")
      + (res.std.every((v) => v === 0) ? "\n(a point: an autoencoder's code has no spread)" : "")
      + (res.binarized ? "\n(input binarized as the run's test data)" : "")
      + (res.label_source ? `\nq(z | x, y) at y = ${res.y} (${res.label_source})` : "");
    state.upload = {mean: res.mean, std: res.std};
    setLabel(res.y);
    state.view = computeView();
    status(`encoded ${file.name}: the ellipse on the pad is its posterior's 2σ region`);
    setZ(res.mean);
  } catch (e) { status(`upload failed: ${e.message}`, true); }
}

/* ---- runs ---- */

async function loadRun(name) {
  const entry = state.runs[name];
  if (!entry) return;
  if (entry.error) {
    const msg = `this run could not be loaded: ${entry.error}`;
    const off = {decode: false, encode: false, sample: false, interpolate: false, latents: false,
                 why_not: {decode: msg, encode: msg, sample: msg, interpolate: msg}};
    Object.assign(state, {run: name, info: null, caps: off});
    applyCaps(off);
    const pad = $("pad");
    pad.getContext("2d").clearRect(0, 0, pad.width, pad.height);
    status(`could not load ${name}: ${entry.error}`, true);
    return;
  }
  const caps = entry.capabilities, why = caps.why_not || {};
  status(`loading ${name}…`);
  try {
    const info = caps.latents
      ? await (await api(`/api/latents?run=${encodeURIComponent(name)}`)).json()
      : withoutCodes(entry);
    Object.assign(state, {run: name, info, caps, samples: [], picks: [], upload: null, seed: 0, z: null});
    applyCaps(caps);
    const d = info.latent_dim;
    for (const id of ["dim-i", "dim-j"]) {
      $(id).replaceChildren(...Array.from({length: d}, (_, k) => new Option(`z[${k}]`, k)));
    }
    state.dims = [0, Math.min(1, Math.max(d - 1, 0))];
    $("dim-i").value = 0; $("dim-j").value = state.dims[1];
    state.plane = "dims";
    document.querySelector("input[name=plane][value=dims]").checked = true;
    document.querySelector("input[name=plane][value=pca]").parentElement.hidden = !info.count;
    $("dims-rest").textContent = info.count
      ? "(the others held at the test codes' mean)" : "(the others held at 0, the prior's mean)";
    const ex = info.pca.explained;
    $("pca-label").textContent = ex.length === 2 && ex.every(Number.isFinite)
      ? `top two principal directions (${(100 * ex[0]).toFixed(0)}% and ${(100 * ex[1]).toFixed(0)}% of the variance)`
      : "top two principal directions";
    $("run-info").textContent = `${info.model} · ${info.data} · `
      + (caps.latent_dim ? `D = ${d}` : "no latent variable") + ` · ${info.likelihood}`
      + (info.binarize !== "none" ? " · binarized" : "") + (caps.label ? ` · labels 0-${caps.label.classes - 1}` : "");
    $("badge").hidden = info.generative;
    $("sample-btn").textContent = info.generative ? "Sample 16" : "Decode 16 draws of N(0, I)";
    $("sample-note").textContent = "";
    for (const id of ["samples", "strip"]) $(id).replaceChildren();
    $("encoded").hidden = true;
    const labels = info.labels ? [...new Set(info.labels)].sort((a, b) => a - b) : [];
    $("legend").replaceChildren(...labels.slice(0, 20).map((l) => {
      const span = document.createElement("span");
      span.innerHTML = `<i style="background:${TAB10[((l % 10) + 10) % 10]}"></i>${l}`;
      return span;
    }));
    if (caps.decode) {
      setPlane();
      setZ(info.generative && d === 2 ? [0, 0] : info.mean.slice());
    } else {
      $("plane-controls").hidden = true;
      $("plane-text").textContent = "";
      draw();
    }
    if (!caps.latents) status(`no test codes on the pad: ${why.latents}`);
    else status(info.note || `${info.count} test codes drawn (${info.codes_of})`, Boolean(info.note));
  } catch (e) { status(`could not load ${name}: ${e.message}`, true); }
}

async function init() {
  const pad = $("pad");
  pad.addEventListener("pointerdown", onDown);
  pad.addEventListener("pointermove", onMove);
  pad.addEventListener("pointerup", onUp);
  pad.addEventListener("pointercancel", onUp);
  window.addEventListener("resize", draw);
  $("sample-btn").onclick = sampleMany;
  $("interp-btn").onclick = togglePicking;
  $("upload").onchange = uploadFile;
  $("invert").onchange = uploadFile;
  $("run-select").onchange = (e) => loadRun(e.target.value);
  $("label").onchange = () => { state.y = Number($("label").value); if (state.z) decode(); };
  for (const el of document.querySelectorAll("input[name=plane]")) {
    el.onchange = () => { state.plane = el.value; setPlane(); };
  }
  for (const [k, id] of [[0, "dim-i"], [1, "dim-j"]]) {
    $(id).onchange = () => { state.dims[k] = Number($(id).value); state.plane = "dims";
      document.querySelector("input[name=plane][value=dims]").checked = true; setPlane(); };
  }
  try {
    const {runs, single} = await (await api("/api/runs")).json();
    state.runs = Object.fromEntries(runs.map((r) => [r.name, r]));
    $("run-select").replaceChildren(...runs.map((r) => new Option(r.name, r.name)));
    $("run-select").disabled = single;
    if (runs.length) await loadRun(runs[0].name);
  } catch (e) { status(`could not list runs: ${e.message}`, true); }
}

init();
