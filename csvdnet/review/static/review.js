// csvdnet review: keyboard-first review of one predict folder. No library, no other host.
"use strict";

const COLOURS = {wmh: "#ffd400", epvs: "#39ff14", cmb: "#ff2a2a", lacune: "#00e5ff",
                 rssi: "#ff7f00"};
const OVERLAY_BITS = [["wmh", [255, 212, 0]], ["rssi", [255, 127, 0]], ["lacune", [0, 229, 255]]];
const ADD_KEYS = {c: "cmb", v: "epvs", l: "lacune", i: "rssi", w: "wmh"};
const DECIDE_KEYS = {a: "accept", r: "reject", x: "reject", u: "unsure"};
const CROP_MM = 40;

const S = {subjects: [], subject: null, volumes: {}, current: 0, slice: 0, seq: null,
           overlay: true, addTask: null, busy: false};
window.__review = {roundTrips: [], ready: []};  // timings the browser test reads

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, text = "") => {
  const node = document.createElement(tag);
  Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
  if (text !== "") node.textContent = text;
  return node;
};

async function api(path, body) {
  const init = body === undefined ? {} :
    {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, init);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// ---- subject list --------------------------------------------------------------------------
async function showList() {
  const data = await api("/api/subjects");
  S.subjects = data.subjects;
  $("#who").textContent = "reviewer " + data.reviewer;
  const body = $("#subjects tbody");
  body.replaceChildren();
  for (const s of S.subjects) {
    const row = el("tr", {"data-subject": s.id});
    row.append(el("td", {}, s.id),
      el("td", {}, "").appendChild(el("span", {class: "status " + s.status.replace(" ", "-")},
                                        s.status)).parentNode,
      el("td", {}, `${s.decided} / ${s.findings}`),
      el("td", {}, fmt(s.model_totals["staals-2014"])),
      el("td", {}, fmt(s.model_totals["caa-svd-2016"])));
    row.onclick = () => { location.hash = "#/subject/" + s.id; };
    body.append(row);
  }
  $("#list-view").hidden = false;
  $("#subject-view").hidden = true;
  S.subject = null;
  document.body.dataset.view = "list";
}

const fmt = (v) => (v === null || v === undefined ? "—" : String(v));

// ---- one subject ---------------------------------------------------------------------------
async function openSubject(id) {
  const start = performance.now();
  document.body.dataset.view = "loading";
  const detail = await api("/api/subject/" + encodeURIComponent(id));
  const names = [...detail.sequences, "overlay"];
  const buffers = await Promise.all(names.map((n) =>
    fetch(`/api/subject/${encodeURIComponent(id)}/volume/${n}`).then((r) => r.arrayBuffer())));
  S.volumes = {};
  names.forEach((n, i) => { S.volumes[n] = new Uint8Array(buffers[i]); });
  S.subject = detail;
  if (!S.subjects.length) S.subjects = (await api("/api/subjects")).subjects;
  const firstOpen = detail.findings.findIndex((f) => !decisionOf(f.id));
  S.current = Math.max(0, firstOpen);
  S.seq = detail.sequences[0];
  S.addTask = null;
  $("#list-view").hidden = true;
  $("#subject-view").hidden = false;
  $("#sid").textContent = id;
  focusFinding();
  renderTotals();
  renderGrades();
  const ms = performance.now() - start;
  window.__review.ready.push({subject: id, ms});
  document.body.dataset.view = "subject";
  say(`${detail.findings.length} findings · ready in ${ms.toFixed(0)} ms`);
}

const decisionOf = (id) => {
  const d = S.subject.review && S.subject.review.decisions[id];
  return d ? d.decision : null;
};

function allFindings() {
  const added = (S.subject.review ? S.subject.review.added : []).map((a) => ({
    id: a.id, task: a.task, world: a.world, voxel: worldToVoxel(a.world), confidence: null,
    region: a.region, side: a.side, volume_mm3: null, added: true}));
  return [...S.subject.findings, ...added];
}

function worldToVoxel(w) {
  // inverse of a 4x4 affine applied to a point (3x3 solve by Cramer's rule)
  const A = S.subject.affine;
  const m = [0, 1, 2].map((r) => [A[r][0], A[r][1], A[r][2]]);
  const b = [w[0] - A[0][3], w[1] - A[1][3], w[2] - A[2][3]];
  const det = (M) => M[0][0] * (M[1][1] * M[2][2] - M[1][2] * M[2][1])
    - M[0][1] * (M[1][0] * M[2][2] - M[1][2] * M[2][0])
    + M[0][2] * (M[1][0] * M[2][1] - M[1][1] * M[2][0]);
  const d = det(m);
  return [0, 1, 2].map((c) => det(m.map((row, r) => row.map((v, k) => (k === c ? b[r] : v)))) / d);
}

function voxelToWorld(v) {
  const A = S.subject.affine;
  return [0, 1, 2].map((r) => A[r][0] * v[0] + A[r][1] * v[1] + A[r][2] * v[2] + A[r][3]);
}

function focusFinding() {
  const list = allFindings();
  if (list.length) {
    S.current = Math.min(Math.max(S.current, 0), list.length - 1);
    S.slice = Math.round(list[S.current].voxel[S.subject.view.slice]);
    const best = S.subject.best[list[S.current].task];
    if (best && best.length) S.seq = best[0];
  } else {
    S.slice = Math.floor(S.subject.shape[S.subject.view.slice] / 2);
  }
  renderCard();
  renderFindings();
  drawViewer();
}

function renderCard() {
  const card = $("#card");
  card.replaceChildren();
  const list = allFindings();
  if (!list.length) {
    card.append(el("div", {}, "No findings: press a to confirm the subject has none."));
    return;
  }
  const f = list[S.current];
  const decision = decisionOf(f.id);
  card.dataset.finding = f.id;
  const head = el("div");
  head.append(el("b", {}, `${S.current + 1} / ${list.length} · ${f.task.toUpperCase()} ${f.id}`),
    el("span", {}, ` · confidence ${f.confidence === null ? "added" : f.confidence.toFixed(2)}` +
      ` · ${f.region} · side ${f.side}` +
      (f.volume_mm3 ? ` · ${f.volume_mm3.toFixed(0)} mm³` : "")),
    el("span", {class: "decision-" + (decision || "none")}, decision ? ` · ${decision}` : " · undecided"));
  const crops = el("div", {class: "crops"});
  for (const seq of S.subject.best[f.task] || []) {
    const figure = el("figure");
    const canvas = el("canvas", {width: 170, height: 170});
    drawCrop(canvas, seq, f);
    figure.append(canvas, el("figcaption", {}, seq));
    crops.append(figure);
  }
  card.append(head, crops);
}

function renderFindings() {
  const ol = $("#findings");
  ol.replaceChildren();
  allFindings().forEach((f, n) => {
    const d = decisionOf(f.id);
    const li = el("li", {class: (n === S.current ? "current " : "") + "decision-" + (d || "none"),
                         "data-finding": f.id},
      `${f.task} ${f.id} · ${f.region} ${f.side}` +
      (f.confidence === null ? " · added" : ` · ${f.confidence.toFixed(2)}`) +
      ` · ${d || "—"}`);
    li.onclick = () => { S.current = n; focusFinding(); };
    ol.append(li);
  });
  const current = ol.children[S.current];
  if (current) current.scrollIntoView({block: "nearest"});
  $("#status").textContent = S.subject.status;
  $("#status").className = "status " + S.subject.status.replace(" ", "-");
}

function renderTotals() {
  const t = $("#totals");
  const model = S.subject.model, rev = S.subject.reviewed;
  const rows = [["Staals total (0-4)", model.totals["staals-2014"], rev.totals["staals-2014"]],
    ["CAA-SVD total (0-6)", model.totals["caa-svd-2016"], rev.totals["caa-svd-2016"]],
    ["Fazekas PV", model.ratings.fazekas_pv, rev.ratings.fazekas_pv],
    ["Fazekas deep", model.ratings.fazekas_deep, rev.ratings.fazekas_deep],
    ["EPVS BG grade", model.ratings.epvs_bg_grade, rev.ratings.epvs_bg_grade],
    ["CMB", model.ratings.cmb_count, rev.ratings.cmb_count],
    ["lacunes", model.ratings.lacune_count, rev.ratings.lacune_count],
    ["RSSI", model.ratings.rssi_count, rev.ratings.rssi_count]];
  t.replaceChildren();
  const head = el("tr");
  head.append(el("th", {}, ""), el("th", {}, "model"), el("th", {}, "reviewed"));
  t.append(head);
  for (const [name, a, b] of rows) {
    const tr = el("tr", {"data-total": name});
    tr.append(el("td", {}, name), el("td", {}, fmt(a)),
              el("td", {class: a === b ? "" : "changed"}, fmt(b)));
    t.append(tr);
  }
}

function renderGrades() {
  const box = $("#grades");
  box.replaceChildren();
  const set = (S.subject.review && S.subject.review.grades) || {};
  for (const [name, [lo, hi]] of Object.entries(S.subject.grades)) {
    const select = el("select", {"data-grade": name});
    select.append(el("option", {value: ""}, "as measured"));
    for (let g = lo; g <= hi; g++) select.append(el("option", {value: String(g)}, String(g)));
    select.value = name in set ? String(set[name]) : "";
    select.onchange = async () => {
      await change({grade: name, value: select.value === "" ? null : Number(select.value)});
      select.blur();
    };
    const label = el("label", {}, name.replace(/_/g, " ") + " ");
    label.append(select);
    box.append(label);
  }
}

function say(text) { $("#message").textContent = text; }

async function change(what) {
  const answer = await api(`/api/subject/${encodeURIComponent(S.subject.id)}/change`, what);
  S.subject.review = answer.review;
  S.subject.status = answer.status;
  return answer;
}

async function refreshRating() {
  const id = S.subject.id;
  const rating = await api(`/api/subject/${encodeURIComponent(id)}/rating`);
  if (S.subject && S.subject.id === id) { S.subject.reviewed = rating; renderTotals(); }
}

async function decide(decision, t0) {
  const list = allFindings();
  if (S.busy) return;
  S.busy = true;
  try {
    if (!list.length) await change({confirm: true});
    else await change({decide: list[S.current].id, decision});
    if (S.current < list.length - 1) S.current += 1;
    focusFinding();
    window.__review.roundTrips.push(performance.now() - t0);
    say("saved");
  } catch (err) { say("NOT SAVED: " + err.message); } finally { S.busy = false; }
  refreshRating();
}

// ---- the slice viewer ----------------------------------------------------------------------
function planeSize() {
  const v = S.subject.view, shape = S.subject.shape;
  return [shape[v.col], shape[v.row]];
}

function screenToVoxel(x, y, k) {
  const v = S.subject.view, [nc, nr] = planeSize();
  const voxel = [0, 0, 0];
  voxel[v.col] = v.col_flip ? nc - 1 - x : x;
  voxel[v.row] = v.row_flip ? nr - 1 - y : y;
  voxel[v.slice] = k;
  return voxel;
}

function voxelToScreen(voxel) {
  const v = S.subject.view, [nc, nr] = planeSize();
  return [v.col_flip ? nc - 1 - voxel[v.col] : voxel[v.col],
          v.row_flip ? nr - 1 - voxel[v.row] : voxel[v.row]];
}

function sliceCanvas(seq, k, overlay) {
  const [nc, nr] = planeSize();
  const shape = S.subject.shape, volume = S.volumes[seq], bits = S.volumes.overlay;
  const canvas = document.createElement("canvas");
  canvas.width = nc; canvas.height = nr;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(nc, nr);
  const stride = [shape[1] * shape[2], shape[2], 1];
  for (let y = 0; y < nr; y++) {
    for (let x = 0; x < nc; x++) {
      const vox = screenToVoxel(x, y, k);
      const index = vox[0] * stride[0] + vox[1] * stride[1] + vox[2] * stride[2];
      let r = volume[index], g = r, b = r;
      if (overlay && bits[index]) {
        for (const [n, [task, colour]] of OVERLAY_BITS.entries()) {
          if (bits[index] & (1 << n)) {
            r = (r + colour[0]) / 2; g = (g + colour[1]) / 2; b = (b + colour[2]) / 2;
            void task;
          }
        }
      }
      const o = 4 * (y * nc + x);
      image.data[o] = r; image.data[o + 1] = g; image.data[o + 2] = b; image.data[o + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

function pixelScale() {
  const v = S.subject.view;
  return [v.spacing[v.col], v.spacing[v.row]];
}

function drawViewer() {
  const canvas = $("#viewer"), ctx = canvas.getContext("2d");
  const [nc, nr] = planeSize(), [sx, sy] = pixelScale();
  const scale = Math.min(512 / (nc * sx), 512 / (nr * sy));
  canvas.width = Math.round(nc * sx * scale); canvas.height = Math.round(nr * sy * scale);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(sliceCanvas(S.seq, S.slice, S.overlay), 0, 0, canvas.width, canvas.height);
  const fx = canvas.width / nc, fy = canvas.height / nr;
  const list = allFindings();
  list.forEach((f, n) => {
    if (Math.abs(f.voxel[S.subject.view.slice] - S.slice) > 0.5 + 1e-3) return;
    const [x, y] = voxelToScreen(f.voxel);
    const d = decisionOf(f.id);
    ctx.strokeStyle = d === "reject" ? "#888" : COLOURS[f.task];
    ctx.lineWidth = n === S.current ? 3 : 1.5;
    ctx.setLineDash(d === "reject" ? [3, 3] : []);
    ctx.beginPath();
    ctx.arc((x + 0.5) * fx, (y + 0.5) * fy, n === S.current ? 12 : 8, 0, 2 * Math.PI);
    ctx.stroke();
  });
  ctx.setLineDash([]);
  $("#seq").textContent = S.seq;
  $("#slice").textContent = `${S.slice + 1} / ${S.subject.shape[S.subject.view.slice]}`;
  $("#mode").textContent = S.addTask ? `click to add a ${S.addTask.toUpperCase()} (Esc cancels)` : "";
}

function drawCrop(canvas, seq, f) {
  const ctx = canvas.getContext("2d");
  const k = Math.round(f.voxel[S.subject.view.slice]);
  const full = sliceCanvas(seq, k, false);
  const [sx, sy] = pixelScale();
  const [x, y] = voxelToScreen(f.voxel);
  const hw = CROP_MM / 2 / sx, hh = CROP_MM / 2 / sy;
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(full, x + 0.5 - hw, y + 0.5 - hh, 2 * hw, 2 * hh, 0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = COLOURS[f.task];
  ctx.lineWidth = 2;
  ctx.beginPath();
  const radius = Math.max(8, f.volume_mm3 ? Math.cbrt(f.volume_mm3) * canvas.width / CROP_MM : 8);
  ctx.arc(canvas.width / 2, canvas.height / 2, radius, 0, 2 * Math.PI);
  ctx.stroke();
}

$("#viewer").addEventListener("click", async (event) => {
  if (!S.addTask || S.busy) return;
  const canvas = $("#viewer"), [nc, nr] = planeSize();
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) / rect.width * nc - 0.5;
  const y = (event.clientY - rect.top) / rect.height * nr - 0.5;
  const task = S.addTask;
  S.addTask = null;
  S.busy = true;
  try {
    const answer = await change({add: task, world: voxelToWorld(screenToVoxel(x, y, S.slice))});
    S.current = allFindings().length - 1;
    focusFinding();
    say(`added ${answer.review.added[answer.review.added.length - 1].id}`);
  } catch (err) { say("NOT SAVED: " + err.message); } finally { S.busy = false; }
  refreshRating();
});

$("#viewer").addEventListener("wheel", (event) => {
  event.preventDefault();
  moveSlice(event.deltaY > 0 ? -1 : 1);
}, {passive: false});

function moveSlice(step) {
  const n = S.subject.shape[S.subject.view.slice];
  S.slice = Math.min(n - 1, Math.max(0, S.slice + step));
  drawViewer();
}

function moveSubject(step) {
  const ids = S.subjects.map((s) => s.id);
  const next = ids[ids.indexOf(S.subject.id) + step];
  if (next) location.hash = "#/subject/" + next;
}

document.addEventListener("keydown", (event) => {
  if (!S.subject || event.target.tagName === "SELECT" || event.ctrlKey || event.metaKey) return;
  const key = event.key, t0 = performance.now();
  if (key in DECIDE_KEYS) decide(DECIDE_KEYS[key], t0);
  else if (key === "j" || key === "ArrowRight") { S.current += 1; focusFinding(); }
  else if (key === "k" || key === "ArrowLeft") { S.current -= 1; focusFinding(); }
  else if (key === "ArrowUp") moveSlice(1);
  else if (key === "ArrowDown") moveSlice(-1);
  else if (key === "s") {
    const seqs = S.subject.sequences;
    S.seq = seqs[(seqs.indexOf(S.seq) + 1) % seqs.length]; drawViewer();
  } else if (key === "o") { S.overlay = !S.overlay; drawViewer(); }
  else if (key in ADD_KEYS) { S.addTask = ADD_KEYS[key]; drawViewer(); }
  else if (key === "]") moveSubject(1);
  else if (key === "[") moveSubject(-1);
  else if (key === "Escape") {
    if (S.addTask) { S.addTask = null; drawViewer(); } else location.hash = "#/";
  } else return;
  event.preventDefault();
});

function route() {
  const match = location.hash.match(/^#\/subject\/(.+)$/);
  (match ? openSubject(decodeURIComponent(match[1])) : showList())
    .catch((err) => { say("error: " + err.message); document.body.dataset.view = "error"; });
}
window.addEventListener("hashchange", route);
route();
