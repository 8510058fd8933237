/**
 * The report page's inline stylesheet and script. Inline and dependency-free
 * so the one HTML file opens from disk, offline, with nothing fetched: system
 * fonts only, no libraries, no network.
 */

/** Lane colours, by lane position: distinct hues that stay legible as a light tint. */
export const LANE_COLOURS = ["#64748b", "#0d9488", "#7c3aed", "#2563eb", "#d97706", "#db2777", "#16a34a", "#9333ea", "#0891b2", "#ca8a04"] as const;

export const REPORT_CSS = `
:root { --fg: #1f2933; --muted: #667085; --line: #e4e7ec; --bg: #ffffff; --band: #f2f4f7; --pass: #067647; --fail: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: var(--bg); font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
code, pre, .cell, .ref, .num { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
header { padding: 16px 24px 8px; border-bottom: 1px solid var(--line); }
h1 { font-size: 20px; margin: 0 0 6px; }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 14px 0 6px; }
.meta { display: flex; flex-wrap: wrap; gap: 6px 20px; margin: 0; }
.meta div { display: flex; gap: 6px; }
.meta dt { color: var(--muted); }
.meta dd { margin: 0; font-weight: 600; }
.verdict { display: inline-block; margin: 10px 0 4px; padding: 4px 12px; border-radius: 4px; font-weight: 700; font-size: 16px; color: #fff; }
.verdict.pass { background: var(--pass); }
.verdict.fail { background: var(--fail); }
.verdict-note { margin-left: 8px; color: var(--muted); }
.violations { margin: 8px 0; padding: 10px 14px 10px 32px; border: 2px solid var(--fail); border-radius: 6px; background: #fef3f2; color: #7a271a; }
.violations li { margin: 2px 0; white-space: pre-wrap; font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.summary { display: grid; grid-template-columns: minmax(260px, 1fr) minmax(0, 2.2fr); gap: 8px 32px; align-items: start; }
.counts { border-collapse: collapse; font-size: 13px; }
.counts th, .counts td { padding: 2px 10px 2px 0; text-align: left; }
.counts td.n, .counts th.n { text-align: right; font-variant-numeric: tabular-nums; }
.counts thead th { color: var(--muted); font-weight: 400; font-size: 12px; }
.counts .hidden-kinds { color: var(--muted); font-size: 12px; }
.counts-note { font-size: 12px; max-width: 60em; }
.counts .swatch { margin-right: 6px; }
.chart { width: 100%; height: auto; max-height: 170px; display: block; }
.chart .grid { stroke: var(--line); stroke-width: 1; }
.chart .step-rule { stroke: #98a2b3; stroke-width: 1; stroke-dasharray: 2 3; }
.chart .tick { font-size: 11px; fill: var(--muted); }
.chart .series { fill: none; stroke-width: 2; }
.chart .point { cursor: pointer; }
.legend { font-size: 12px; color: var(--muted); }
.legend-item { margin-right: 14px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; vertical-align: -1px; margin-right: 4px; }
.muted { color: var(--muted); }
main { display: grid; grid-template-columns: minmax(0, 1fr) 400px; align-items: start; }
.lanes { padding: 8px 0 24px 24px; }
#swimlane { width: 100%; border-collapse: separate; border-spacing: 0; table-layout: fixed; font-size: 12px; }
#swimlane col.num { width: 3.2em; }
#swimlane col.ref { width: 3em; }
#swimlane col.step-lane { width: 4.5em; }
#swimlane thead th { position: sticky; top: 0; z-index: 1; background: var(--bg); padding: 6px 6px; text-align: left; font-size: 12px; border-bottom: 2px solid var(--fg); }
#swimlane thead th.lane { border-top: 4px solid var(--lane); }
#swimlane thead th .n { color: var(--muted); font-weight: 400; }
#swimlane td { padding: 3px 6px; vertical-align: top; border-bottom: 1px solid var(--line); overflow-wrap: break-word; hyphens: none; }
#swimlane td.lane { border-left: 1px solid var(--line); }
#swimlane td.cell { font-size: 11.5px; background: color-mix(in srgb, var(--lane) 11%, transparent); border-left: 3px solid var(--lane); }
#swimlane td.cell b { font-weight: 600; }
#swimlane .nb { white-space: nowrap; }
#swimlane td.num { color: var(--muted); text-align: right; }
#swimlane td.ref { text-align: center; font-weight: 600; border-left: 1px solid var(--line); }
#swimlane td.ref.changed { background: #fff4e5; }
#swimlane tr.step td { background: var(--band); border-top: 1px solid #d0d5dd; padding-top: 6px; padding-bottom: 6px; }
#swimlane tr.step td.steptext { font-size: 13px; font-weight: 600; }
#swimlane tr.step td.steptext .who { color: var(--muted); font-weight: 400; margin-right: 6px; font-size: 11px; }
#swimlane tbody tr { cursor: pointer; }
#swimlane tbody tr:hover td { box-shadow: inset 0 0 0 9999px rgba(16, 24, 40, .04); }
#swimlane tbody tr.selected td { box-shadow: inset 0 0 0 9999px rgba(37, 99, 235, .13); }
aside { position: sticky; top: 0; z-index: 2; max-height: 100vh; overflow: auto; padding: 8px 24px 24px 16px; background: var(--bg); }
aside summary { cursor: pointer; }
aside summary h2 { display: inline; }
#detail-head { font-size: 13px; margin: 0 0 6px; }
#detail-json { margin: 0; padding: 10px; background: #0f172a; color: #e2e8f0; border-radius: 6px; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; min-height: 4em; }
.keys { font-size: 12px; color: var(--muted); }
kbd { border: 1px solid #d0d5dd; border-bottom-width: 2px; border-radius: 3px; padding: 0 4px; font-size: 11px; }
/* Narrow windows: the event panel docks to the bottom, at most 28% of the window and collapsible, so it stays in view beside the rows it explains without hiding them. */
@media (max-width: 1100px) {
  main { grid-template-columns: minmax(0, 1fr); padding-bottom: 30vh; }
  header { padding-left: 12px; padding-right: 12px; }
  .lanes { padding-left: 12px; padding-right: 12px; }
  aside { position: fixed; top: auto; left: 0; right: 0; bottom: 0; max-height: 28vh; background: var(--bg); border-top: 2px solid var(--fg); padding: 4px 24px 12px; box-shadow: 0 -4px 12px rgba(16, 24, 40, .08); }
  .summary { grid-template-columns: minmax(0, 1fr); }
}
`;

