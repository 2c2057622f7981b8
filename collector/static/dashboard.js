// The telemetry dashboard: reads /v1/reports with a bearer token and draws each report as an SVG chart.
// No library, no CDN: a few small chart helpers below. The token comes from the URL fragment
// (#token=..., never sent to a server) or the login form, and is kept in sessionStorage for this tab.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "telemetry-report-token";
const W = 520, H = 220, PAD = { left: 44, right: 10, top: 10, bottom: 34 };
const COLORS = 10;
const OTHER = "(other)", OTHER_COLOR = 8;

let token = null;
let catalogue = null;

function $(id) { return document.getElementById(id); }

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  if (resp.status === 401) throw new AuthError();
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error ? body.error.message : `HTTP ${resp.status}`);
  return body;
}

class AuthError extends Error {
  constructor() { super("the token was refused (missing, wrong or revoked)"); }
}

// -- scales and axes ---------------------------------------------------------------------------

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function frame(svg, periods, maxY, unit) {
  const plotW = W - PAD.left - PAD.right, plotH = H - PAD.top - PAD.bottom;
  const x = (i) => PAD.left + (plotW * (i + 0.5)) / periods.length;
  const y = (v) => PAD.top + plotH - (plotH * v) / maxY;
  svg.appendChild(svgEl("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0) }));
  for (const t of [0, 0.5, 1]) {
    svg.appendChild(svgEl("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y(maxY * t), y2: y(maxY * t), "stroke-dasharray": "2 3" }));
    svg.appendChild(svgEl("text", { x: PAD.left - 4, y: y(maxY * t) + 3, "text-anchor": "end" }, formatNumber(maxY * t)));
  }
  const every = Math.max(1, Math.ceil(periods.length / 8));
  periods.forEach((p, i) => {
    if (i % every === 0) svg.appendChild(svgEl("text", { x: x(i), y: H - PAD.bottom + 14, "text-anchor": "middle" }, p.slice(2)));
  });
  svg.appendChild(svgEl("text", { x: PAD.left, y: H - 4 }, unit));
  return { x, y, band: plotW / periods.length };
}

function formatNumber(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(1)}`;
}

function newChart(name, label) {
  return svgEl("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, "data-report": name });
}

function title(node, text) { node.appendChild(svgEl("title", {}, text)); return node; }

// -- the three report shapes ---------------------------------------------------------------------

function countChart(report, body) {
  const svg = newChart(report.name, report.title);
  const periods = body.rows.map((r) => r.period);
  if (!periods.length) return svg;
  const k = body.suppression.min_group_size;
  const maxY = niceMax(Math.max(k, ...body.rows.map((r) => r.installs || 0)));
  const { x, y, band } = frame(svg, periods, maxY, report.unit);
  body.rows.forEach((r, i) => {
    const w = Math.max(1, band * 0.7);
    if (r.suppressed) {
      svg.appendChild(title(svgEl("rect", { class: "mark suppressed", x: x(i) - w / 2, y: y(k), width: w, height: y(0) - y(k) }),
        `${r.period}: fewer than ${k} installs (withheld)`));
    } else {
      svg.appendChild(title(svgEl("rect", { class: "mark fill-0", x: x(i) - w / 2, y: y(r.installs), width: w, height: y(0) - y(r.installs) }),
        `${r.period}: ${r.installs} installs`));
    }
  });
  return svg;
}

function stackedChart(report, rows, key) {
  const svg = newChart(report.name, `${report.title}${key ? " " + key : ""}`);
  const periods = [...new Set(rows.map((r) => r.period))].sort();
  const groups = [...new Set(rows.map((r) => r.group))].sort((a, b) => (a === OTHER) - (b === OTHER));
  const totals = periods.map((p) => rows.filter((r) => r.period === p).reduce((s, r) => s + r.installs, 0));
  if (!periods.length) return { svg, groups };
  const { x, y, band } = frame(svg, periods, niceMax(Math.max(...totals)), report.unit);
  periods.forEach((p, i) => {
    let base = 0;
    for (const r of rows.filter((row) => row.period === p)) {
      const w = Math.max(1, band * 0.7);
      const color = colorOf(groups, r.group);
      svg.appendChild(title(svgEl("rect", { class: `mark fill-${color}`, x: x(i) - w / 2, y: y(base + r.installs), width: w, height: y(base) - y(base + r.installs) }),
        `${p} ${r.group}: ${r.installs} installs (${r.share_pct}%)`));
      base += r.installs;
    }
  });
  return { svg, groups };
}

// "(other)" is always grey and last; the other groups take the remaining colours in order.
function colorOf(groups, group) {
  return group === OTHER ? OTHER_COLOR : groups.indexOf(group) % (COLORS - 1) + (groups.indexOf(group) % (COLORS - 1) >= OTHER_COLOR ? 1 : 0);
}

function legend(groups) {
  const box = el("div", { class: "legend" });
  groups.forEach((g) => box.appendChild(el("span", { class: `swatch-${colorOf(groups, g)}` }, g)));
  return box;
}

function statsChart(report, body) {
  const svg = newChart(report.name, report.title);
  const periods = body.rows.map((r) => r.period);
  if (!periods.length) return { svg, series: [] };
  const series = ["p50", "p90", "p99", "mean"];
  const maxY = niceMax(Math.max(1, ...body.rows.flatMap((r) => series.map((s) => r[s] || 0))));
  const { x, y, band } = frame(svg, periods, maxY, report.unit);
  const k = body.suppression.min_group_size;
  body.rows.forEach((r, i) => {
    if (r.suppressed) {
      const w = Math.max(1, band * 0.7);
      svg.appendChild(title(svgEl("rect", { class: "mark suppressed", x: x(i) - w / 2, y: PAD.top, width: w, height: y(0) - PAD.top }),
        `${r.period}: fewer than ${k} installs (withheld)`));
    }
  });
  series.forEach((s, n) => {
    let d = "";
    body.rows.forEach((r, i) => {
      if (r[s] === null || r[s] === undefined) return;
      d += `${d && body.rows[i - 1] && body.rows[i - 1][s] !== null ? "L" : "M"}${x(i).toFixed(1)},${y(r[s]).toFixed(1)}`;
      svg.appendChild(title(svgEl("circle", { class: `mark fill-${n}`, cx: x(i), cy: y(r[s]), r: 2.5 }), `${r.period} ${s}: ${r[s]}`));
    });
    if (d) svg.appendChild(svgEl("path", { class: `series stroke-${n}`, d }));
  });
  return { svg, series };
}

function renderReport(report, body) {
  const section = el("section", { class: "report", id: `report-${report.name}` });
  section.appendChild(el("h2", {}, report.title));
  section.appendChild(el("p", { class: "definition" }, body.definition));
  if (!body.rows.length) section.appendChild(el("p", { class: "empty" }, "No data in this range."));
  if (report.shape === "count") {
    section.appendChild(countChart(report, body));
  } else if (report.shape === "stats") {
    const { svg, series } = statsChart(report, body);
    section.appendChild(svg);
    section.appendChild(legend(series));
  } else if (body.columns.includes("dimension")) {
    for (const dim of [...new Set(body.rows.map((r) => r.dimension))].sort()) {
      section.appendChild(el("h3", {}, dim.replaceAll("_", " ")));
      const { svg, groups } = stackedChart(report, body.rows.filter((r) => r.dimension === dim), dim);
      section.appendChild(svg);
      section.appendChild(legend(groups));
    }
  } else {
    const { svg, groups } = stackedChart(report, body.rows, null);
    section.appendChild(svg);
    section.appendChild(legend(groups));
  }
  section.appendChild(el("p", { class: "note suppression" }, body.suppression.note));
  return section;
}

// -- page flow ----------------------------------------------------------------------------------

function query() {
  const params = new URLSearchParams();
  for (const id of ["from", "to", "interval", "product"]) if ($(id).value) params.set(id, $(id).value);
  return params.toString();
}

async function refresh() {
  setStatus("Loading…");
  const q = query();
  try {
    const bodies = await Promise.all(catalogue.reports.map((r) => api(`/v1/reports/${r.name}?${q}`)));
    const main = $("reports");
    main.replaceChildren(...catalogue.reports.map((r, i) => renderReport(r, bodies[i])));
    const first = bodies[0];
    setStatus(`${first.interval}ly, ${first.from} to ${first.to}, ${first.product || "all products"}.`);
    document.body.dataset.loaded = "true";
  } catch (err) {
    handle(err);
  }
}

function handle(err) {
  if (err instanceof AuthError) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    showLogin(err.message);
  } else {
    setStatus(`Could not load the reports: ${err.message}`, true);
  }
}

function showLogin(message) {
  $("controls").hidden = true;
  $("reports").replaceChildren();
  $("login").hidden = false;
  setStatus(message || "", Boolean(message));
}

async function start() {
  try {
    catalogue = await api("/v1/reports");
  } catch (err) {
    handle(err);
    return;
  }
  $("login").hidden = true;
  $("controls").hidden = false;
  $("k").textContent = catalogue.min_group_size;
  const product = $("product");
  product.replaceChildren(el("option", { value: "" }, "all products"));
  for (const p of catalogue.products) product.appendChild(el("option", { value: p }, p));
  if (!$("to").value) $("to").value = catalogue.today;
  if (!$("from").value) {
    const from = new Date(`${catalogue.today}T00:00:00Z`);
    from.setUTCDate(from.getUTCDate() - 89);
    $("from").value = from.toISOString().slice(0, 10);
  }
  await refresh();
}

function init() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);  // keep the token out of the address bar
  }
  token = sessionStorage.getItem(TOKEN_KEY);
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token-input").value.trim();
    $("token-input").value = "";
    if (token) { sessionStorage.setItem(TOKEN_KEY, token); start(); }
  });
  $("controls").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); token = null; showLogin(""); });
  if (token) start(); else showLogin("");
}

document.addEventListener("DOMContentLoaded", init);
