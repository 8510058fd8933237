/** One benchmark figure, printed on its own line with its target. */
export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** Human-readable target, e.g. "≤ 2×". */
  readonly target: string;
  readonly ok: boolean;
  /** A figure shown for context with no target of its own: printed as `info`, never as ok or MISS. */
  readonly info?: boolean;
}

export function printFigures(title: string, figures: readonly Figure[]): void {
  console.log(`\n${title}`);
  for (const f of figures) {
    const v = Number.isInteger(f.value) ? String(f.value) : f.value.toFixed(2);
    const mark = f.info === true ? "info" : f.ok ? "ok  " : "MISS";
    console.log(`  ${mark} ${f.name}: ${v}${f.unit} (${f.info === true ? "" : "target "}${f.target})`);
  }
}

/**
 * Sanity check of count figures: the same figures computed twice on fresh
 * rigs must give the same numbers (they are counts of memory references,
 * not timings), and none may be the -1 a faulting walk reports.
 */
export function deterministic(label: string, first: readonly Figure[], second: readonly Figure[]): Figure {
  const same = first.length === second.length && first.every((f, i) => f.name === second[i]?.name && f.value === second[i].value && f.value >= 0);
  return { name: `sanity: ${label}: the ${first.length} count figures are identical on a second run`, value: same ? 1 : 0, unit: "", target: "1 (identical)", ok: same };
}
