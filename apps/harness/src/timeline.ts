import Table from "cli-table3";

/**
 * The lifecycle timeline in the manner of seed 003's tables: one row per step,
 * one column per actor, and the reference count of the IOASID under study.
 */
export interface TimelineRow {
  readonly step: number;
  readonly actor: string;
  readonly text: string;
  /** The refcount after this step, as the code under test computed it. */
  readonly refcount?: number;
  /** The trace-bus event this row was made from (absent for USER steps and replayed tables). */
  readonly seq?: number;
}

export function renderTimeline(columns: readonly string[], rows: readonly TimelineRow[]): string {
  const table = new Table({
    head: ["#", ...columns, "Ref"],
    style: { head: [], border: [], compact: true },
    wordWrap: true,
    // Narrow actor columns keep a many-actor timeline readable in a terminal.
    colWidths: [5, ...columns.map((_, i) => (i === 0 ? 36 : 24)), 5],
  });
  for (const r of rows) {
    const cells = columns.map((c) => (c === r.actor ? r.text : ""));
    if (!columns.includes(r.actor)) cells[0] = `${r.actor}: ${r.text}`;
    table.push([String(r.step), ...cells, r.refcount === undefined ? "" : String(r.refcount)]);
  }
  return table.toString();
}
