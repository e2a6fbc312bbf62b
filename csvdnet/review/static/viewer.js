// csvdnet review: the canvas slice viewer and the crops (drawn from uint8 volumes on the
// reference grid; the state S is review.js's).
"use strict";

const COLOURS = {wmh: "#ffd400", epvs: "#39ff14", cmb: "#ff2a2a", lacune: "#00e5ff",
                 rssi: "#ff7f00"};
const OVERLAY_BITS = [["wmh", [255, 212, 0]], ["rssi", [255, 127, 0]], ["lacune", [0, 229, 255]]];
const CROP_MM = 40;

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

const sliceCache = new Map();  // "seq/k/overlay" -> canvas, for the subject on screen

function sliceCanvas(seq, k, overlay) {
  const key = `${S.subject.id}/${seq}/${k}/${overlay}`;
  if (sliceCache.has(key)) return sliceCache.get(key);
  if (sliceCache.size > 64) sliceCache.clear();
  const [nc, nr] = planeSize(), v = S.subject.view;
  const shape = S.subject.shape, volume = S.volumes[seq], bits = S.volumes.overlay;
  const canvas = document.createElement("canvas");
  canvas.width = nc; canvas.height = nr;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(nc, nr), data = image.data;
  const stride = [shape[1] * shape[2], shape[2], 1];
  // index = k * slice stride + column and row terms; flips walk the axis backwards
  const dx = (v.col_flip ? -1 : 1) * stride[v.col], dy = (v.row_flip ? -1 : 1) * stride[v.row];
  const origin = k * stride[v.slice] + (v.col_flip ? (nc - 1) * stride[v.col] : 0)
    + (v.row_flip ? (nr - 1) * stride[v.row] : 0);
  for (let y = 0, o = 0; y < nr; y++) {
    let index = origin + y * dy;
    for (let x = 0; x < nc; x++, index += dx, o += 4) {
      let r = volume[index], g = r, b = r;
      const mark = overlay ? bits[index] : 0;
      if (mark) {
        for (let n = 0; n < OVERLAY_BITS.length; n++) {
          if (mark & (1 << n)) {
            const colour = OVERLAY_BITS[n][1];
            r = (r + colour[0]) / 2; g = (g + colour[1]) / 2; b = (b + colour[2]) / 2;
          }
        }
      }
      data[o] = r; data[o + 1] = g; data[o + 2] = b; data[o + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  sliceCache.set(key, canvas);
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
  $("#mode").textContent =
    !S.addTask ? "" : `click to add a ${S.addTask.toUpperCase()}` +
      (S.addRadius === null ? "" : ` ball of ${S.addRadius} mm radius (+ / - change it)`) +
      " (Esc cancels)";
}

function drawCrop(canvas, seq, f) {
  const ctx = canvas.getContext("2d");
  if (!S.volumes[seq]) {  // still loading: the card is drawn again when it arrives
    ctx.fillStyle = "#444";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    return;
  }
  const k = Math.round(f.voxel[S.subject.view.slice]);
  const full = sliceCanvas(seq, k, false);
  const [sx, sy] = pixelScale();
  const [x, y] = voxelToScreen(f.voxel);
  const hw = CROP_MM / 2 / sx, hh = CROP_MM / 2 / sy;
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(full, x + 0.5 - hw, y + 0.5 - hh, 2 * hw, 2 * hh,
                0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = COLOURS[f.task];
  ctx.lineWidth = 2;
  ctx.beginPath();
  const radius = Math.max(8, f.volume_mm3 ? Math.cbrt(f.volume_mm3) * canvas.width / CROP_MM : 8);
  ctx.arc(canvas.width / 2, canvas.height / 2, radius, 0, 2 * Math.PI);
  ctx.stroke();
}
