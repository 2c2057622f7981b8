// The telemetry dashboard: reads /v1/reports with a bearer token and draws each report as an SVG chart.
// No library, no CDN: the chart helpers are in charts.js. The token comes from the URL fragment
// (#token=..., never sent to a server) or the login form, and is kept in sessionStorage for this tab.
"use strict";

const TOKEN_KEY = "telemetry-report-token";
const MAX_RANGE_DAYS = 3700;  // the API's limit (collector.reports.MAX_RANGE_DAYS)
const ADVERB = { day: "daily", week: "weekly", month: "monthly" };

let token = null;
let catalogue = null;

function $(id) { return document.getElementById(id); }

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

// The collector lets one token have a few reports in progress at once (max_reports_per_token, default 4)
// and answers more with 429: ask at most three at a time, one fewer after each 429 (the limit may be set
// lower), and wait as long as Retry-After says before asking again.
const MAX_RETRIES = 5;
let parallel = 3, running = 0;
const queue = [];

async function limited(fn) {
  while (running >= parallel) await new Promise((resolve) => queue.push(resolve));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    const next = queue.shift();
    if (next) next();
  }
}

async function request(path) {
  for (let attempt = 0; ; attempt++) {
    const resp = await limited(() => fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" }));
    if (resp.status === 401) throw new AuthError();
    if (resp.status !== 429 || attempt >= MAX_RETRIES) return resp;
    parallel = Math.max(1, parallel - 1);
    const waitS = Math.min(30, Number(resp.headers.get("Retry-After")) || 1);
    await new Promise((resolve) => setTimeout(resolve, waitS * 1000));
  }
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
