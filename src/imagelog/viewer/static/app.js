// imagelog view: timeline (uPlot), virtualised thumbnail grid (@tanstack/virtual-core), frame view.
// Plain ES module, no build step. State lives in the URL so a link reopens the same view.
import uPlot from "./vendor/uplot/uPlot.esm.js";
import {
  Virtualizer, elementScroll, observeElementOffset, observeElementRect,
} from "./vendor/virtual-core/index.js";

const $ = (s) => document.querySelector(s);
const PAGE = 200;            // frames per /api/frames request
const TILE_W = 176, TILE_H = 150, GAP = 6;
const token = new URLSearchParams(location.search).get("token") || "";

const state = {
  sources: [], label: "", meta: "", level: "", q: "", since: "", until: "",
  frame: null, compare: null, follow: false,
};
let allSources = [];
let count = 0, gen = 0, version = -1, cols = 1, loading = true;
let pages = new Map();       // page number -> array of frames, or "loading"
const rowEls = new Map();    // virtual row index -> element
const words = (s) => s.split(/\s+/).filter(Boolean);

// -- URL state ------------------------------------------------------------------------------
function readUrl() {
  const p = new URLSearchParams(location.search);
  state.sources = p.getAll("source");
  state.label = p.getAll("label").join(" ");
  state.meta = p.getAll("meta").join(" ");
  for (const k of ["level", "q", "since", "until"]) state[k] = p.get(k) || "";
  state.frame = p.get("frame");
  state.compare = p.get("compare");
  state.follow = p.get("follow") === "1";
}

function filterParams() {
  const p = new URLSearchParams();
  for (const s of state.sources) p.append("source", s);
  for (const l of words(state.label)) p.append("label", l);
  for (const m of words(state.meta)) p.append("meta", m);
  for (const k of ["level", "q", "since", "until"]) if (state[k]) p.set(k, state[k]);
  return p;
}

function writeUrl() {
  const p = new URLSearchParams();
  if (token) p.set("token", token);
  for (const [k, v] of filterParams()) p.append(k, v);
  if (state.frame) p.set("frame", state.frame);
  if (state.compare) p.set("compare", state.compare);
  if (state.follow) p.set("follow", "1");
  history.replaceState(null, "", "?" + p);
}

async function api(path, params = new URLSearchParams()) {
  const r = await fetch(`${path}?${params}`);
  if (!r.ok) throw new Error(await r.text());
  return r.json();
}

function showError(e) {
  const el = $("#error");
  el.hidden = !e;
  el.textContent = e ? String(e.message || e) : "";
}

// -- filters --------------------------------------------------------------------------------
function syncForm() {
  const f = $("#filters");
  for (const k of ["label", "meta", "level", "q", "since", "until"]) f.elements[k].value = state[k];
  $("#follow").checked = state.follow;
  renderSources();
}

function renderSources() {
  const box = $("#sources");
  box.replaceChildren();
  for (const s of allSources) {
    const chip = document.createElement("span");
    chip.className = "chip" + (state.sources.includes(s.source) ? " on" : "");
    chip.textContent = `${s.source} ${s.frames.toLocaleString()}`;
    chip.dataset.source = s.source;
    chip.onclick = () => {
      const on = state.sources.includes(s.source);
      state.sources = on ? state.sources.filter((x) => x !== s.source) : [...state.sources, s.source];
      apply();
    };
    box.append(chip);
  }
}

function apply() {
  const f = $("#filters");
  for (const k of ["label", "meta", "level", "q", "since", "until"]) state[k] = f.elements[k].value.trim();
  writeUrl();
  renderSources();
  gen += 1;
  pages = new Map();
  count = -1;
  for (const el of rowEls.values()) el.remove();
  rowEls.clear();
  grid.scrollTop = 0;
  refreshCount().then(() => loadTimeline());
}

$("#filters").addEventListener("submit", (e) => { e.preventDefault(); apply(); });
$("#clear").onclick = () => {
  Object.assign(state, { sources: [], label: "", meta: "", level: "", q: "", since: "", until: "" });
  syncForm();
  apply();
};
$("#follow").onchange = (e) => {
  state.follow = e.target.checked;
  writeUrl();
  if (state.follow) scrollToEnd();
};
$("#jumpgo").onclick = () => jumpTo($("#jump").value.trim());
$("#jump").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); jumpTo(e.target.value.trim()); } });