/**
 * Click (or arrow keys) selects a row and shows its trace event, parsed from
 * the JSON block, in the side panel. textContent only: nothing from the events
 * is ever parsed as markup.
 */
export const REPORT_JS = `
(() => {
  const data = document.getElementById("vsva-events");
  const events = data === null ? [] : JSON.parse(data.textContent || "[]");
  const bySeq = new Map(events.map((e) => [e.seq, e]));
  const rows = Array.from(document.querySelectorAll("#swimlane tbody tr[data-row]"));
  const head = document.getElementById("detail-head");
  const body = document.getElementById("detail-json");
  let selected = null;
  const select = (tr) => {
    if (!tr) return;
    if (selected) selected.classList.remove("selected");
    selected = tr;
    tr.classList.add("selected");
    const step = tr.dataset.step;
    const seq = tr.dataset.seq;
    const ev = seq === undefined ? undefined : bySeq.get(Number(seq));
    if (ev !== undefined) {
      head.textContent = "Row " + step + " \\u00b7 event #" + ev.seq + " \\u00b7 " + ev.actor + " \\u00b7 " + ev.kind + " \\u00b7 t=" + ev.time + " ns";
      body.textContent = JSON.stringify(ev, null, 2);
    } else {
      head.textContent = "Row " + step + " \\u00b7 " + (tr.dataset.actor || "");
      const cell = tr.querySelector(".steptext, .cell");
      body.textContent = (cell === null ? "" : cell.textContent) + (tr.dataset.actor === "USER" ? "\\n\\n(a scenario step: the rows below it, up to the next step, are what it caused)" : "\\n\\n(no trace event behind this row)");
    }
  };
  const show = (tr) => { select(tr); tr.scrollIntoView({ block: "nearest" }); };
  document.getElementById("swimlane").addEventListener("click", (e) => select(e.target.closest("tr[data-row]")));
  for (const dot of document.querySelectorAll(".chart .point")) {
    dot.addEventListener("click", () => { const tr = rows[Number(dot.getAttribute("data-row"))]; if (tr) show(tr); });
  }
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const at = selected === null ? -1 : rows.indexOf(selected);
    if (e.key === "ArrowDown" || e.key === "j") { const tr = rows[Math.min(rows.length - 1, at + 1)]; if (tr) { show(tr); e.preventDefault(); } }
    if (e.key === "ArrowUp" || e.key === "k") { const tr = rows[Math.max(0, at - 1)]; if (tr) { show(tr); e.preventDefault(); } }
  });
  const first = rows.find((tr) => tr.dataset.seq !== undefined) || rows[0];
  select(first);
})();
`;
