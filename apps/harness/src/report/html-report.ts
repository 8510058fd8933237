import type { TraceEvent } from "@vsva/kernel";
import { laneOf } from "../world/events.js";
import type { ScenarioResult } from "../scenario.js";
import type { TimelineRow } from "../timeline.js";
import { escapeHtml, jsonForScript } from "./escape.js";
import { refcountSeries, renderRefcountChart } from "./refcount-chart.js";
import { LANE_COLOURS, REPORT_CSS, REPORT_JS } from "./report-assets.js";

export interface ReportMeta {
  /** The scenario's name, as `vsva list` shows it. */
  readonly scenario: string;
  /** The IOMMU platform it ran on; absent for scenarios that need none. */
  readonly platform?: string;
  readonly seed: number;
}

/** The actor whose rows are scenario steps: section headers across every lane. */
const STEP_ACTOR = "USER";

function laneColour(lane: number): string {
  return LANE_COLOURS[lane % LANE_COLOURS.length] ?? "#64748b";
}

function renderHeader(result: ScenarioResult, meta: ReportMeta): string {
  const pass = result.violations.length === 0;
  const facts: [string, string][] = [
    ["scenario", meta.scenario],
    ["platform", meta.platform ?? "none"],
    ["seed", String(meta.seed)],
    ["timeline rows", String(result.rows.length)],
    ["trace events", String(result.events.length)],
  ];
  const verdict = pass
    ? `<div class="verdict pass">PASS</div><span class="verdict-note">every invariant held</span>`
    : `<div class="verdict fail">FAIL</div><span class="verdict-note">${String(result.violations.length)} invariant violation${result.violations.length === 1 ? "" : "s"}</span>` +
      `<ol class="violations">${result.violations.map((v) => `<li>${escapeHtml(v)}</li>`).join("")}</ol>`;
  return (
    `<header><h1>${escapeHtml(result.title)}</h1>` +
    `<dl class="meta">${facts.map(([k, v]) => `<div><dt>${k}</dt><dd>${escapeHtml(v)}</dd></div>`).join("")}</dl>` +
    `<div id="verdict">${verdict}</div>` +
    `<div class="summary"><section><h2>Rows and trace events by actor</h2>${renderCounts(result)}</section>` +
    `<section><h2>IOASID reference count</h2>${renderRefcountChart(refcountSeries(result.rows, result.events), result.rows)}</section></div>` +
    `</header>`
  );
}

/**
 * Per actor, the rows its lane shows (the number in the lane's header) and
 * the trace events it emitted, with what the swimlane leaves out said
 * outright: per-access events (ATS translations, per-page maps) are in the
 * trace but get no row, and a replayed table's rows are not trace events at
 * all. Lane actors first in lane order, the rest by name, so the table reads
 * the same way on every run.
 */
