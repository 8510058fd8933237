import { HOST_CONTEXT, type TraceEvent } from "@vsva/kernel";
import type { TimelineRow } from "../timeline.js";
import { escapeHtml } from "./escape.js";

/** One IOASID's reference count over the timeline: the Ref column, split by IOASID. */
export interface RefcountSeries {
  /** "IOASID 5", or "Ref" when the rows do not say which IOASID (replayed tables). */
  readonly label: string;
  /** Row index (0-based position in the timeline) and the count after that row. */
  readonly points: readonly { readonly row: number; readonly refcount: number }[];
}

/**
 * Splits the Ref column by IOASID. Rows made from an event name it through
 * the event's ids (the IOASID, or the host PASID the chrome-trace exporter
 * also falls back to); one series per IOASID keeps two IOASIDs' counts from
 * being drawn as one line that jumps between them.
 */
export function refcountSeries(rows: readonly TimelineRow[], events: readonly TraceEvent[]): RefcountSeries[] {
  const bySeq = new Map<number, TraceEvent>(events.map((e) => [e.seq, e]));
  const series = new Map<string, { row: number; refcount: number }[]>();
  rows.forEach((r, row) => {
    if (r.refcount === undefined) return;
    const e = r.seq === undefined ? undefined : bySeq.get(r.seq);
    const id = e?.ids.ioasid ?? e?.ids.hpasid;
    // A guest's IOASID layer counts its own references to the same number: its series is its own, named by context.
    const where = e === undefined || e.context === HOST_CONTEXT ? "" : `${e.context} `;
    const label = id === undefined ? "Ref" : `${where}IOASID ${String(id)}`;
    let points = series.get(label);
    if (points === undefined) {
      points = [];
      series.set(label, points);
    }
    points.push({ row, refcount: r.refcount });
  });
  return [...series].map(([label, points]) => ({ label, points }));
}

// Fixed drawing box; CSS scales the SVG to the page width (viewBox keeps the aspect).
const W = 960;
const H = 150;
const PAD_L = 34;
const PAD_R = 12;
const PAD_T = 12;
const PAD_B = 22;

/** Series colours, in order; the page's lane colours are different hues on purpose. */
const SERIES_COLOURS = ["#c2410c", "#1d4ed8", "#15803d", "#7e22ce", "#0e7490", "#a16207"] as const;

function fmt(v: number): string {
  // Two decimals at most, no trailing zeros: stable text for the same input.
  return String(Math.round(v * 100) / 100);
}

/**
 * An inline SVG step chart of the refcounts over the timeline rows: the count
 * holds its value until the row that changes it, as a refcount does. USER
 * steps are faint vertical rules so the chart lines up with the sections of
 * the swimlane; every point carries its row for the page's click-to-select.
 */
export function renderRefcountChart(series: readonly RefcountSeries[], rows: readonly TimelineRow[]): string {
  if (series.length === 0) return `<p class="muted">No reference counts were reported in this run.</p>`;
  const maxRef = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.refcount)));
  const lastRow = Math.max(1, rows.length - 1);
  const x = (row: number): number => PAD_L + (row * (W - PAD_L - PAD_R)) / lastRow;
  const y = (ref: number): number => PAD_T + (1 - ref / maxRef) * (H - PAD_T - PAD_B);
  const out: string[] = [
    `<svg class="chart" viewBox="0 0 ${String(W)} ${String(H)}" role="img" aria-label="IOASID reference count over the timeline rows">`,
  ];
  // Y axis: every integer while there are few, otherwise about five ticks.
  const tickStep = maxRef <= 6 ? 1 : Math.ceil(maxRef / 5);
  for (let t = 0; t <= maxRef; t += tickStep) {
    out.push(
      `<line class="grid" x1="${String(PAD_L)}" x2="${String(W - PAD_R)}" y1="${fmt(y(t))}" y2="${fmt(y(t))}"/>`,
      `<text class="tick" x="${String(PAD_L - 6)}" y="${fmt(y(t) + 4)}" text-anchor="end">${String(t)}</text>`,
    );
  }
  rows.forEach((r, row) => {
    if (r.actor !== "USER") return;
    out.push(
      `<line class="step-rule" x1="${fmt(x(row))}" x2="${fmt(x(row))}" y1="${String(PAD_T)}" y2="${String(H - PAD_B)}"><title>step ${String(r.step)}: ${escapeHtml(r.text)}</title></line>`,
    );
  });
  out.push(
    `<text class="tick" x="${String(PAD_L)}" y="${String(H - 6)}">row ${String(rows[0]?.step ?? 1)}</text>`,
    `<text class="tick" x="${String(W - PAD_R)}" y="${String(H - 6)}" text-anchor="end">row ${String(rows.at(-1)?.step ?? 1)}</text>`,
  );
  series.forEach((s, i) => {
    const colour = SERIES_COLOURS[i % SERIES_COLOURS.length] ?? "#000";
    const [first, ...rest] = s.points;
    if (first === undefined) return;
    let d = `M${fmt(x(first.row))} ${fmt(y(first.refcount))}`;
    for (const p of rest) d += ` H${fmt(x(p.row))} V${fmt(y(p.refcount))}`;
    // The last count holds to the end of the run.
    d += ` H${fmt(x(lastRow))}`;
    out.push(`<path class="series" d="${d}" stroke="${colour}"/>`);
    for (const p of s.points) {
      const r = rows[p.row];
      const what = r === undefined ? "" : `: ${r.text}`;
      out.push(
        `<circle class="point" data-row="${String(p.row)}" cx="${fmt(x(p.row))}" cy="${fmt(y(p.refcount))}" r="3.5" fill="${colour}"><title>${escapeHtml(`${s.label} = ${String(p.refcount)} after row ${String(r?.step ?? p.row + 1)}${what}`)}</title></circle>`,
      );
    }
  });
  out.push(`</svg>`);
  const legend = series
    .map((s, i) => `<span class="legend-item"><span class="swatch" style="background:${SERIES_COLOURS[i % SERIES_COLOURS.length] ?? "#000"}"></span>${escapeHtml(s.label)}</span>`)
    .join("");
  return `${out.join("")}<div class="legend">${legend}</div>`;
}
