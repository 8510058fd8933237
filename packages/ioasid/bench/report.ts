/** A measured figure, its target, and whether it met it: one printed line each. */
export interface BenchFigure {
  readonly label: string;
  readonly value: number;
  readonly unit: string;
  readonly target: string;
  readonly met: boolean;
}

export function report(heading: string, figures: readonly BenchFigure[]): void {
  console.log(heading);
  for (const f of figures) {
    const shown = f.value >= 100 ? f.value.toFixed(0) : f.value.toFixed(2);
    console.log(`  [${f.met ? "met " : "MISS"}] ${f.label} = ${shown}${f.unit}   target ${f.target}`);
  }
}