async function jumpTo(ts) {
  if (!ts) return;
  try {
    const p = filterParams();
    p.set("ts", ts);
    const r = await api("/api/position", p);
    virt.scrollToIndex(Math.floor(Math.min(r.index, Math.max(count - 1, 0)) / cols), { align: "start" });
    showError(null);
  } catch (e) { showError(e); }
}

// -- grid -----------------------------------------------------------------------------------
const grid = $("#grid"), inner = $("#grid-inner");
const virt = new Virtualizer({
  count: 0,
  getScrollElement: () => grid,
  estimateSize: () => TILE_H + GAP,
  overscan: 2,
  scrollToFn: elementScroll,
  observeElementRect,
  observeElementOffset,
  onChange: () => schedule(),
});
virt._didMount();
virt._willUpdate();

let scheduled = false;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => { scheduled = false; render(); });
}

function setCount(n) {
  const c = Math.max(1, Math.floor((grid.clientWidth - 20 + GAP) / (TILE_W + GAP)));
  const rows = Math.ceil(Math.max(n, 0) / c);
  if (c !== cols) { for (const el of rowEls.values()) el.remove(); rowEls.clear(); }
  cols = c;
  virt.setOptions({ ...virt.options, count: rows });
  virt._willUpdate();
  schedule();
}
new ResizeObserver(() => setCount(count)).observe(grid);

function frameAt(i) {
  const page = pages.get(Math.floor(i / PAGE));
  return Array.isArray(page) ? page[i % PAGE] : undefined;
}

function ensurePage(i) {
  const k = Math.floor(i / PAGE);
  if (pages.has(k)) return;
  pages.set(k, "loading");
  const my = gen;
  const p = filterParams();
  p.set("offset", k * PAGE);
  p.set("limit", PAGE);
  p.set("total", count);   // pages past the middle are read from the end
  api("/api/frames", p).then((r) => {
    if (my !== gen) return;
    pages.set(k, r.frames);
    schedule();
  }).catch((e) => { pages.delete(k); showError(e); });
}

function render() {
  inner.style.height = `${virt.getTotalSize()}px`;
  const keep = new Set();
  for (const item of virt.getVirtualItems()) {
    keep.add(item.index);
    let row = rowEls.get(item.index);
    if (!row) {
      row = document.createElement("div");
      row.className = "row";
      rowEls.set(item.index, row);
      inner.append(row);
    }
    row.style.transform = `translateY(${item.start}px)`;
    row.style.height = `${item.size}px`;
    fillRow(row, item.index);
  }
  for (const [i, el] of rowEls) if (!keep.has(i)) { el.remove(); rowEls.delete(i); }
}

function fillRow(row, r) {
  while (row.children.length < cols) row.append(makeTile());
  for (let c = 0; c < cols; c++) {
    const tile = row.children[c];
    const i = r * cols + c;
    if (i >= count) { tile.style.visibility = "hidden"; tile.dataset.id = ""; continue; }
    tile.style.visibility = "visible";
    tile.dataset.index = i;
    const f = frameAt(i);
    if (!f) { ensurePage(i); continue; }
    if (tile.dataset.id === f.id) continue;
    tile.dataset.id = f.id;
    tile.dataset.source = f.source;
    tile.classList.toggle("pinned", f.id === state.compare);
    const img = tile.firstChild;
    img.dataset.loaded = "";
    img.src = `/thumb/${encodeURIComponent(f.id)}`;
    tile.lastChild.textContent = `${f.source} ${f.ts.slice(11, 23)}`;
    tile.title = `${f.source} ${f.ts} ${f.width}x${f.height} ${f.dtype} ${f.format}`;
  }
}

function makeTile() {
  const tile = document.createElement("div");
  tile.className = "tile";
  tile.dataset.testid = "tile";
  tile.style.width = `${TILE_W}px`;
  tile.style.height = `${TILE_H}px`;
  const img = document.createElement("img");
  img.alt = "";
  img.decoding = "async";
  img.onload = () => { img.dataset.loaded = "1"; };
  const cap = document.createElement("div");
  cap.className = "cap";
  tile.append(img, cap);
  tile.onclick = (e) => {
    const id = tile.dataset.id;
    if (!id) return;
    if (e.shiftKey) {                       // pin for comparison
      state.compare = state.compare === id ? null : id;
      writeUrl();
      for (const t of inner.querySelectorAll(".tile")) t.classList.toggle("pinned", t.dataset.id === state.compare);
      return;
    }
    openFrame(id);
  };
  return tile;
}

function scrollToEnd() {
  const rows = Math.ceil(count / cols);
  if (rows > 0) virt.scrollToIndex(rows - 1, { align: "end" });
}