function renderCounts(result: ScenarioResult): string {
  const rowsOf = new Map<string, number>();
  for (const r of result.rows) rowsOf.set(r.actor, (rowsOf.get(r.actor) ?? 0) + 1);
  const shown = new Set(result.rows.flatMap((r) => (r.seq === undefined ? [] : [r.seq])));
  const eventsOf = new Map<string, number>();
  const hiddenKinds = new Map<string, Set<string>>();
  for (const e of result.events) {
    // A guest kernel's events count for its own lane ("vm1 IOMMU"), not the host's actor of that name.
    const lane = laneOf(e);
    eventsOf.set(lane, (eventsOf.get(lane) ?? 0) + 1);
    if (!shown.has(e.seq)) hiddenKinds.set(lane, (hiddenKinds.get(lane) ?? new Set<string>()).add(e.kind));
  }
  const actors = [...new Set([...rowsOf.keys(), ...eventsOf.keys()])];
  const inLanes = result.columns.filter((c) => actors.includes(c));
  const others = actors.filter((a) => !result.columns.includes(a)).sort();
  if (inLanes.length + others.length === 0) return `<p class="muted">No rows and no trace events.</p>`;
  const fromTrace = shown.size > 0;
  const line = (actor: string): string => {
    const lane = result.columns.indexOf(actor);
    const swatch = lane < 0 ? "" : `<span class="swatch" style="background:${laneColour(lane)}"></span>`;
    const kinds = fromTrace ? [...(hiddenKinds.get(actor) ?? [])].sort() : [];
    const note = kinds.length === 0 ? "" : `not drawn: ${kinds.map((k) => `<code>${escapeHtml(k)}</code>`).join(", ")}`;
    return (
      `<tr><th>${swatch}${escapeHtml(actor)}</th><td class="n">${String(rowsOf.get(actor) ?? 0)}</td>` +
      `<td class="n">${String(eventsOf.get(actor) ?? 0)}</td><td class="hidden-kinds">${note}</td></tr>`
    );
  };
  const caption = fromTrace
    ? "Rows: what the swimlane shows (the number in each lane's header). Events: everything on the trace bus; each layer's events are drawn in its own lane (a guest's beside the host's), per-access ones are left to --json and --trace."
    : "Rows replay the published table; events are what the code under test put on the trace bus while replaying it (in --json and --trace).";
  return (
    `<table class="counts" id="actor-counts"><thead><tr><th>actor</th><th class="n">rows</th><th class="n">events</th><th></th></tr></thead>` +
    `<tbody>${[...inLanes, ...others].map(line).join("")}</tbody></table><p class="muted counts-note">${caption}</p>`
  );
}

/**
 * Marks where a long identifier may wrap: after a "." "_" "/" "(" or "->"
 * inside it (a "-" already allows a break; "->" is kept whole), so a cell
 * breaks "vtd.<wbr>invalidation" between its parts and never inside a word.
 * Escapes everything else.
 */
