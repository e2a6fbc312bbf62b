// csvdnet review: keyboard-first review of one predict folder. No library, no other host.
"use strict";

const ADD_KEYS = {c: "cmb", v: "epvs", l: "lacune", i: "rssi", w: "wmh"};
const DECIDE_KEYS = {a: "accept", r: "reject", x: "reject", u: "unsure"};

const S = {subjects: [], subject: null, volumes: {}, current: 0, slice: 0, seq: null,
           overlay: true, addTask: null, addRadius: null, busy: false};
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
  detail.reviewed = null;  // measured after the page is up (refreshRating)
  S.subject = detail;
  S.volumes = {};
  const load = (n) => fetch(`/api/subject/${encodeURIComponent(id)}/volume/${n}`)
    .then((r) => (r.ok ? r.arrayBuffer() : Promise.reject(new Error(`${n}: ${r.status}`))))
    .then((b) => { if (S.subject === detail) S.volumes[n] = new Uint8Array(b); });
  const firstOpen = detail.findings.findIndex((f) => !decisionOf(f.id));
  S.current = Math.max(0, firstOpen);
  const first = detail.findings[S.current];
  // What the first card and the viewer show first; the other sequences stream in after.
  const needed = new Set(["overlay",
    ...(first ? detail.best[first.task] : detail.sequences.slice(0, 1))]);
  await Promise.all([...needed].map(load));
  if (!S.subjects.length) S.subjects = (await api("/api/subjects")).subjects;
  S.seq = null;
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
  refreshRating();
  const rest = detail.sequences.filter((n) => !needed.has(n));
  await Promise.all(rest.map(load));
  if (S.subject === detail) { renderCard(); drawViewer(); }
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

function focusFinding() {
  const list = allFindings();
  if (list.length) {
    S.current = Math.min(Math.max(S.current, 0), list.length - 1);
    S.slice = Math.round(list[S.current].voxel[S.subject.view.slice]);
    const best = S.subject.best[list[S.current].task].filter((n) => S.volumes[n]);
    if (best.length) S.seq = best[0];
  } else {
    S.slice = Math.floor(S.subject.shape[S.subject.view.slice] / 2);
  }
  if (!S.volumes[S.seq]) S.seq = S.subject.sequences.find((n) => S.volumes[n]);
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
    el("span", {class: "decision-" + (decision || "none")},
       decision ? ` · ${decision}` : " · undecided"));
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
  if (current) {  // keep it in view inside the list without scrolling the page
    if (current.offsetTop < ol.scrollTop) ol.scrollTop = current.offsetTop;
    const bottom = current.offsetTop + current.offsetHeight - ol.clientHeight;
    if (bottom > ol.scrollTop) ol.scrollTop = bottom;
  }
  $("#status").textContent = S.subject.status;
  $("#status").className = "status " + S.subject.status.replace(" ", "-");
}

function renderTotals() {
  const t = $("#totals");
  const model = S.subject.model;
  const rev = S.subject.reviewed || {totals: {}, ratings: {}};  // null: still being measured
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
              el("td", {class: a === b || !S.subject.reviewed ? "" : "changed"},
                 S.subject.reviewed ? fmt(b) : "…"));
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
      try {
        await change({grade: name, value: select.value === "" ? null : Number(select.value)});
        say("saved");
      } catch (err) { say("NOT SAVED: " + err.message); }
      select.blur();
      refreshRating();
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

let ratingBusy = false, ratingAgain = false;
async function refreshRating() {
  // One request at a time; changes made meanwhile are measured by one more request after it.
  if (ratingBusy) { ratingAgain = true; return; }
  ratingBusy = true;
  try {
    do {
      ratingAgain = false;
      const id = S.subject.id;
      const rating = await api(`/api/subject/${encodeURIComponent(id)}/rating`);
      if (S.subject && S.subject.id === id) { S.subject.reviewed = rating; renderTotals(); }
    } while (ratingAgain && S.subject);
  } catch (err) { say("totals not recomputed: " + err.message); } finally { ratingBusy = false; }
}

const MASK_TASKS = ["wmh", "rssi", "lacune"];
let overlayBusy = false, overlayAgain = false;
async function refreshOverlay() {
  // The overlay shows the reviewed masks: fetched again after a change to one (one at a time).
  if (overlayBusy) { overlayAgain = true; return; }
  overlayBusy = true;
  try {
    do {
      overlayAgain = false;
      const subject = S.subject;
      const answer = await fetch(`/api/subject/${encodeURIComponent(subject.id)}/volume/overlay`);
      if (!answer.ok) throw new Error(answer.statusText);
      const bits = new Uint8Array(await answer.arrayBuffer());
      if (S.subject === subject) { S.volumes.overlay = bits; sliceCache.clear(); drawViewer(); }
    } while (overlayAgain && S.subject);
  } catch (err) { say("overlay not redrawn: " + err.message); } finally { overlayBusy = false; }
}

async function decide(decision, t0) {
  const list = allFindings();
  if (S.busy) return;
  S.busy = true;
  try {
    const f = list[S.current];
    const before = f ? decisionOf(f.id) : null;
    if (!f) await change({confirm: true});
    else await change({decide: f.id, decision});
    // only a reject (or taking one back) changes a mask
    const masked = f && MASK_TASKS.includes(f.task)
      && (before === "reject") !== (decision === "reject");
    if (S.current < list.length - 1) S.current += 1;
    focusFinding();
    window.__review.roundTrips.push(performance.now() - t0);
    say("saved");
    if (masked) refreshOverlay();
  } catch (err) { say("NOT SAVED: " + err.message); } finally { S.busy = false; }
  refreshRating();
}

// ---- the slice viewer ----------------------------------------------------------------------
$("#viewer").addEventListener("click", async (event) => {
  if (!S.addTask || S.busy) return;
  const canvas = $("#viewer"), [nc, nr] = planeSize();
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) / rect.width * nc - 0.5;
  const y = (event.clientY - rect.top) / rect.height * nr - 0.5;
  const task = S.addTask, radius = S.addRadius;
  S.addTask = null;
  S.busy = true;
  try {
    const world = voxelToWorld(screenToVoxel(x, y, S.slice));
    const answer = await change({add: task, world, radius_mm: radius});
    S.current = allFindings().length - 1;
    focusFinding();
    say(`added ${answer.review.added[answer.review.added.length - 1].id}`);
    if (MASK_TASKS.includes(task)) refreshOverlay();
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
    const seqs = S.subject.sequences.filter((n) => S.volumes[n]);
    S.seq = seqs[(seqs.indexOf(S.seq) + 1) % seqs.length]; drawViewer();
  } else if (key === "o") { S.overlay = !S.overlay; drawViewer(); }
  else if (key in ADD_KEYS) {
    S.addTask = ADD_KEYS[key];
    S.addRadius = S.subject.addable[S.addTask];  // null: a point
    drawViewer();
  } else if ((key === "+" || key === "-") && S.addRadius !== null && S.addTask) {
    // a ball's radius, 0.5 mm steps within what review.json takes (0.5-15 mm)
    S.addRadius = Math.min(15, Math.max(0.5, S.addRadius + (key === "+" ? 0.5 : -0.5)));
    drawViewer();
  }
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
