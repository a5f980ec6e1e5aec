// Dashboard: follow running jobs by polling the API (reload when one ends so the numbers are fresh), count
// "being worked" down as leases run out, and draw the charts over time as inline SVG (no chart library).
"use strict";

(() => {
  const list = document.getElementById("job-list");
  if (!list) return;
  const running = () => Array.from(list.querySelectorAll(".job")).filter((li) => ["queued", "running"].includes(li.dataset.status));

  async function poll() {
    if (!running().length) return;
    try {
      const jobs = await Terakoya.api("GET", "/api/v1/jobs");
      let ended = false;
      for (const job of jobs) {
        const li = list.querySelector(`[data-job-id="${job.id}"]`);
        if (!li) continue;
        if (["queued", "running"].includes(li.dataset.status) && ["done", "failed"].includes(job.status)) ended = true;
        li.dataset.status = job.status;
        const pill = li.querySelector(".pill");
        pill.textContent = job.status; pill.className = `pill ${job.status}`;
        li.querySelector(".job-bar").style.width = `${Math.round(100 * (job.fraction || 0))}%`;
        li.querySelector(".job-message").textContent = job.message + (job.total ? ` (${job.done}/${job.total})` : "");
      }
      if (ended) { window.location.reload(); return; }
    } catch (err) { /* keep polling; the page still shows the last known state */ }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 700);
})();

// "being worked": each held task stops counting when its last running lease runs out
(() => {
  const el = document.getElementById("kpi-working");
  if (!el || !el.dataset.endsIn) return;
  const loaded = Date.now();
  const ends = el.dataset.endsIn.split(",").map(Number).filter((s) => Number.isFinite(s));
  const beyond = Math.max(0, Number(el.textContent) - ends.length);  // leases without an end
  function update() {
    const elapsed = (Date.now() - loaded) / 1000;
    const left = ends.filter((s) => s > elapsed);
    el.textContent = String(beyond + left.length);
    if (left.length) setTimeout(update, Math.max(250, (Math.min(...left) - elapsed) * 1000 + 50));
  }
  update();
})();

// charts over time, from the numbers the page carries in #chart-data (also shown in tables under each chart)
(() => {
  const source = document.getElementById("chart-data");
  if (!source) return;
  let data;
  try { data = JSON.parse(source.textContent); } catch (err) { return; }
  const NS = "http://www.w3.org/2000/svg";
  const W = 520, H = 220, M = { top: 14, right: 52, bottom: 34, left: 44 };
  const plotW = W - M.left - M.right, plotH = H - M.top - M.bottom;

  function el(name, attrs, parent, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function frame(area, label) {
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-label": label });
    area.appendChild(svg);
    return svg;
  }

  function yAxis(svg, max, format, side, css) {
    const x = side === "left" ? M.left : W - M.right;
    for (let i = 0; i <= 4; i++) {
      const value = (max * i) / 4, y = M.top + plotH - (plotH * i) / 4;
      if (side === "left") el("line", { x1: M.left, x2: W - M.right, y1: y, y2: y, class: "chart-grid" }, svg);
      el("text", { x: side === "left" ? x - 6 : x + 6, y: y + 4, class: `chart-tick ${css || ""}`,
        "text-anchor": side === "left" ? "end" : "start" }, svg, format(value));
    }
  }

  function xLabels(svg, labels, xOf) {
    const step = Math.max(1, Math.ceil(labels.length / 6));
    labels.forEach((text, i) => {
      if (i % step && i !== labels.length - 1) return;
      el("text", { x: xOf(i), y: H - M.bottom + 16, class: "chart-tick", "text-anchor": "middle" }, svg, text);
    });
  }

  function legend(svg, items) {
    let x = M.left;
    for (const [text, css] of items) {
      el("rect", { x, y: H - 12, width: 10, height: 10, class: css }, svg);
      el("text", { x: x + 14, y: H - 3, class: "chart-tick" }, svg, text);
      x += 14 + 8 * text.length + 16;
    }
  }

  function line(svg, points, css, title) {
    const drawn = points.filter((p) => p.y !== null && p.y !== undefined);
    if (!drawn.length) return;
    el("polyline", { points: drawn.map((p) => `${p.x},${p.y}`).join(" "), class: `chart-line ${css}` }, svg);
    for (const p of drawn) el("title", {}, el("circle", { cx: p.x, cy: p.y, r: 3.5, class: `chart-dot ${css}` }, svg), title(p));
  }

  const pct = (v) => `${Math.round(100 * v)}%`;

  function drawRuns(area, runs) {
    if (!runs.length) return;
    const svg = frame(area, "student and teacher accuracy per training run");
    const xOf = (i) => M.left + (runs.length === 1 ? plotW / 2 : (plotW * i) / (runs.length - 1));
    const yOf = (v) => (v === null ? null : M.top + plotH - plotH * v);
    yAxis(svg, 1, pct, "left");
    xLabels(svg, runs.map((r, i) => `#${i + 1}`), xOf);
    for (const [key, css, name] of [["teacher", "series-b", "teacher"], ["student", "series-a", "student"]]) {
      line(svg, runs.map((r, i) => ({ x: xOf(i), y: yOf(r[key]), r })), css,
        (p) => `${p.r.run} (${p.r.at.slice(0, 10)}): ${name} ${pct(p.r[key])} on ${p.r.items} gold items`);
    }
    legend(svg, [["student", "series-a"], ["teacher", "series-b"]]);
  }

  function drawDays(area, days, currency) {
    if (!days.length) return;
    const svg = frame(area, "expert hours and cost per day");
    const maxHours = Math.max(0.5, ...days.map((d) => d.hours));
    const maxCost = Math.max(1, ...days.map((d) => d.cost));
    const band = plotW / days.length;
    const xOf = (i) => M.left + band * (i + 0.5);
    yAxis(svg, maxHours, (v) => `${v.toFixed(maxHours < 2 ? 2 : maxHours < 20 ? 1 : 0)} h`, "left");
    yAxis(svg, maxCost, (v) => v.toFixed(maxCost < 10 ? 2 : 0), "right", "series-b-ink");
    xLabels(svg, days.map((d) => d.day.slice(5)), xOf);
    days.forEach((d, i) => {
      const h = (plotH * d.hours) / maxHours;
      const bar = el("rect", { x: xOf(i) - band * 0.35, y: M.top + plotH - h, width: band * 0.7, height: h, class: "chart-bar series-a" }, svg);
      el("title", {}, bar, `${d.day}: ${d.hours} h, ${d.cost.toFixed(2)} ${currency}`);
    });
    line(svg, days.map((d, i) => ({ x: xOf(i), y: M.top + plotH - (plotH * d.cost) / maxCost, d })), "series-b",
      (p) => `${p.d.day}: ${p.d.cost.toFixed(2)} ${currency}`);
    legend(svg, [["hours", "series-a"], [`cost (${currency})`, "series-b"]]);
  }

  const runsArea = document.querySelector('[data-chart="runs"]');
  const daysArea = document.querySelector('[data-chart="days"]');
  if (runsArea) drawRuns(runsArea, data.runs || []);
  if (daysArea) drawDays(daysArea, data.days || [], data.currency || "");
})();