function breakable(text: string): string {
  return escapeHtml(text)
    .replace(/([._/(])(?=[A-Za-z0-9])/g, "$1<wbr>")
    .replace(/-&gt;/g, `<span class="nb">-&gt;</span><wbr>`);
}

/** The first word of an event row is its kind: set in bold so the lane reads as a list of kinds. */
function cellText(row: TimelineRow): string {
  if (row.seq === undefined) return breakable(row.text);
  const space = row.text.indexOf(" ");
  const kind = space < 0 ? row.text : row.text.slice(0, space);
  const rest = space < 0 ? "" : row.text.slice(space);
  return `<b>${breakable(kind)}</b>${breakable(rest)}`;
}

/** The narrowest a lane may be (in monospace characters): the longest event kinds ("vtd.invalidation", "pci.dma-complete") fit on one line. */
const MIN_LANE_CH = 16;

function renderSwimlane(result: ScenarioResult): string {
  const { columns, rows } = result;
  const perLane = columns.map((c) => rows.filter((r) => r.actor === c).length);
  // The step actor's lane holds only section headers, which span every lane: a narrow column leaves the width to the others.
  const cols = `<colgroup><col class="num">${columns.map((c) => `<col class="${c === STEP_ACTOR ? "lane step-lane" : "lane"}">`).join("")}<col class="ref"></colgroup>`;
  const head =
    `<thead><tr><th>#</th>` +
    columns
      .map((c, i) => `<th class="lane" style="--lane:${laneColour(i)}" title="${String(perLane[i] ?? 0)} rows in this lane">${escapeHtml(c)} <span class="n">${String(perLane[i] ?? 0)}</span></th>`)
      .join("") +
    `<th>Ref</th></tr></thead>`;
  // The Ref cell is marked where the count differs from the one shown last, so increments and drops stand out.
  let lastRef: number | undefined;
  const body = rows.map((r, index) => {
    const changed = r.refcount !== undefined && r.refcount !== lastRef;
    if (r.refcount !== undefined) lastRef = r.refcount;
    const ref = `<td class="ref${changed ? " changed" : ""}">${r.refcount === undefined ? "" : String(r.refcount)}</td>`;
    const attrs =
      `data-row="${String(index)}" data-step="${String(r.step)}" data-actor="${escapeHtml(r.actor)}"` + (r.seq === undefined ? "" : ` data-seq="${String(r.seq)}"`);
    const num = `<td class="num">${String(r.step)}</td>`;
    const lane = columns.indexOf(r.actor);
    // Scenario steps, and narrative rows of an actor with no lane (a replayed table's "GUEST STARTS DMA"), span every lane.
    if (r.actor === STEP_ACTOR || (lane < 0 && r.seq === undefined)) {
      return `<tr class="step" id="row-${String(r.step)}" ${attrs}>${num}<td class="steptext" colspan="${String(columns.length)}"><span class="who">${escapeHtml(r.actor)}</span>${breakable(r.text)}</td>${ref}</tr>`;
    }
    // An event of an actor without a lane of its own goes to the first lane, named, as the text timeline does.
    const at = lane < 0 ? 0 : lane;
    const text = lane < 0 ? `${escapeHtml(r.actor)}: ${cellText(r)}` : cellText(r);
    const cells = columns.map((_, i) => (i === at ? `<td class="lane cell" style="--lane:${laneColour(i)}">${text}</td>` : `<td class="lane"></td>`)).join("");
    return `<tr class="ev" id="row-${String(r.step)}" ${attrs}>${num}${cells}${ref}</tr>`;
  });
  // Below this width the page scrolls sideways instead of breaking identifiers: the fixed columns
  // (3.2em + 3em + the step lane's 4.5em at 12px) and each lane's MIN_LANE_CH monospace characters at 11.5px (~6.9px), padding and border.
  const lanes = columns.filter((c) => c !== STEP_ACTOR).length;
  const minWidth = 74 + (columns.includes(STEP_ACTOR) ? 54 : 0) + lanes * Math.ceil(MIN_LANE_CH * 6.9 + 15);
  return `<table id="swimlane" style="min-width:${String(minWidth)}px">${cols}${head}<tbody>${body.join("")}</tbody></table>`;
}

function renderDetail(): string {
  return (
    `<aside><details id="detail" open><summary><h2>Selected row</h2></summary><p id="detail-head" class="muted">Click a row to see its trace event.</p>` +
    `<pre id="detail-json"></pre>` +
    `<p class="keys"><kbd>↑</kbd> <kbd>↓</kbd> or <kbd>k</kbd> <kbd>j</kbd> move between rows; the chart's points select their row.</p>` +
    `<noscript><p class="muted">The event panel needs JavaScript; the raw events are also written by <code>--json</code>.</p></noscript></details></aside>`
  );
}

/**
 * A self-contained HTML page for one run: header (scenario, platform, seed,
 * verdict with the violations, events per actor, refcount chart), the
 * swimlane (one lane per column, one row per timeline row) and a panel that
 * shows the trace event behind the selected row.
 *
 * Deterministic: the page is a function of its arguments only (no wall clock,
 * no random IDs), so the same run gives the same bytes and reports diff
 * cleanly. Every string from the run is escaped; the events travel as one
 * JSON block the script parses, never as markup.
 */
export function renderHtmlReport(result: ScenarioResult, meta: ReportMeta): string {
  const pass = result.violations.length === 0;
  const title = `vsva ${meta.scenario}${meta.platform === undefined ? "" : ` [${meta.platform}]`}: ${pass ? "PASS" : "FAIL"}`;
  const events: readonly TraceEvent[] = result.events;
  return [
    `<!doctype html>`,
    `<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<meta name="generator" content="vsva">`,
    `<title>${escapeHtml(title)}</title>`,
    `<style>${REPORT_CSS}</style></head>`,
    `<body>`,
    renderHeader(result, meta),
    `<main><section class="lanes"><h2>Swimlane</h2>${renderSwimlane(result)}</section>${renderDetail()}</main>`,
    `<script type="application/json" id="vsva-events">${jsonForScript(events)}</script>`,
    `<script>${REPORT_JS}</script>`,
    `</body></html>`,
    ``,
  ].join("\n");
}
