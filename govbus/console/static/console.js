// The governance console's page: four views, each fetched from /api/<view> when its version moves.
// Nothing here builds HTML from text: every value goes in through textContent, so a field name or
// a reason written by a department cannot become markup.
"use strict";

const VIEWS = ["lineage", "freshness", "attention", "trace"];
const SVG = "http://www.w3.org/2000/svg";
const seen = {};          // view → the version last drawn
const optionsFilled = {}; // select element id → filled once
let current = "lineage";

function el(tag, attributes = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null) continue;
    if (name === "text") node.textContent = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function human(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]]) {
    if (seconds >= size) {
      const value = seconds / size;
      return (value >= 10 || value === Math.round(value) ? value.toFixed(0) : value.toFixed(1)) + " " + unit;
    }
  }
  return (seconds * 1000).toFixed(0) + " ms";
}

function fillRows(tableId, rows, columns, empty) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  if (!rows.length) {
    body.append(el("tr", {}, el("td", {class: "empty", colspan: columns, text: empty})));
    return body;
  }
  for (const row of rows) body.append(row);
  return body;
}

function fillSelect(select, values, keepFirst = true) {
  if (optionsFilled[select.name + select.form.id]) return;
  optionsFilled[select.name + select.form.id] = true;
  if (!keepFirst) select.replaceChildren();
  for (const value of values) select.append(el("option", {value, text: value}));
}

async function getJson(path) {
  const answer = await fetch(path, {cache: "no-store"});
  if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
  return answer.json();
}

// -- lineage ---------------------------------------------------------------------------------
function lineageQuery() {
  const form = document.getElementById("lineage-filters");
  return new URLSearchParams(new FormData(form)).toString();
}

function setLineageFilter(name, value) {
  const form = document.getElementById("lineage-filters");
  form.elements[name].value = value;
  redraw("lineage");
}

async function drawLineage() {
  const data = await getJson("/api/lineage?" + lineageQuery());
  const form = document.getElementById("lineage-filters");
  fillSelect(form.elements.department, data.options.departments);
  fillSelect(form.elements.library, data.options.libraries);
  fillSelect(form.elements.state, data.options.states);
  const list = document.getElementById("field-options");
  if (!list.childElementCount) for (const value of data.options.fields) list.append(el("option", {value}));
  document.getElementById("lineage-summary").textContent =
    `${data.matched} subscribed field(s) in ${data.subscriptions} subscription(s) match, of ${data.total}` +
    (data.matched > data.rows.length ? `; the first ${data.rows.length} are listed` : "");
  drawGraph(data.graph);
  const rows = data.rows.map(row => el("tr", {"data-subscription": row.subscription, "data-state": row.state,
                                              "data-field": `${row.library}.${row.field}`, "data-department": row.department},
    el("td", {}, el("a", {class: "filter-link", text: row.authority, onclick: () => setLineageFilter("department", row.authority)})),
    el("td", {}, el("a", {class: "filter-link", text: row.library, onclick: () => setLineageFilter("library", row.library)})),
    el("td", {class: "field"}, el("a", {class: "filter-link", text: row.field,
                                        onclick: () => setLineageFilter("field", `${row.library}.${row.field}`)})),
    el("td", {class: `sharing-${row.sharing}`, text: row.sharing}),
    el("td", {class: "department"}, el("a", {class: "filter-link", text: row.department,
                                             onclick: () => setLineageFilter("department", row.department)})),
    el("td", {text: row.purpose}),
    el("td", {text: row.mask || "–"}),
    el("td", {class: `state state-${row.state}`, text: row.state + (row.awaiting.length ? ` (waiting for ${row.awaiting.join(", ")})` : "")}),
    el("td", {class: "subscription", text: row.subscription})));
  fillRows("lineage-table", rows, 9, "no subscription matches");
}

