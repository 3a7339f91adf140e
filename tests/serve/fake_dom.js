/* Run the explorer page's app.js in Node against a live `vaelab serve`, with a minimal stand-in for the DOM.
 *
 * Usage: node fake_dom.js BASE_URL APP_JS UPLOAD_PNG
 * For every run the page lists it loads the run as the page does, then (where enabled) draws samples and
 * uploads UPLOAD_PNG, and prints one JSON object per run: which controls are disabled or hidden, the reasons
 * shown, the status line, and what the decode, sample and upload panels ended up showing.
 * Only what app.js touches is imitated; layout and drawing are no-ops.
 */
"use strict";
const fs = require("fs");
const vm = require("vm");

const [base, appJs, uploadPng] = process.argv.slice(2);
const elements = {};

function makeElement(id) {
  const classes = new Set();
  const ctx = new Proxy({}, {get: (t, k) => (k in t ? t[k] : () => {}), set: (t, k, v) => { t[k] = v; return true; }});
  return {
    id, textContent: "", hidden: false, disabled: false, value: "", title: "", className: "", checked: false,
    dataset: {}, children: [], files: [], width: 560, height: 560, clientWidth: 560, style: {},
    parentElement: {hidden: false},
    classList: {
      toggle(c, on) { if (on === undefined ? !classes.has(c) : on) classes.add(c); else classes.delete(c); },
      contains: (c) => classes.has(c),
    },
    replaceChildren(...c) {
      this.children = c;
      if (c.length && "value" in c[0] && !c.some((o) => o.value === this.value)) this.value = c[0].value;
    },
    removeAttribute(k) { delete this[k]; },
    getContext: () => ctx,
    addEventListener() {}, setPointerCapture() {},
    getBoundingClientRect: () => ({left: 0, top: 0, width: 560, height: 560}),
  };
}

const byId = (id) => (elements[id] ||= makeElement(id));
globalThis.window = globalThis;
globalThis.devicePixelRatio = 1;
globalThis.addEventListener = () => {};
globalThis.document = {
  getElementById: byId,
  querySelector: (sel) => byId(`query:${sel}`),
  querySelectorAll: (sel) => (sel === "input[name=plane]" ? [byId("query:plane-dims"), byId("query:plane-pca")] : []),
  createElement: () => makeElement("created"),
};
globalThis.Option = function Option(text, value) { return {text, value}; };
globalThis.Image = function Image() { return makeElement("img"); };
const realFetch = globalThis.fetch;
globalThis.fetch = (path, options) => realFetch(base + path, options);
byId("query:input[name=path]:checked").value = "linear";

const settle = async () => {
  for (let k = 0; k < 400; k++) {
    await new Promise((r) => setTimeout(r, 10));
    if (!vm.runInThisContext("state.inflight || state.pending")) return;
  }
};

const snapshot = () => {
  const el = (id) => elements[id] || makeElement(id);
  const shown = (id) => (el(id).hidden ? null : el(id).textContent);
  return {
    disabled: Object.fromEntries(["upload", "invert", "sample-btn", "interp-btn"].map((id) => [id, el(id).disabled])),
    pad_off: el("pad").classList.contains("off"),
    why: Object.fromEntries(["pad-why", "decode-why", "encode-why", "sample-why", "interp-why"].map((id) => [id, shown(id)])),
    label_shown: !el("label-pick").hidden,
    labels: el("label").children.map((o) => o.value),
    encode_label_shown: !el("encode-label-pick").hidden,
    encode_labels: el("encode-label").children.map((o) => o.value),
    run_info: el("run-info").textContent,
    decoded_hint: el("decoded-hint").textContent,
    status: el("status").textContent,
    status_error: el("status").className === "error",
    decodes: Number(el("decoded").dataset.decodes || 0),
    decoded_src: Boolean(el("decoded").src),
    z: el("z-readout").textContent,
  };
};

(async () => {
  vm.runInThisContext(fs.readFileSync(appJs, "utf8"), {filename: appJs});
  for (let k = 0; k < 500 && !vm.runInThisContext("state.run"); k++) await new Promise((r) => setTimeout(r, 10));
  const out = {};
  const names = vm.runInThisContext("Object.keys(state.runs)");
  for (const name of names) {
    const before = Number(byId("decoded").dataset.decodes || 0);
    await vm.runInThisContext("loadRun")(name);
    await settle();
    const snap = snapshot();
    snap.decodes = snap.decodes - before;
    const caps = vm.runInThisContext("state.caps");
    if (caps && caps.label) {
      const before = snap.decodes;
      byId("label").value = "3";
      byId("label").onchange();
      await settle();
      snap.decodes_after_label = byId("decoded").dataset.decodes - before;
      snap.state_y = vm.runInThisContext("state.y");
    }
    if (!byId("sample-btn").disabled) {
      await vm.runInThisContext("sampleMany")();
      await settle();
      snap.samples = byId("samples").children.length;
      snap.sample_note = byId("sample-note").textContent;
      snap.samples_clickable = byId("samples").children.filter((i) => typeof i.onclick === "function").length;
    }
    if (!byId("upload").disabled) {
      const data = fs.readFileSync(uploadPng);
      byId("upload").files = [new File([data], "u.png", {type: "image/png"})];
      if (!byId("encode-label-pick").hidden) byId("encode-label").value = "3";
      await vm.runInThisContext("uploadFile")();
      await settle();
      snap.encoded_shown = !byId("encoded").hidden;
      snap.posterior = byId("posterior").textContent;
      snap.upload_status = byId("status").textContent;
    }
    out[name] = snap;
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e && e.stack ? e.stack : String(e)); process.exit(1); });