async function refreshCount() {
  const my = gen;
  const r = await api("/api/count", filterParams());
  if (my !== gen) return;
  showError(null);
  const changed = r.count !== count;
  if (changed) {
    const firstStale = Math.floor(Math.max(count, 0) / PAGE);
    for (const k of [...pages.keys()]) if (k >= firstStale) pages.delete(k);
    for (const row of rowEls.values()) for (const t of row.children) if (+t.dataset.index >= Math.max(count, 0) - (Math.max(count, 0) % PAGE)) t.dataset.id = "";
    count = r.count;
    setCount(count);
    if (state.follow) scrollToEnd();
  }
  loading = r.loading;
  const label = r.loading ? " (reading the index…)" : "";
  $("#status").textContent = `${count.toLocaleString()} frames${label}`;
  $("#status").dataset.count = count;
  if (r.version !== version) {
    version = r.version;
    timelineDue = true;
  }
}

// -- timeline -------------------------------------------------------------------------------
let plots = [];
let timelineDue = false, timelineAt = 0, timeline = null;
const COLORS = ["#4aa3ff", "#5fd37a", "#e0a030", "#d56bd0", "#46c8c8", "#e26060"];

async function loadTimeline() {
  timelineDue = false;
  timelineAt = performance.now();
  try {
    timeline = await api("/api/timeline", filterParams());
  } catch (e) { showError(e); return; }
  const box = $("#timeline");
  for (const p of plots) p.destroy();
  plots = [];
  box.replaceChildren();
  if (timeline.t0 === null) return;
  const n = Object.values(timeline.series)[0]?.length || 0;
  const xs = Array.from({ length: n }, (_, i) => (timeline.t0 + (i + 0.5) * timeline.step) / 1e6);
  const width = Math.max(300, box.clientWidth - 90);
  Object.entries(timeline.series).forEach(([source, counts], k) => {
    const row = document.createElement("div");
    row.className = "tl-row";
    row.dataset.source = source;
    const name = document.createElement("div");
    name.className = "tl-name";
    name.textContent = source;
    const holder = document.createElement("div");
    row.append(name, holder);
    box.append(row);
    const events = timeline.events.filter((e) => !e.source || e.source === source);
    const plot = new uPlot({
      width, height: 54,
      legend: { show: false },
      cursor: { sync: { key: "tl" }, drag: { x: true, y: false } },
      scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(1, hi)] } },
      axes: [{ show: k === Object.keys(timeline.series).length - 1, stroke: "#9ab", size: 24 }, { show: false }],
      series: [{}, { stroke: COLORS[k % COLORS.length], fill: COLORS[k % COLORS.length] + "55", paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } }],
      hooks: {
        draw: [(u) => drawMarks(u, events)],
        setSelect: [(u) => {
          if (u.select.width < 3) return;
          const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
          $("#filters").elements.since.value = new Date(a * 1000).toISOString();
          $("#filters").elements.until.value = new Date(b * 1000).toISOString();
          u.setSelect({ left: 0, width: 0 }, false);
          apply();
        }],
      },
    }, [xs, counts], holder);
    plots.push(plot);
  });
}

function drawMarks(u, events) {
  const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
  ctx.save();
  for (const e of events) {
    const x = Math.round(u.valToPos(e.t / 1e6, "x", true));
    ctx.fillStyle = e.action === "purged" ? "#e0a030" : "#ff4040";
    ctx.fillRect(x - 1, top, 2, h);
  }
  const sel = [state.since, state.until].map((v) => (v ? Date.parse(v) / 1000 : null));
  if (sel[0] || sel[1]) {
    const a = sel[0] ? u.valToPos(sel[0], "x", true) : u.bbox.left;
    const b = sel[1] ? u.valToPos(sel[1], "x", true) : u.bbox.left + u.bbox.width;
    ctx.fillStyle = "rgba(80,160,255,0.15)";
    ctx.fillRect(a, top, Math.max(1, b - a), h);
  }
  ctx.restore();
}

// -- frame view -----------------------------------------------------------------------------
const panes = [];   // {id, rec, el, img, z, x, y, lo, hi}
let active = 0;