function drawGraph(graph) {
  const columns = [["source departments", graph.sources, "library", "department"],
                   ["libraries", graph.libraries, "library", "library"],
                   ["fields (sharing class · authority)", graph.fields.map(f => f.id), "field", "field"],
                   ["subscribing departments", graph.departments, "department", "department"]];
  const fields = Object.fromEntries(graph.fields.map(f => [f.id, f]));
  const width = 1120, rowHeight = 26, top = 30, boxWidth = 190, fieldWidth = 330;
  const xs = [10, 260, 510, 920];
  const height = top + rowHeight * Math.max(1, ...columns.map(c => c[1].length)) + 10;
  const svg = el("svg:svg", {viewBox: `0 0 ${width} ${height}`, height, role: "img", "aria-label": "lineage graph"});
  const where = {};
  columns.forEach(([title, names, , filter], index) => {
    svg.append(el("svg:text", {x: xs[index], y: 16, class: "column", text: title}));
    names.forEach((name, row) => {
      const y = top + row * rowHeight;
      const key = `${index}:${name}`;
      where[key] = y + 10;
      const field = index === 2 ? fields[name] : null;
      const label = field ? `${name} · ${field.sharing} · ${field.authority}` : name;
      const group = el("svg:g", {class: "node" + (field ? ` field ${field.sharing}` : ""), "data-node": name,
                                 onclick: () => setLineageFilter(filter, name)},
        el("svg:rect", {x: xs[index], y, width: index === 2 ? fieldWidth : boxWidth, height: 20, rx: 3}),
        el("svg:text", {x: xs[index] + 6, y: y + 14, text: label.length > 52 ? label.slice(0, 51) + "…" : label}));
      svg.append(group);
    });
  });
  const column = {publishes: [0, 1], holds: [1, 2], receives: [2, 3]};
  for (const edge of graph.edges) {
    const [from, to] = column[edge.kind];
    const y1 = where[`${from}:${edge.from}`], y2 = where[`${to}:${edge.to}`];
    if (y1 === undefined || y2 === undefined) continue;
    const x1 = xs[from] + (from === 2 ? fieldWidth : boxWidth), x2 = xs[to], middle = (x1 + x2) / 2;
    const states = edge.states || {};
    const state = ["approved", "pending", "refused", "revoked", "expired"].find(s => states[s]) || "";
    svg.append(el("svg:path", {d: `M${x1},${y1} C${middle},${y1} ${middle},${y2} ${x2},${y2}`, class: state},
      el("svg:title", {text: edge.kind === "receives" ? `${edge.from} → ${edge.to}: ` +
        Object.entries(states).map(([s, n]) => `${n} ${s}`).join(", ") : `${edge.from} → ${edge.to}`})));
  }
  document.getElementById("lineage-graph").replaceChildren(svg);
}

// -- freshness ---------------------------------------------------------------------------------
function freshnessQuery() {
  return new URLSearchParams(new FormData(document.getElementById("freshness-filters"))).toString();
}

