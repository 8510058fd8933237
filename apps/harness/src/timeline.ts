import Table from "cli-table3";

/**
 * The lifecycle timeline as a table: one row per step, one column per actor,
 * and the reference count of the IOASID under study.
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

export interface TimelineLayout {
  /**
   * The terminal's width in columns: the table never gets wider. Absent: no
   * limit (output to a file or a pipe), each actor column at its natural width.
   */
  readonly width?: number;
}

/** Width of an actor column with no limit; the first (USER) column is wider. */
const NATURAL = { first: 36, other: 24 } as const;
/**
 * Narrowest actor column the grid layout accepts: the longest trace-event
 * names ("vtd.invalidation", "pci.dma-complete") fit on one line. A terminal
 * too narrow for that gets the list layout (one line per row: step, actor, text).
 */
const MIN_ACTOR = 16;
/** Narrowest text column of the list layout (below it, text is still wrapped, just tall). */
const MIN_TEXT = 10;
/** Each cell has one space of padding either side, and each column one border. */
const CELL_OVERHEAD = 3;

export function renderTimeline(columns: readonly string[], rows: readonly TimelineRow[], layout: TimelineLayout = {}): string {
  const stepW = Math.max(1, ...rows.map((r) => String(r.step).length));
  const refW = Math.max(3, ...rows.map((r) => (r.refcount === undefined ? 0 : String(r.refcount).length)));
  const fixed = stepW + refW + 2 * CELL_OVERHEAD + 1;
  const width = layout.width;
  if (width === undefined) return grid(columns, rows, stepW, refW, columns.map((_, i) => (i === 0 ? NATURAL.first : NATURAL.other)));
  const budget = width - fixed - columns.length * CELL_OVERHEAD;
  if (budget >= columns.length * MIN_ACTOR) {
    // The first column (USER, who narrates each step) gets a share and a half.
    const share = Math.floor(budget / (columns.length + 0.5));
    const widths = columns.map((_, i) => (i === 0 ? budget - share * (columns.length - 1) : share));
    return grid(columns, rows, stepW, refW, widths);
  }
  return list(columns, rows, stepW, refW, width);
}

function grid(columns: readonly string[], rows: readonly TimelineRow[], stepW: number, refW: number, widths: readonly number[]): string {
  const table = new Table({
    head: ["#", ...columns.map((c, i) => wrap(c, widths[i] ?? NATURAL.other)), "Ref"],
    style: { head: [], border: [], compact: true },
    colWidths: [stepW + 2, ...widths.map((w) => w + 2), refW + 2],
  });
  const spanWidth = widths.reduce((a, w) => a + w, 0) + CELL_OVERHEAD * (widths.length - 1);
  for (const r of rows) {
    const known = columns.includes(r.actor);
    const ref = r.refcount === undefined ? "" : String(r.refcount);
    if (!known && r.seq === undefined) {
      // A narrative row of an actor with no column (a replayed table's "GUEST STARTS DMA") spans them all.
      table.push([String(r.step), { colSpan: columns.length, content: wrap(`${r.actor}: ${r.text}`, spanWidth) }, ref]);
      continue;
    }
    const cells = columns.map((c, i) => {
      const text = c === r.actor ? r.text : !known && i === 0 ? `${r.actor}: ${r.text}` : "";
      return wrap(text, widths[i] ?? NATURAL.other);
    });
    table.push([String(r.step), ...cells, ref]);
  }
  return table.toString();
}

function list(columns: readonly string[], rows: readonly TimelineRow[], stepW: number, refW: number, width: number): string {
  const actorW = Math.max(5, ...columns.map((c) => c.length), ...rows.map((r) => r.actor.length));
  const textW = Math.max(MIN_TEXT, width - (stepW + actorW + refW + 4 * CELL_OVERHEAD + 1));
  const table = new Table({
    head: ["#", "actor", "what happened", "Ref"],
    style: { head: [], border: [], compact: true },
    colWidths: [stepW + 2, actorW + 2, textW + 2, refW + 2],
  });
  for (const r of rows) table.push([String(r.step), r.actor, wrap(r.text, textW), r.refcount === undefined ? "" : String(r.refcount)]);
  return table.toString();
}

/**
 * Breaks `text` into lines of at most `width` characters at spaces; a word
 * longer than a line (a long address, a dotted event name) is split after a
 * "." "-" "=" "@" or "/" inside it where it can be, else cut at the width, so
 * nothing is lost to truncation.
 */
export function wrap(text: string, width: number): string {
  const w = Math.max(1, width);
  const lines: string[] = [];
  for (const para of text.split("\n")) {
    let line = "";
    for (const word of para.split(" ").filter((x) => x !== "")) {
      if (line === "") line = word;
      else if (line.length + 1 + word.length <= w) line += ` ${word}`;
      else {
        lines.push(line);
        line = word;
      }
      // A word longer than a line gets lines of its own; its last piece may be followed.
      if (line.length > w) {
        const pieces = splitWord(line, w);
        line = pieces.pop() ?? "";
        lines.push(...pieces);
      }
    }
    lines.push(line);
  }
  return lines.join("\n");
}

function splitWord(word: string, w: number): string[] {
  const pieces: string[] = [];
  let rest = word;
  while (rest.length > w) {
    const head = rest.slice(0, w);
    const at = Math.max(...[".", "-", "=", "@", "/", ","].map((p) => head.lastIndexOf(p)));
    const cut = at > 0 ? at + 1 : w;
    pieces.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  pieces.push(rest);
  return pieces;
}
