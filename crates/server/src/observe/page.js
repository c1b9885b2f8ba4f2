// raftkv live cluster page: polls /api/cluster once a second and draws the
// nodes, the leader, the leader history and writes/s and reads/s over the
// last five minutes. No framework, no build step.
"use strict";

const POLL_MS = 1000;
const WINDOW = 300; // samples kept for the charts (5 minutes at 1/s)
const rates = { writes: [], reads: [] };
let prev = null; // { time_ms, per node id: { writes, reads } }

const SVG_NS = "http://www.w3.org/2000/svg";

function el(tag, attrs, text, ns) {
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString();
}

function rate(view, field) {
  // Sum of per-node positive deltas: a node that restarted (counter back to
  // zero) or went down contributes nothing for that sample.
  if (!prev) return null;
  const dt = (view.time_ms - prev.time_ms) / 1000;
  if (dt <= 0) return null;
  let sum = 0;
  for (const n of view.nodes) {
    const p = prev.nodes[n.id];
    if (n.up && p && n[field] >= p[field]) sum += n[field] - p[field];
  }
  return sum / dt;
}

function draw(svgId, series) {
  const svg = document.getElementById(svgId);
  const w = +svg.getAttribute("width"), h = +svg.getAttribute("height");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const max = Math.max(1, ...series);
  const pts = series.map((v, i) =>
    `${(w * (i + WINDOW - series.length)) / (WINDOW - 1)},${h - 4 - ((h - 12) * v) / max}`);
  if (pts.length > 1) {
    svg.appendChild(el("polyline", { points: pts.join(" "), fill: "none", stroke: "#2e6fd8", "stroke-width": "1.5" }, undefined, SVG_NS));
  }
  svg.appendChild(el("text", { x: 4, y: 12, "font-size": 10, fill: "#667" }, `max ${max.toFixed(0)}/s`, SVG_NS));
}

function render(view) {
  document.getElementById("served-by").textContent = view.served_by;
  document.getElementById("leader").textContent = view.leader === null ? "none" : "node " + view.leader;
  const leader = view.nodes.find((n) => n.id === view.leader);
  document.getElementById("term").textContent = leader ? leader.term : Math.max(0, ...view.nodes.map((n) => n.term));
  document.getElementById("updated").textContent = fmtTime(view.time_ms);

  const body = document.querySelector("#nodes tbody");
  while (body.firstChild) body.removeChild(body.firstChild);
  const commit = leader ? leader.commit : Math.max(0, ...view.nodes.map((n) => n.commit));
  for (const n of view.nodes) {
    const tr = el("tr", { class: "node " + (n.up ? n.role : "down"), "data-id": n.id, "data-role": n.role });
    tr.appendChild(el("td", {}, "node " + n.id));
    tr.appendChild(el("td", { class: "addr" }, n.addr));
    const role = el("td", { class: "role" });
    role.appendChild(el("span", { class: "badge b-" + n.role }, n.up ? n.role : "down"));
    if (!n.up && n.error) role.appendChild(el("small", {}, " " + n.error));
    tr.appendChild(role);
    for (const v of [n.term, n.commit, n.applied, n.last_index, n.snapshot_index]) {
      tr.appendChild(el("td", {}, n.up ? String(v) : "–"));
    }
    tr.appendChild(el("td", { class: "lag" }, n.up ? String(Math.max(0, commit - n.applied)) : "–"));
    tr.appendChild(el("td", { class: "peer-auth" }, n.up ? n.peer_auth : "–"));
    body.appendChild(tr);
  }

  const hist = document.getElementById("history");
  while (hist.firstChild) hist.removeChild(hist.firstChild);
  for (const c of view.leader_history.slice().reverse()) {
    hist.appendChild(el("li", {}, `${fmtTime(c.time_ms)}: term ${c.term}, ` +
      (c.leader === null ? "no leader" : `node ${c.leader} leads`)));
  }

  for (const field of ["writes", "reads"]) {
    const r = rate(view, field + "_total");
    if (r !== null) {
      rates[field].push(r);
      if (rates[field].length > WINDOW) rates[field].shift();
      document.getElementById(field + "-now").textContent = `(${r.toFixed(1)} now)`;
    }
    draw(field + "-chart", rates[field]);
  }
  const nodes = {};
  for (const n of view.nodes) nodes[n.id] = n;
  prev = { time_ms: view.time_ms, nodes };
}

async function poll() {
  try {
    const r = await fetch("api/cluster", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "(cannot reach this node: " + e.message + ")";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
