// The telemetry dashboard: reads /v1/reports with a bearer token and draws each report as an SVG chart.
// No library, no CDN: a few small chart helpers below. The token comes from the URL fragment
// (#token=..., never sent to a server) or the login form, and is kept in sessionStorage for this tab.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "telemetry-report-token";
const W = 520, H = 220, PAD = { left: 44, right: 10, top: 14, bottom: 34 };
const COLORS = 10;
const OTHER = "(other)", OTHER_COLOR = 8;
const MAX_TICKS = 6;  // "31 Aug 2026" is about 55 px wide at 10 px: six fit the 466 px plot
const MAX_RANGE_DAYS = 3700;  // the API's limit (collector.reports.MAX_RANGE_DAYS)
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const ADVERB = { day: "daily", week: "weekly", month: "monthly" };

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

async function request(path) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  if (resp.status === 401) throw new AuthError();
  return resp;
}

async function api(path) {
  const resp = await request(path);
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error ? body.error.message : `HTTP ${resp.status}`);
  return body;
}

class AuthError extends Error {
  constructor() { super("the token was refused (missing, wrong or revoked)"); }
}

// -- dates and periods (all UTC, ISO days as strings) ------------------------------------------

function parseDay(iso) { return new Date(`${iso}T00:00:00Z`); }
function isoDay(date) { return date.toISOString().slice(0, 10); }

function addDays(iso, days) {
  const d = parseDay(iso);
  d.setUTCDate(d.getUTCDate() + days);
  return isoDay(d);
}

function nextPeriod(iso, interval) {
  if (interval === "day") return addDays(iso, 1);
  if (interval === "week") return addDays(iso, 7);
  const d = parseDay(iso);
  d.setUTCMonth(d.getUTCMonth() + 1, 1);
  return isoDay(d);
}

// Every period of the answered range: one x-axis for all charts, whatever rows each report has.
function rangePeriods(from, to, interval) {
  const out = [];
  for (let p = from; p <= to; p = nextPeriod(p, interval)) out.push(p);
  return out;
}

// Unambiguous: "31 Aug 2026" (day, week) or "Aug 2026" (month), never "26-08-31".
function dateLabel(iso, interval) {
  const [y, m, d] = iso.split("-");
  return interval === "month" ? `${MONTHS[+m - 1]} ${y}` : `${+d} ${MONTHS[+m - 1]} ${y}`;
}

function periodName(iso, interval) {
  return interval === "week" ? `the week of ${dateLabel(iso, interval)}` : dateLabel(iso, interval);
}