function makePane(i) {
  const el = document.createElement("div");
  el.className = "pane";
  el.dataset.testid = `pane-${i}`;
  const img = document.createElement("img");
  img.draggable = false;
  const label = document.createElement("div");
  label.className = "label";
  el.append(label, img);
  const pane = { el, img, label, z: 1, x: 0, y: 0, id: null, rec: null, lo: null, hi: null };
  img.onload = () => { img.dataset.loaded = "1"; if (pane.fit) { fit(pane); pane.fit = false; } };
  el.addEventListener("mousedown", (e) => {
    setActive(panes.indexOf(pane));
    const sx = e.clientX - pane.x, sy = e.clientY - pane.y;
    const move = (m) => { pane.x = m.clientX - sx; pane.y = m.clientY - sy; place(pane); };
    const up = () => { removeEventListener("mousemove", move); removeEventListener("mouseup", up); };
    addEventListener("mousemove", move);
    addEventListener("mouseup", up);
  });
  el.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = el.getBoundingClientRect();
    const px = e.clientX - r.left, py = e.clientY - r.top;
    const f = Math.exp(-e.deltaY * 0.0015);
    pane.x = px - (px - pane.x) * f;
    pane.y = py - (py - pane.y) * f;
    pane.z *= f;
    place(pane);
  }, { passive: false });
  el.addEventListener("dblclick", () => fit(pane));
  return pane;
}

function place(p) { p.img.style.transform = `translate(${p.x}px, ${p.y}px) scale(${p.z})`; }

function fit(p) {
  const w = p.img.naturalWidth || 1, h = p.img.naturalHeight || 1;
  const W = p.el.clientWidth, H = p.el.clientHeight;
  p.z = Math.min(W / w, H / h);
  p.x = (W - w * p.z) / 2;
  p.y = (H - h * p.z) / 2;
  place(p);
}

function setActive(i) {
  active = Math.max(0, Math.min(i, panes.length - 1));
  panes.forEach((p, k) => p.el.classList.toggle("active", k === active && panes.length > 1));
  renderSide();
}

async function loadPane(i, id) {
  const pane = panes[i];
  const rec = await api(`/api/record/${encodeURIComponent(id)}`);
  pane.id = id;
  pane.rec = rec;
  pane.lo = rec.window ? rec.window.lo : null;
  pane.hi = rec.window ? rec.window.hi : null;
  pane.el.dataset.id = id;
  const r = rec.record;
  pane.label.textContent = `${r.image.source}  ${r["@timestamp"]}`;
  pane.fit = true;
  pane.img.dataset.loaded = "";
  pane.img.src = displayUrl(pane);
  if (i === 0) state.frame = id; else state.compare = id;
  writeUrl();
  if (i === active) renderSide();
}

function displayUrl(p) {
  const q = p.lo !== null ? `?lo=${p.lo}&hi=${p.hi}` : "";
  return `${p.rec.display}${q}`;
}

async function openFrame(id, compareId = state.compare) {
  $("#frame").hidden = false;
  const box = $("#panes");
  box.replaceChildren();
  panes.length = 0;
  const ids = compareId && compareId !== id ? [id, compareId] : [id];
  ids.forEach((_, i) => { panes.push(makePane(i)); box.append(panes[i].el); });
  active = 0;
  setActive(0);
  try {
    await Promise.all(ids.map((x, i) => loadPane(i, x)));
    showError(null);
  } catch (e) { showError(e); }
}

function closeFrame() {
  $("#frame").hidden = true;
  state.frame = null;
  writeUrl();
}

async function compareWith(id) {
  if (panes.length < 2) {
    panes.push(makePane(1));
    $("#panes").append(panes[1].el);
  }
  await loadPane(1, id);
  setActive(1);
}

async function sameMoment(source) {
  const rec = panes[active].rec.record;
  const p = new URLSearchParams({ source, offset: 0, limit: 1, since: rec["@timestamp"] });
  let r = await api("/api/frames", p);
  if (!r.frames.length) {
    const q = new URLSearchParams({ source });
    q.set("ts", rec["@timestamp"]);
    const pos = await api("/api/position", q);
    r = await api("/api/frames", new URLSearchParams({ source, offset: Math.max(0, pos.index - 1), limit: 1 }));
  }
  if (r.frames.length) await compareWith(r.frames[0].id);
}

function flatten(obj, prefix = "", out = []) {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
    else out.push([key, Array.isArray(v) ? JSON.stringify(v) : String(v)]);
  }
  return out;
}