function chart(points, measure, sla, title, library) {
  const width = 600, height = 200, left = 56, right = 10, top = 10, bottom = 24;
  const quantiles = ["p50", "p95", "p99"];
  const values = points.flatMap(p => quantiles.map(q => p[measure][q])).filter(v => v !== null && v !== undefined);
  const svg = el("svg:svg", {viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none"});
  const figure = el("figure", {class: "chart", "data-library": library, "data-measure": measure,
                               "data-points": String(values.length)}, svg,
    el("figcaption", {text: `${title}: p50 (blue), p95 (orange), p99 (purple); SLA ${human(sla)} (red, dashed); log scale`}));
  svg.append(el("svg:line", {class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom}),
             el("svg:line", {class: "axis", x1: left, y1: top, x2: left, y2: height - bottom}));
  if (!values.length) {
    svg.append(el("svg:text", {class: "no-data", x: width / 2 - 80, y: height / 2, text: "no data in this window"}));
    return figure;
  }
  const floor = Math.max(1e-3, Math.min(...values, sla) / 2), ceiling = Math.max(...values, sla) * 2;
  const low = Math.log10(floor), high = Math.log10(ceiling);
  const times = points.map(p => Date.parse(p.at));
  const first = Math.min(...times), last = Math.max(...times, first + 1);
  const x = t => left + (width - left - right) * (t - first) / (last - first);
  const y = v => top + (height - top - bottom) * (1 - (Math.log10(Math.max(v, floor)) - low) / (high - low));
  for (let decade = Math.ceil(low); decade <= Math.floor(high); decade++) {
    const value = Math.pow(10, decade);
    svg.append(el("svg:text", {class: "tick", x: 4, y: y(value) + 3, text: human(value)}));
  }
  svg.append(el("svg:text", {class: "tick", x: left, y: height - 6, text: new Date(first).toLocaleTimeString()}),
             el("svg:text", {class: "tick", x: width - right - 60, y: height - 6, text: new Date(last).toLocaleTimeString()}));
  svg.append(el("svg:line", {class: "sla", x1: left, x2: width - right, y1: y(sla), y2: y(sla)}));
  for (const quantile of quantiles) {
    const line = points.map((p, i) => [times[i], p[measure][quantile]]).filter(([, v]) => v !== null && v !== undefined);
    const drawn = line.length === 1 ? [[line[0][0] - 1, line[0][1]], line[0]] : line;
    svg.append(el("svg:polyline", {class: quantile, points: drawn.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}));
  }
  return figure;
}

function departmentTable(title, figures, sla) {
  const rows = Object.entries(figures).map(([department, f]) => el("tr", {},
    el("td", {text: department}), el("td", {text: String(f.count ?? "–")}), el("td", {text: human(f.p50)}),
    el("td", {text: human(f.p95)}), el("td", {class: f.p99 > sla ? "silent" : "", text: human(f.p99)})));
  if (!rows.length) return null;
  return el("table", {class: "departments"},
    el("thead", {}, el("tr", {}, el("th", {text: title}), el("th", {text: "count"}), el("th", {text: "p50"}),
                                el("th", {text: "p95"}), el("th", {text: "p99"}))),
    el("tbody", {}, ...rows));
}

async function drawFreshness() {
  const data = await getJson("/api/freshness?" + freshnessQuery());
  const form = document.getElementById("freshness-filters");
  fillSelect(form.elements.window, data.windows, false);
  if (!form.elements.window.dataset.set) { form.elements.window.value = data.window; form.elements.window.dataset.set = "1"; }
  fillSelect(form.elements.department, data.departments);
  const alerts = data.open_alerts.map(a => el("div", {class: "alert", "data-kind": a.kind},
    `${a.kind} · ${a.library} · ${a.department}: ${a.message} (open ${human(a.age_seconds)})`));
  document.getElementById("open-alerts").replaceChildren(el("h3", {text: `Open alerts (${alerts.length})`}),
    ...(alerts.length ? alerts : [el("p", {class: "summary", text: "none: every SLA is kept and every source heard from"})]));
  const scope = data.department ? ` of ${data.department}` : "";
  const cards = data.libraries.map(library => el("div", {class: "library-card", "data-library": library.library},
    el("h3", {text: `${library.library} · ${library.name}`}),
    el("p", {class: "summary", text: (library.reported_at ? `last report ${library.reported_at}` : "no report from the freshness processor yet") +
      (library.silent_sources.length ? "" : "; no silent source")},
      ...library.silent_sources.map(s => el("span", {class: "silent", text: ` silent source: ${s}`}))),
    el("div", {class: "charts"},
      chart(library.series, "lateness", library.sla.lateness_seconds, `source lateness${scope}`, library.library),
      chart(library.series, "latency", library.sla.latency_seconds, `delivery latency${scope}`, library.library)),
    el("div", {class: "charts"},
      departmentTable("source department", library.lateness_by_department, library.sla.lateness_seconds),
      departmentTable("receiving department", library.latency_by_department, library.sla.latency_seconds))));
  document.getElementById("freshness-libraries").replaceChildren(...cards);
}

// -- needs attention -----------------------------------------------------------------------------
async function drawAttention() {
  const data = await getJson("/api/attention");
  const total = data.counts.waiting + data.counts.objections + data.counts.conflicts;
  document.getElementById("attention-count").textContent = total ? String(total) : "";
  if (current !== "attention") return;
  fillRows("waiting-table", data.waiting.map(group => el("tr", {"data-authority": group.authority},
    el("td", {text: group.authority}), el("td", {class: "count", text: String(group.count)}),
    el("td", {text: human(group.oldest_seconds)}),
    el("td", {text: group.requests.slice(0, 10).map(r => `${r.subscription}: ${r.department} ← ${r.library} (${r.fields.join(", ")}) for ${r.purpose}, ${human(r.waiting_seconds)}`).join("; ")}))),
    4, "no request is waiting");
  fillRows("objections-table", data.objections.map(o => el("tr", {"data-objection": o.objection},
    el("td", {text: o.objection}), el("td", {text: `${o.library}.${o.field}`}), el("td", {text: o.raised_by}),
    el("td", {text: o.owner}), el("td", {text: human(o.age_seconds)}), el("td", {text: o.reason}))), 6, "no open objection");
  fillRows("conflicts-table", data.conflicts.map(c => el("tr", {},
    el("td", {text: `${c.library}.${c.field}`}), el("td", {text: c.authority}), el("td", {text: c.reported_by}),
    el("td", {text: human(c.age_seconds)}))), 4, "no open conflict");
  fillRows("dead-letters-table", data.dead_letters.by_reason_and_department.map(d => el("tr",
    {"data-library": d.library, "data-department": d.department, "data-reason": d.reason},
    el("td", {text: d.library}), el("td", {text: d.department}), el("td", {text: d.reason}),
    el("td", {class: "count", text: String(d.count)}))), 4, "no dead letter");
  fillRows("recent-dead-letters-table", data.dead_letters.recent.map(d => el("tr", {},
    el("td", {text: d.at}), el("td", {text: d.library}), el("td", {text: d.department}), el("td", {text: d.reason}),
    el("td", {text: d.detail}))), 5, "no dead letter");
}

// -- traceability --------------------------------------------------------------------------------
async function drawTrace() {
  const entity = document.getElementById("trace-form").elements.entity.value.trim();
  const line = document.getElementById("trace-verification");
  if (!entity) { line.textContent = "Enter an entity id to see who received its data, when, for what."; return; }
  const data = await getJson("/api/trace?entity=" + encodeURIComponent(entity));
  const check = data.verification;
  line.replaceChildren(`${data.count} deliveries recorded for ${data.entity_id} in ${data.chains.length} chain(s). `,
    el("span", {class: check.ok ? "verified" : "broken", id: "chain-state",
                text: check.ok ? `Audit chain verified: ${check.checked} sharing records in ${check.chains} chain(s).`
                               : `Audit chain BROKEN at record ${check.first_break.position} of ${check.first_break.chain}: ${check.first_break.message}`}));
  fillRows("trace-table", data.rows.map(r => el("tr", {"data-subscription": r.subscription, "data-department": r.department},
    el("td", {class: "delivered-at", text: r.delivered_at}), el("td", {class: "department", text: r.department}),
    el("td", {text: r.library}), el("td", {class: "version", text: String(r.version)}), el("td", {text: r.op}),
    el("td", {class: "purpose", text: r.purpose}), el("td", {text: r.subscription}),
    el("td", {class: "fields", text: (r.fields || []).join(", ")}), el("td", {class: "masked", text: (r.masked || []).join(", ")}),
    el("td", {class: r.chain_state === "verified" ? "verified" : "broken", text: r.chain_state}))), 10,
    "no sharing record names this entity");
}

// -- the loop ------------------------------------------------------------------------------------
const DRAW = {lineage: drawLineage, freshness: drawFreshness, attention: drawAttention, trace: drawTrace};

function redraw(view) { seen[view] = undefined; if (view === current) tick(); }

function show(view) {
  current = VIEWS.includes(view) ? view : "lineage";
  for (const name of VIEWS) {
    document.getElementById(`view-${name}`).classList.toggle("shown", name === current);
    document.querySelector(`nav a[data-view=${name}]`).classList.toggle("active", name === current);
  }
  redraw(current);
}

let busy = false;
async function tick() {
  if (busy) return;
  busy = true;
  const status = document.getElementById("status");
  try {
    const state = await getJson("/api/version");
    status.textContent = state.problem || (state.status === "ready" ? `live · ${new Date().toLocaleTimeString()}` : "reading the bus …");
    for (const view of new Set([current, "attention"])) {
      if (seen[view] !== state.versions[view]) {
        await DRAW[view]();
        seen[view] = state.versions[view];
      }
    }
    document.body.dataset.drawn = JSON.stringify(seen);
  } catch (error) {
    status.textContent = `disconnected: ${error.message}`;
  } finally {
    busy = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const lineage = document.getElementById("lineage-filters");
  lineage.addEventListener("change", () => redraw("lineage"));
  lineage.addEventListener("reset", () => setTimeout(() => redraw("lineage"), 0));
  lineage.addEventListener("submit", event => { event.preventDefault(); redraw("lineage"); });
  document.getElementById("freshness-filters").addEventListener("change", () => redraw("freshness"));
  document.getElementById("trace-form").addEventListener("submit", event => { event.preventDefault(); redraw("trace"); });
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  show(location.hash.slice(1));
  setInterval(tick, 1000);
});
