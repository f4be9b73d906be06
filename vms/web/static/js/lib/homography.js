// Ground (metres) <-> normalised image homography for the mask editor's overlay, fitted by
// least squares like masking.plan.calibration_homography. The server's fit is the one that
// counts (the preview and the saved plan use it); this one only draws and places points.

function solve(a, b) {
  // Gaussian elimination with partial pivoting; null when singular.
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]]);
  for (let col = 0; col < n; col += 1) {
    let pivot = col;
    for (let r = col + 1; r < n; r += 1) if (Math.abs(m[r][col]) > Math.abs(m[pivot][col])) pivot = r;
    if (Math.abs(m[pivot][col]) < 1e-12) return null;
    [m[col], m[pivot]] = [m[pivot], m[col]];
    for (let r = 0; r < n; r += 1) {
      if (r === col) continue;
      const f = m[r][col] / m[col][col];
      for (let c = col; c <= n; c += 1) m[r][c] -= f * m[col][c];
    }
  }
  return m.map((row, i) => row[n] / row[i]);
}

function mul(a, b) {
  return a.map((row) => b[0].map((_, j) => row.reduce((s, v, k) => s + v * b[k][j], 0)));
}

/** 3x3 H with image ~ H * [X, Y, 1], from >= 4 {image:[u,v], ground:[X,Y]}; null if it fails. */
export function fit(points) {
  if (points.length < 4) return null;
  const n = points.length;
  const cx = points.reduce((s, p) => s + p.ground[0], 0) / n;
  const cy = points.reduce((s, p) => s + p.ground[1], 0) / n;
  const spread = points.reduce((s, p) => s + Math.hypot(p.ground[0] - cx, p.ground[1] - cy), 0) / n;
  if (spread < 1e-9) return null;
  const k = Math.SQRT2 / spread; // Hartley normalisation keeps the normal equations well-posed
  const ata = Array.from({ length: 8 }, () => new Array(8).fill(0));
  const atb = new Array(8).fill(0);
  const add = (row, rhs) => {
    for (let i = 0; i < 8; i += 1) {
      atb[i] += row[i] * rhs;
      for (let j = 0; j < 8; j += 1) ata[i][j] += row[i] * row[j];
    }
  };
  for (const p of points) {
    const x = k * (p.ground[0] - cx);
    const y = k * (p.ground[1] - cy);
    const [u, v] = p.image;
    add([x, y, 1, 0, 0, 0, -u * x, -u * y], u);
    add([0, 0, 0, x, y, 1, -v * x, -v * y], v);
  }
  const h = solve(ata, atb);
  if (!h || !h.every(Number.isFinite)) return null;
  const hn = [[h[0], h[1], h[2]], [h[3], h[4], h[5]], [h[6], h[7], 1]];
  let hm = mul(hn, [[k, 0, -k * cx], [0, k, -k * cy], [0, 0, 1]]);
  // Visible ground has w > 0 (as on the server): flip the sign if the fit came out negative.
  const ws = points.map((p) => hm[2][0] * p.ground[0] + hm[2][1] * p.ground[1] + hm[2][2]);
  if (ws.every((w) => w < 0)) hm = hm.map((row) => row.map((v) => -v));
  else if (ws.some((w) => w <= 0)) return null;
  return hm;
}

/** Ground point -> normalised image point, or null behind the camera. */
export function project(hm, [x, y]) {
  const w = hm[2][0] * x + hm[2][1] * y + hm[2][2];
  if (w <= 1e-9) return null;
  return [(hm[0][0] * x + hm[0][1] * y + hm[0][2]) / w, (hm[1][0] * x + hm[1][1] * y + hm[1][2]) / w];
}

export function invert(m) {
  const [[a, b, c], [d, e, f], [g, h, i]] = m;
  const A = e * i - f * h;
  const B = -(d * i - f * g);
  const C = d * h - e * g;
  const det = a * A + b * B + c * C;
  if (Math.abs(det) < 1e-15) return null;
  return [
    [A / det, -(b * i - c * h) / det, (b * f - c * e) / det],
    [B / det, (a * i - c * g) / det, -(a * f - c * d) / det],
    [C / det, -(a * h - b * g) / det, (a * e - b * d) / det],
  ];
}

/** Normalised image point -> ground point (metres), via the inverse homography. */
export function unproject(hm, [u, v]) {
  const inv = invert(hm);
  if (!inv) return null;
  const w = inv[2][0] * u + inv[2][1] * v + inv[2][2];
  if (Math.abs(w) < 1e-12) return null;
  return [(inv[0][0] * u + inv[0][1] * v + inv[0][2]) / w, (inv[1][0] * u + inv[1][1] * v + inv[1][2]) / w];
}

/** The concrete side of a strip, "auto" resolved from the calibration as the server does. */
export function resolveSide(side, facade, calibration) {
  if (side !== "auto") return side;
  let votes = 0;
  for (const cp of calibration) {
    const [gx, gy] = cp.ground;
    let best = Infinity;
    let sign = 0;
    for (let i = 0; i + 1 < facade.length; i += 1) {
      const [ax, ay] = facade[i];
      const [bx, by] = facade[i + 1];
      const abx = bx - ax;
      const aby = by - ay;
      const tt = Math.max(0, Math.min(1, ((gx - ax) * abx + (gy - ay) * aby) / (abx * abx + aby * aby)));
      const d = Math.hypot(gx - (ax + tt * abx), gy - (ay + tt * aby));
      if (d < best) {
        best = d;
        sign = abx * (gy - ay) - aby * (gx - ax);
      }
    }
    if (Math.abs(sign) > 1e-9) votes += sign > 0 ? 1 : -1;
  }
  if (votes === 0) return null;
  return votes > 0 ? "left" : "right";
}

/** Ground polygons (one per facade segment and side) covering the strip, for drawing. */
export function stripPolygons(facade, width, side) {
  const out = [];
  const sides = side === "both" ? [1, -1] : [side === "left" ? 1 : -1];
  for (let i = 0; i + 1 < facade.length; i += 1) {
    const [ax, ay] = facade[i];
    const [bx, by] = facade[i + 1];
    const len = Math.hypot(bx - ax, by - ay);
    if (len < 1e-9) continue;
    const nx = -(by - ay) / len;
    const ny = (bx - ax) / len;
    for (const s of sides) {
      const ox = s * width * nx;
      const oy = s * width * ny;
      out.push([[ax, ay], [bx, by], [bx + ox, by + oy], [ax + ox, ay + oy]]);
    }
  }
  return out;
}

/** Points along a closed ground polygon's edges (so a projected edge can bend). */
export function densify(poly, steps = 24) {
  const out = [];
  for (let i = 0; i < poly.length; i += 1) {
    const [ax, ay] = poly[i];
    const [bx, by] = poly[(i + 1) % poly.length];
    for (let s = 0; s < steps; s += 1) out.push([ax + ((bx - ax) * s) / steps, ay + ((by - ay) * s) / steps]);
  }
  return out;
}