// -- scales and axes ---------------------------------------------------------------------------

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function frame(svg, axis, maxY, unit) {
  const { periods, progress, interval } = axis;
  const plotW = W - PAD.left - PAD.right, plotH = H - PAD.top - PAD.bottom;
  const x = (i) => PAD.left + (plotW * (i + 0.5)) / periods.length;
  const y = (v) => PAD.top + plotH - (plotH * v) / maxY;
  const band = plotW / periods.length;
  svg.setAttribute("data-periods", String(periods.length));
  periods.forEach((p, i) => {
    const pr = progress.get(p);
    if (!pr || !pr.partial) return;
    // The current (or a future) period: shaded and labelled, so a short bar is not read as a drop.
    svg.appendChild(title(svgEl("rect", { class: "partial-band", x: x(i) - band / 2, y: PAD.top, width: band, height: plotH }),
      `${dateLabel(p, interval)}: partial, ${pr.days_elapsed} of ${pr.days_total} days so far`));
    svg.appendChild(svgEl("text", { class: "partial-label", x: x(i), y: PAD.top - 3, "text-anchor": "middle" },
      `${pr.days_elapsed}/${pr.days_total} d`));
  });
  svg.appendChild(svgEl("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0) }));
  for (const t of [0, 0.5, 1]) {
    svg.appendChild(svgEl("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y(maxY * t), y2: y(maxY * t), "stroke-dasharray": "2 3" }));
    svg.appendChild(svgEl("text", { x: PAD.left - 4, y: y(maxY * t) + 3, "text-anchor": "end" }, formatNumber(maxY * t)));
  }
  const every = Math.max(1, Math.ceil(periods.length / MAX_TICKS));
  periods.forEach((p, i) => {
    if (i % every === 0) svg.appendChild(svgEl("text", { class: "tick", x: x(i), y: H - PAD.bottom + 14, "text-anchor": "middle" }, dateLabel(p, interval)));
  });
  svg.appendChild(svgEl("text", { x: PAD.left, y: H - 4 }, unit));
  return { x, y, band };
}

function formatNumber(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(1)}`;
}

function newChart(name, label, series) {
  return svgEl("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, "data-report": name, "data-series": series });
}

function title(node, text) { node.appendChild(svgEl("title", {}, text)); return node; }

function partialNote(axis, period) {
  const pr = axis.progress.get(period);
  return pr && pr.partial ? ` (partial: ${pr.days_elapsed} of ${pr.days_total} days so far)` : "";
}

function markClass(axis, period, base) {
  const pr = axis.progress.get(period);
  return pr && pr.partial ? `${base} partial` : base;
}

// -- the three report shapes ---------------------------------------------------------------------

// Bars of one value per period: installs of a count report, or the total of a statistics report.
function barChart(report, body, axis, key, series) {
  const svg = newChart(report.name, `${report.title} ${series}`, series);
  if (!body.rows.length) return svg;
  const k = body.suppression.min_group_size;
  const byPeriod = new Map(body.rows.map((r) => [r.period, r]));
  const maxY = niceMax(Math.max(k, ...body.rows.map((r) => r[key] || 0)));
  const { x, y, band } = frame(svg, axis, maxY, key === "total" ? `${report.unit} (total)` : report.unit);
  const w = Math.max(1, band * 0.7);
  axis.periods.forEach((p, i) => {
    const r = byPeriod.get(p);
    if (!r) return;
    const note = partialNote(axis, p);
    if (r.suppressed) {
      svg.appendChild(title(svgEl("rect", { class: markClass(axis, p, "mark suppressed"), x: x(i) - w / 2, y: y(k), width: w, height: y(0) - y(k) }),
        `${dateLabel(p, axis.interval)}: fewer than ${k} installs (withheld)${note}`));
    } else if (r[key] !== null && r[key] !== undefined) {
      svg.appendChild(title(svgEl("rect", { class: markClass(axis, p, "mark fill-0"), x: x(i) - w / 2, y: y(r[key]), width: w, height: y(0) - y(r[key]) }),
        `${dateLabel(p, axis.interval)}: ${r[key].toLocaleString("en")} ${key === "total" ? report.unit : "installs"}${note}`));
    }
  });
  return svg;
}

function stackedChart(report, rows, key, axis) {
  const svg = newChart(report.name, `${report.title}${key ? " " + key : ""}`, key || "groups");
  const groups = [...new Set(rows.map((r) => r.group))].sort((a, b) => (a === OTHER) - (b === OTHER));
  if (!rows.length) return { svg, groups };
  const totals = axis.periods.map((p) => rows.filter((r) => r.period === p).reduce((s, r) => s + r.installs, 0));
  const { x, y, band } = frame(svg, axis, niceMax(Math.max(...totals)), report.unit);
  const w = Math.max(1, band * 0.7);
  axis.periods.forEach((p, i) => {
    let base = 0;
    const note = partialNote(axis, p);
    for (const r of rows.filter((row) => row.period === p)) {
      const color = colorOf(groups, r.group);
      svg.appendChild(title(svgEl("rect", { class: markClass(axis, p, `mark fill-${color}`), x: x(i) - w / 2, y: y(base + r.installs), width: w, height: y(base) - y(base + r.installs) }),
        `${dateLabel(p, axis.interval)} ${r.group}: ${r.installs} installs (${r.share_pct}%)${note}`));
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

function statsChart(report, body, axis) {
  const svg = newChart(report.name, `${report.title} per install`, "percentiles");
  if (!body.rows.length) return { svg, series: [] };
  const series = ["p50", "p90", "p99", "mean"];
  const byPeriod = new Map(body.rows.map((r) => [r.period, r]));
  const maxY = niceMax(Math.max(1, ...body.rows.flatMap((r) => series.map((s) => r[s] || 0))));
  const { x, y, band } = frame(svg, axis, maxY, report.unit);
  const k = body.suppression.min_group_size;
  axis.periods.forEach((p, i) => {
    const r = byPeriod.get(p);
    if (r && r.suppressed) {
      const w = Math.max(1, band * 0.7);
      svg.appendChild(title(svgEl("rect", { class: markClass(axis, p, "mark suppressed"), x: x(i) - w / 2, y: PAD.top, width: w, height: y(0) - PAD.top }),
        `${dateLabel(p, axis.interval)}: fewer than ${k} installs (withheld)${partialNote(axis, p)}`));
    }
  });
  series.forEach((s, n) => {
    let d = "", drawn = false;
    axis.periods.forEach((p, i) => {
      const r = byPeriod.get(p);
      if (!r || r[s] === null || r[s] === undefined) { drawn = false; return; }
      d += `${drawn ? "L" : "M"}${x(i).toFixed(1)},${y(r[s]).toFixed(1)}`;
      drawn = true;
      svg.appendChild(title(svgEl("circle", { class: markClass(axis, p, `mark fill-${n}`), cx: x(i), cy: y(r[s]), r: 2.5 }),
        `${dateLabel(p, axis.interval)} ${s}: ${r[s]}${partialNote(axis, p)}`));
    });
    if (d) svg.appendChild(svgEl("path", { class: `series stroke-${n}`, d }));
  });
  return { svg, series };
}

// A link that downloads the report's CSV from the API (with the token, so not a plain href fetch).
function csvLink(report, q) {
  const href = `/v1/reports/${report.name}?${q}${q ? "&" : ""}format=csv`;
  const link = el("a", { class: "csv", href, download: `${report.name}.csv` }, "CSV");
  link.addEventListener("click", async (e) => {
    e.preventDefault();
    try {
      const resp = await request(href);
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const url = URL.createObjectURL(await resp.blob());
      const save = el("a", { href: url, download: `${report.name}.csv` });
      document.body.appendChild(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (err) {
      handle(err);
    }
  });
  return link;
}

function renderReport(report, body, axis, q) {
  const section = el("section", { class: "report", id: `report-${report.name}` });
  const head = el("header");
  head.appendChild(el("h2", {}, report.title));
  head.appendChild(csvLink(report, q));
  section.appendChild(head);
  section.appendChild(el("p", { class: "definition" }, body.definition));
  if (!body.rows.length) section.appendChild(el("p", { class: "empty" }, "No data in this range."));
  if (report.shape === "count") {
    section.appendChild(barChart(report, body, axis, "installs", "installs"));
  } else if (report.shape === "stats") {
    if (body.columns.includes("total")) {
      section.appendChild(el("h3", {}, `total ${report.unit}`));
      section.appendChild(barChart(report, body, axis, "total", "total"));
      section.appendChild(el("h3", {}, "per install"));
    }
    const { svg, series } = statsChart(report, body, axis);
    section.appendChild(svg);
    section.appendChild(legend(series));
  } else if (body.columns.includes("dimension")) {
    for (const dim of [...new Set(body.rows.map((r) => r.dimension))].sort()) {
      section.appendChild(el("h3", {}, dim.replaceAll("_", " ")));
      const { svg, groups } = stackedChart(report, body.rows.filter((r) => r.dimension === dim), dim, axis);
      section.appendChild(svg);
      section.appendChild(legend(groups));
    }
  } else {
    const { svg, groups } = stackedChart(report, body.rows, null, axis);
    section.appendChild(svg);
    section.appendChild(legend(groups));
  }
  if (body.suppression.note) section.appendChild(el("p", { class: "note suppression" }, body.suppression.note));
  return section;
}

// -- the summary row ------------------------------------------------------------------------------

function versionKey(version) {
  // 5.0.0-rc2 < 5.0.0: numeric parts first, then a release sorts after any pre-release of it.
  const [release, pre] = version.split("-");
  const parts = release.split(".").map(Number);
  while (parts.length < 3) parts.push(0);
  return [...parts, pre ? 0 : 1, pre || ""];
}

function newer(a, b) {
  const ka = versionKey(a), kb = versionKey(b);
  for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] > kb[i];
  return false;
}

function shown(value, k) {
  return value === null || value === undefined ? `<${k} installs` : value.toLocaleString("en");
}

function change(now, before) {
  if (typeof now !== "number" || typeof before !== "number") return "";
  const diff = now - before, sign = diff > 0 ? "+" : diff < 0 ? "−" : "±";
  const pct = before ? ` (${sign}${Math.abs(Math.round((100 * diff) / before))} %)` : "";
  return `${sign}${Math.abs(diff).toLocaleString("en")}${pct}`;
}

function card(id, heading, figure, label, detail) {
  const box = el("div", { class: "card", id });
  box.appendChild(el("h2", {}, heading));
  box.appendChild(el("p", { class: "figure" }, figure));
  if (label) box.appendChild(el("p", { class: "label" }, label));
  box.appendChild(el("p", { class: "detail" }, detail));
  return box;
}

// The last period that is over (the current one is partial), else the last one there is.
function lastComplete(rows) {
  const complete = rows.filter((r) => !r.partial);
  return complete.length ? complete[complete.length - 1] : rows[rows.length - 1];
}

function activeCard(body, interval) {
  const rows = body.rows, k = body.suppression.min_group_size;
  if (!rows.length) return card("summary-active", "Active installs", "–", null, "no data in this range");
  const last = lastComplete(rows), before = rows[rows.indexOf(last) - 1];
  const delta = before ? change(last.installs, before.installs) : "";
  const partial = last.partial ? ` (partial, ${last.days_elapsed} of ${last.days_total} days)` : "";
  const detail = `in ${periodName(last.period, interval)}${partial}${delta ? `; ${delta} vs the ${interval} before` : ""}`;
  return card("summary-active", "Active installs", shown(last.installs, k), null, detail);
}

// The newest version shown (a version with fewer than k installs is in "(other)") in one product's answer.
function newestIn(body, period) {
  let best = null;
  for (const r of body.rows) {
    if (r.period !== period || r.group === OTHER) continue;
    if (!best || newer(r.group, best.version)) best = { version: r.group, share: r.share_pct };
  }
  return best;
}

async function versionCard(bodies, q, active, interval) {
  const selected = $("product").value;
  const products = selected ? [selected] : catalogue.products.slice(0, 3);
  if (!products.length || !active.rows.length) return card("summary-version", "Newest version", "–", null, "no product with enough installs");
  const period = lastComplete(active.rows).period;
  const lines = [];
  for (const product of products) {
    // Shares within each product: its own versions report (without a filter, shares are of every product).
    const body = selected ? bodies.versions : await api(`/v1/reports/versions?${q}&product=${encodeURIComponent(product)}`);
    const best = newestIn(body, period);
    lines.push(best ? { product, ...best } : { product, version: null, share: null });
  }
  const first = lines[0];
  const figure = first.share === null ? "–" : `${first.share} %`;
  const label = first.version ? `${first.product} ${first.version}` : `${first.product}: no version shown`;
  const others = lines.slice(1).map((l) => (l.version ? `${l.product} ${l.version}: ${l.share} %` : `${l.product}: –`));
  const detail = [`of its active installs in ${periodName(period, interval)}`, ...others].join("; ");
  return card("summary-version", "Newest version's share", figure, label, detail);
}

// Deployments in the current period (the last one that has begun), so far if it is partial.
function deploymentsCard(body, axis) {
  const k = body.suppression.min_group_size, interval = axis.interval;
  const begun = axis.periods.filter((p) => { const pr = axis.progress.get(p); return !pr || pr.days_elapsed > 0; });
  if (!body.rows.length || !begun.length) return card("summary-deployments", "Deployments", "–", null, "no data in this range");
  const byPeriod = new Map(body.rows.map((r) => [r.period, r]));
  const current = begun[begun.length - 1], pr = axis.progress.get(current);
  const row = byPeriod.get(current), before = byPeriod.get(begun[begun.length - 2]);
  const total = (r) => (r && !r.suppressed ? r.total : null);
  const figure = !row ? "–" : shown(total(row), k);
  let detail = pr && pr.partial
    ? `so far in ${periodName(current, interval)} (${pr.days_elapsed} of ${pr.days_total} days)`
    : `in ${periodName(current, interval)}`;
  if (!row) detail += ": no install has reported the counter yet";
  if (before && (pr && pr.partial || !row)) {
    detail += `; ${total(before) === null ? `withheld (fewer than ${k} installs)` : total(before).toLocaleString("en")} in the ${interval} before`;
  } else if (before && change(total(row), total(before))) {
    detail += `; ${change(total(row), total(before))} vs the ${interval} before`;
  }
  return card("summary-deployments", "Deployments", figure, null, detail);
}

async function renderSummary(bodies, q, axis) {
  const summary = $("summary");
  const cards = [activeCard(bodies["active-installs"], axis.interval)];
  cards.push(await versionCard(bodies, q, bodies["active-installs"], axis.interval));
  cards.push(deploymentsCard(bodies.deployments, axis));
  summary.replaceChildren(...cards);
  summary.hidden = false;
}

// -- page flow ----------------------------------------------------------------------------------

function query() {
  const params = new URLSearchParams();
  for (const id of ["from", "to", "interval", "product"]) if ($(id).value) params.set(id, $(id).value);
  return params.toString();
}

function rangeText(first, axis) {
  let text = `${ADVERB[first.interval]}, ${first.from} to ${first.to}`;
  const current = axis.periods.map((p) => [p, axis.progress.get(p)]).find(([, pr]) => pr && pr.partial && pr.days_elapsed);
  if (current) {
    const [p, pr] = current;
    text += ` (today is ${first.today}: the ${first.interval} from ${p} is partial, ${pr.days_elapsed} of ${pr.days_total} days)`;
  } else if (first.to > first.today) {
    text += ` (today is ${first.today})`;
  }
  return `${text}, ${first.product || "all products"}.`;
}

async function refresh() {
  setStatus("Loading…");
  const q = query();
  try {
    const list = await Promise.all(catalogue.reports.map((r) => api(`/v1/reports/${r.name}?${q}`)));
    const bodies = Object.fromEntries(catalogue.reports.map((r, i) => [r.name, list[i]]));
    const first = list[0];
    const progress = new Map();
    for (const body of list) for (const r of body.rows) progress.set(r.period, r);
    const axis = { periods: rangePeriods(first.from, first.to, first.interval), progress, interval: first.interval };
    await renderSummary(bodies, q, axis);
    $("reports").replaceChildren(...catalogue.reports.map((r, i) => renderReport(r, list[i], axis, q)));
    setStatus(rangeText(first, axis));
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
  $("summary").hidden = true;
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
    // From the first data (not 90 empty days), within the longest range the API answers.
    const earliest = addDays($("to").value, -(MAX_RANGE_DAYS - 1));
    const first = catalogue.first_day || addDays(catalogue.today, -89);
    $("from").value = first < earliest ? earliest : first;
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
