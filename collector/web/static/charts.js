// Chart helpers of the telemetry dashboard: SVG bar, stacked-bar and line charts over one axis of periods,
// with unambiguous date labels and the partial period marked. Loaded before dashboard.js, which draws with them.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 520, H = 220, PAD = { left: 44, right: 10, top: 14, bottom: 34 };
const COLORS = 10;
const OTHER = "(other)", OTHER_COLOR = 8;
const MAX_TICKS = 6;  // "31 Aug 2026" is about 55 px wide at 10 px: six fit the 466 px plot
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

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
