/** One benchmark figure, printed on its own line with its target. */
export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** Human-readable target, e.g. "≤ 2×". */
  readonly target: string;
  readonly ok: boolean;
}

export function printFigures(title: string, figures: readonly Figure[]): void {
  console.log(`\n${title}`);
  for (const f of figures) {
    const v = Number.isInteger(f.value) ? String(f.value) : f.value.toFixed(2);
    console.log(`  ${f.ok ? "ok  " : "MISS"} ${f.name}: ${v}${f.unit} (target ${f.target})`);
  }
}