function table(rows, testid) {
  const t = document.createElement("table");
  t.dataset.testid = testid;
  for (const [k, v] of rows) {
    const tr = t.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
  return t;
}

function renderSide() {
  const side = $("#side");
  side.replaceChildren();
  const pane = panes[active];
  if (!pane || !pane.rec) return;
  const { rec } = pane;
  const actions = document.createElement("div");
  actions.className = "actions";
  const dl = document.createElement("a");
  dl.href = rec.file;
  dl.download = "";
  dl.textContent = "download original";
  dl.dataset.testid = "download";
  const close = document.createElement("button");
  close.textContent = "close (Esc)";
  close.onclick = closeFrame;
  const cmp = document.createElement("button");
  cmp.textContent = panes.length > 1 ? "single pane" : "compare";
  cmp.dataset.testid = "compare";
  cmp.onclick = () => {
    if (panes.length > 1) { panes.pop().el.remove(); state.compare = null; writeUrl(); setActive(0); }
    else compareWith(pane.id);
  };
  const sel = document.createElement("select");
  sel.dataset.testid = "same-moment";
  sel.append(new Option("same moment in…", ""));
  for (const s of allSources) sel.append(new Option(s.source, s.source));
  sel.onchange = () => { if (sel.value) sameMoment(sel.value); };
  actions.append(dl, close, cmp, sel);
  side.append(actions);
  if (rec.error) {
    const err = document.createElement("p");
    err.className = "file-error";
    err.dataset.testid = "file-error";
    err.textContent = rec.error;
    side.append(err);
  }
  if (rec.window) side.append(windowControls(pane));
  const h = (t) => { const e = document.createElement("h3"); e.textContent = t; return e; };
  side.append(h("record"), table(flatten(rec.record), "record"));
  side.append(h("exif"), Object.keys(rec.exif).length ? table(flatten(rec.exif), "exif") : document.createTextNode("none"));
  const hint = document.createElement("p");
  hint.textContent = "← → step through the source · wheel zoom · drag pan · double-click fit · click a pane to make it active";
  side.append(hint);
}

function windowControls(pane) {
  const w = pane.rec.window;
  const box = document.createElement("div");
  box.className = "wl";
  box.dataset.testid = "window";
  const step = (w.max - w.min) / 1000 || 1;
  let timer = null;
  const mk = (name) => {
    const lab = document.createElement("label");
    const input = document.createElement("input");
    input.type = "range";
    input.min = w.min; input.max = w.max; input.step = step;
    input.value = pane[name];
    input.name = name;
    const val = document.createElement("span");
    val.textContent = ` ${name} ${(+pane[name]).toPrecision(5)}`;
    input.oninput = () => {
      pane[name] = +input.value;
      val.textContent = ` ${name} ${(+input.value).toPrecision(5)}`;
      clearTimeout(timer);
      timer = setTimeout(() => { pane.img.src = displayUrl(pane); }, 120);
    };
    lab.append(`window ${name}`, input, val);
    return lab;
  };
  box.append(mk("lo"), mk("hi"));
  return box;
}

addEventListener("keydown", (e) => {
  if ($("#frame").hidden || e.target.tagName === "INPUT") return;
  const pane = panes[active];
  if (e.key === "Escape") closeFrame();
  else if ((e.key === "ArrowRight" || e.key === "ArrowLeft") && pane?.rec) {
    // presses queue up: each step starts from the frame the previous one reached
    const dir = e.key === "ArrowRight" ? "next" : "prev", i = active;
    pane.nav = (pane.nav || Promise.resolve()).then(() => {
      const id = pane.rec.neighbours[dir];
      return id ? loadPane(i, id) : null;
    }).catch(showError);
    e.preventDefault();
  } else if (e.key === "Tab" && panes.length > 1) { setActive((active + 1) % panes.length); e.preventDefault(); }
});

// -- start and follow -----------------------------------------------------------------------
async function loadSources() {
  const s = await api("/api/summary");
  $("#run").textContent = s.run;
  const before = allSources.map((x) => `${x.source}:${x.frames}`).join();
  allSources = s.sources.filter((x) => x.frames > 0);
  if (allSources.map((x) => `${x.source}:${x.frames}`).join() !== before) renderSources();
}

async function poll() {
  try {
    await refreshCount();
    if (timelineDue && performance.now() - timelineAt > 2000) { await loadSources(); await loadTimeline(); }
  } catch (e) { showError(e); }
  setTimeout(poll, loading ? 250 : 500);
}

readUrl();
syncForm();
// the sources and the first count in parallel: the grid asks for its first page at once
Promise.all([loadSources(), refreshCount()]).then(() => {
  renderSources();
  loadTimeline();
  if (state.frame) openFrame(state.frame, state.compare);
  poll();
}).catch(showError);
