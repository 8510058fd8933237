import { describe, expect, it } from "vitest";
import { Scheduler, TraceBus, TraceRecorder, type TraceEvent } from "@vsva/kernel";
import type { ScenarioResult } from "../scenario.js";
import { findScenario } from "../scenarios/index.js";
import { rowsFromEvents } from "../world/events.js";
import { renderHtmlReport } from "./html-report.js";

const HOSTILE = `<script>alert("x&y")</script>`;

/** A small run: two USER steps, events from the bus, one IOASID-like refcount, an actor without a lane. */
function smallResult(violations: readonly string[] = []): ScenarioResult {
  const bus = new TraceBus(new Scheduler());
  const rec = new TraceRecorder(bus);
  bus.emit("kernel.log", "VFIO", {}, { level: "warn", message: HOSTILE, suppressed: 0 });
  bus.emit("kernel.fault-injected", "KERNEL", { ioasid: 5 }, { point: "ioasid.alloc", errno: 12, hit: 1 }, 1);
  bus.emit("kernel.fault-injected", "KERNEL", { ioasid: 5 }, { point: "ioasid.free", errno: 12, hit: 2 }, 0);
  const rows = [
    { step: 1, actor: "USER", text: `open the device ${HOSTILE}` },
    ...rowsFromEvents(rec.events.slice(0, 2), 2),
    { step: 4, actor: "USER", text: "close it" },
    ...rowsFromEvents(rec.events.slice(2), 5),
  ];
  return { title: `A test run ${HOSTILE}`, columns: ["USER", "KERNEL", "IOASID"], rows, events: [...rec.events], choices: [], violations };
}

function swimlane(html: string): string {
  const m = /<table id="swimlane"[^>]*>([\s\S]*?)<\/table>/.exec(html);
  if (m?.[1] === undefined) throw new Error("the page has a swimlane table");
  return m[1];
}

function bodyRows(html: string): string[] {
  const body = /<tbody>([\s\S]*)<\/tbody>/.exec(swimlane(html))?.[1] ?? "";
  return [...body.matchAll(/<tr [^>]*>[\s\S]*?<\/tr>/g)].map((m) => m[0]);
}

function embeddedEvents(html: string): TraceEvent[] {
  const m = /<script type="application\/json" id="vsva-events">([\s\S]*?)<\/script>/.exec(html);
  return JSON.parse(m?.[1] ?? "null") as TraceEvent[];
}

function cellsOf(row: string): string[] {
  return [...row.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((m) => m[1] ?? "");
}

describe("renderHtmlReport: structure", () => {
  it("has one lane header per column, in column order, between # and Ref", () => {
    const html = renderHtmlReport(smallResult(), { scenario: "small", seed: 3 });
    const heads = [...swimlane(html).matchAll(/<th(?: [^>]*)?>([^<]*)/g)].map((m) => (m[1] ?? "").trim());
    expect(heads).toEqual(["#", "USER", "KERNEL", "IOASID", "Ref"]);
  });

  it("has one row per timeline row, in order, each in its actor's lane", () => {
    const result = smallResult();
    const rows = bodyRows(renderHtmlReport(result, { scenario: "small", seed: 3 }));
    expect(rows).toHaveLength(result.rows.length);
    rows.forEach((tr, i) => {
      const r = result.rows[i];
      if (r === undefined) throw new Error("as many rows as timeline rows");
      expect(tr).toContain(`data-step="${String(r.step)}"`);
      const cells = cellsOf(tr);
      if (r.actor === "USER") {
        // A step spans every lane: #, one wide cell, Ref.
        expect(tr).toMatch(/^<tr class="step"/);
        expect(tr).toContain(`colspan="3"`);
        expect(cells).toHaveLength(3);
      } else {
        expect(cells).toHaveLength(1 + 3 + 1);
        // An actor without a lane of its own is shown in the first.
        const lane = Math.max(0, ["USER", "KERNEL", "IOASID"].indexOf(r.actor));
        cells.slice(1, 4).forEach((c, j) => {
          expect(c !== "").toBe(j === lane);
        });
        expect(cells[4]).toBe(r.refcount === undefined ? "" : String(r.refcount));
      }
    });
  });

  it("puts an actor without a lane in the first lane, named", () => {
    const rows = bodyRows(renderHtmlReport(smallResult(), { scenario: "small", seed: 3 }));
    const vfio = rows.find((tr) => tr.includes(`data-actor="VFIO"`)) ?? "";
    expect(cellsOf(vfio)[1]).toMatch(/^VFIO: <b>kernel\.<wbr>log<\/b>/);
  });

  it("ties each row made from an event to that event, whose full JSON is in the page", () => {
    const result = smallResult();
    const html = renderHtmlReport(result, { scenario: "small", seed: 3 });
    const seqs = bodyRows(html).flatMap((tr) => [...tr.matchAll(/data-seq="(\d+)"/g)].map((m) => Number(m[1])));
    expect(seqs).toEqual(result.events.map((e) => e.seq));
    expect(embeddedEvents(html)).toEqual(JSON.parse(JSON.stringify(result.events)));
  });

  it("shows the header facts, and per actor the rows its lane header counts beside the events it emitted", () => {
    const html = renderHtmlReport(smallResult(), { scenario: "small", platform: "smmuv3", seed: 42 });
    expect(html).toContain("<dt>scenario</dt><dd>small</dd>");
    expect(html).toContain("<dt>platform</dt><dd>smmuv3</dd>");
    expect(html).toContain("<dt>seed</dt><dd>42</dd>");
    const counts = /<table class="counts" id="actor-counts">([\s\S]*?)<\/table>/.exec(html)?.[1] ?? "";
    const triples = [...counts.matchAll(/<th>(?:<span[^>]*><\/span>)?([A-Z]+)<\/th><td class="n">(\d+)<\/td><td class="n">(\d+)<\/td>/g)].map(
      (m) => `${m[1] ?? ""}=${m[2] ?? ""}/${m[3] ?? ""}`,
    );
    // Lane actors first in lane order, then the rest by name; KERNEL has a lane of its own.
    expect(triples).toEqual(["USER=2/0", "KERNEL=2/2", "VFIO=1/1"]);
    // The lane headers carry the same row counts as the table.
    const heads = [...swimlane(html).matchAll(/<th class="lane"[^>]*>([A-Z]+) <span class="n">(\d+)<\/span>/g)].map((m) => `${m[1] ?? ""}=${m[2] ?? ""}`);
    expect(heads).toEqual(["USER=2", "KERNEL=2", "IOASID=0"]);
  });

  it("draws the refcount chart for the IOASID the rows count", () => {
    const html = renderHtmlReport(smallResult(), { scenario: "small", seed: 3 });
    expect(html).toMatch(/<svg class="chart"/);
    expect(html).toContain("IOASID 5");
  });
});

describe("renderHtmlReport: what the lanes hold", () => {
  it("agrees with the lane headers on every actor's rows, and names the event kinds it does not draw (native-sva)", () => {
    const scenario = findScenario("native-sva");
    if (scenario === undefined) throw new Error("native-sva is listed");
    const result = scenario.run({ seed: 1, platform: "vtd" });
    const html = renderHtmlReport(result, { scenario: "native-sva", platform: "vtd", seed: 1 });
    const heads = new Map([...swimlane(html).matchAll(/<th class="lane"[^>]*>([A-Z]+) <span class="n">(\d+)<\/span>/g)].map((m) => [m[1] ?? "", Number(m[2])]));
    const counts = /<table class="counts" id="actor-counts">([\s\S]*?)<\/table>/.exec(html)?.[1] ?? "";
    const rowsCounted = new Map([...counts.matchAll(/<th>(?:<span[^>]*><\/span>)?([A-Z]+)<\/th><td class="n">(\d+)<\/td>/g)].map((m) => [m[1] ?? "", Number(m[2])]));
    for (const [actor, n] of heads) expect(rowsCounted.get(actor), actor).toBe(n);
    // Events with no row (per-access ones) are named, not silently missing.
    const drawn = new Set(result.rows.flatMap((r) => (r.seq === undefined ? [] : [r.seq])));
    const undrawn = result.events.filter((e) => !drawn.has(e.seq));
    expect(undrawn.length).toBeGreaterThan(0);
    for (const e of undrawn) expect(counts).toContain(`<code>${e.kind}</code>`);
  });

  it("breaks identifiers between their parts, never inside a word", () => {
    const scenario = findScenario("native-sva");
    if (scenario === undefined) throw new Error("native-sva is listed");
    const html = renderHtmlReport(scenario.run({ seed: 1, platform: "vtd" }), { scenario: "native-sva", platform: "vtd", seed: 1 });
    expect(swimlane(html)).toContain("<b>vtd.<wbr>invalidation</b>");
    expect(html).not.toMatch(/#swimlane td \{[^}]*overflow-wrap: anywhere/);
    // The lanes keep a minimum width (the page scrolls sideways below it) rather than squeezing words.
    expect(html).toMatch(/<table id="swimlane" style="min-width:\d+px">/);
  });

  for (const name of ["ioasid-lifecycle", "ioasid-free-before-unbind"]) {
    it(`${name}: rows numbered from 1, the guest's markers span the lanes, every layer's row in its own lane`, () => {
      const scenario = findScenario(name);
      if (scenario === undefined) throw new Error(`${name} is listed`);
      const result = scenario.run({ seed: 1 });
      expect(result.rows.map((r) => r.step)).toEqual(result.rows.map((_, i) => i + 1));
      const rows = bodyRows(renderHtmlReport(result, { scenario: name, seed: 1 }));
      expect(rows[0]).toMatch(/data-step="1"/);
      const lanes = ["VFIO", "IOMMU", "KVM", "VDCM", "IOASID"];
      rows.forEach((tr, i) => {
        const r = result.rows[i];
        if (r === undefined) throw new Error("as many rows as timeline rows");
        if (r.actor === "GUEST") {
          expect(tr).toMatch(/^<tr class="step"/);
          expect(r.text).not.toMatch(/^-/);
        } else {
          expect(lanes).toContain(r.actor);
          const cells = cellsOf(tr).slice(1, 1 + lanes.length);
          cells.forEach((c, j) => {
            expect(c !== "", `${r.actor}: ${r.text}`).toBe(lanes[j] === r.actor);
          });
        }
      });
      expect(result.rows.some((r) => r.actor === "GUEST")).toBe(true);
    });
  }
});

describe("renderHtmlReport: verdict", () => {
  it("says PASS and lists no violations when every invariant held", () => {
    const html = renderHtmlReport(smallResult(), { scenario: "small", seed: 3 });
    expect(html).toContain(`<div class="verdict pass">PASS</div>`);
    expect(html).not.toContain(`class="violations"`);
    expect(html).toMatch(/<title>vsva small: PASS<\/title>/);
  });

  it("says FAIL and lists every violation, escaped, before the swimlane", () => {
    const violations = [`after "bind": refcount 2 ${HOSTILE}`, "PASID 1 leaked"];
    const html = renderHtmlReport(smallResult(violations), { scenario: "small", platform: "vtd", seed: 3 });
    expect(html).toContain(`<div class="verdict fail">FAIL</div>`);
    expect(html).toMatch(/<title>vsva small \[vtd\]: FAIL<\/title>/);
    const list = /<ol class="violations">([\s\S]*?)<\/ol>/.exec(html)?.[1] ?? "";
    expect([...list.matchAll(/<li>([\s\S]*?)<\/li>/g)].map((m) => m[1])).toEqual([
      "after &quot;bind&quot;: refcount 2 &lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;",
      "PASID 1 leaked",
    ]);
    expect(html.indexOf(`class="violations"`)).toBeLessThan(html.indexOf(`id="swimlane"`));
  });
});

describe("renderHtmlReport: escaping", () => {
  it("shows a <script> in a title, a step or a payload as text: the page has only its own two scripts", () => {
    const html = renderHtmlReport(smallResult([HOSTILE]), { scenario: `s${HOSTILE}`, platform: HOSTILE, seed: 3 });
    expect(html.match(/<script/g)).toHaveLength(2);
    expect(html.match(/<\/script/g)).toHaveLength(2);
    expect(html).not.toContain(HOSTILE);
    expect(html).toContain("open the device &lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;");
    // The payload string survives intact through the JSON block.
    const log = embeddedEvents(html).find((e) => e.kind === "kernel.log");
    expect(log?.payload).toMatchObject({ message: HOSTILE });
  });

  it("is well formed enough to render: every row and cell it opens, it closes", () => {
    const html = renderHtmlReport(smallResult([HOSTILE]), { scenario: "small", seed: 3 });
    for (const tag of ["tr", "td", "th", "table", "svg", "section", "header", "main", "aside"]) {
      expect(html.match(new RegExp(`<${tag}[ >]`, "g"))?.length ?? 0, tag).toBe(html.match(new RegExp(`</${tag}>`, "g"))?.length ?? 0);
    }
  });

  it("needs nothing from the network: no external script, stylesheet, font or image", () => {
    const html = renderHtmlReport(smallResult(), { scenario: "small", seed: 3 });
    expect(html).not.toMatch(/\b(src|href)=/);
    expect(html).not.toMatch(/@import|url\(|https?:\/\//);
  });
});

describe("renderHtmlReport: determinism", () => {
  it("gives the same bytes for the same input", () => {
    const result = smallResult(["v"]);
    expect(renderHtmlReport(result, { scenario: "small", seed: 3 })).toBe(renderHtmlReport(result, { scenario: "small", seed: 3 }));
  });
});

describe("renderHtmlReport: whole scenarios", () => {
  for (const name of ["native-sva", "page-request"]) {
    it(`reports ${name}: PASS, every row, every event, the same bytes on a second run`, () => {
      const scenario = findScenario(name);
      if (scenario === undefined) throw new Error(`${name} is listed`);
      const render = (): { html: string; result: ScenarioResult } => {
        const result = scenario.run({ seed: 1, platform: "vtd" });
        return { html: renderHtmlReport(result, { scenario: name, platform: "vtd", seed: 1 }), result };
      };
      const { html, result } = render();
      expect(result.violations).toEqual([]);
      expect(html).toContain(`<div class="verdict pass">PASS</div>`);
      expect(bodyRows(html)).toHaveLength(result.rows.length);
      expect(bodyRows(html).filter((tr) => tr.startsWith(`<tr class="step"`))).toHaveLength(result.rows.filter((r) => r.actor === "USER").length);
      // Every event row points at an event the page carries.
      const carried = new Set(embeddedEvents(html).map((e) => e.seq));
      const pointed = bodyRows(html).flatMap((tr) => [...tr.matchAll(/data-seq="(\d+)"/g)].map((m) => Number(m[1])));
      expect(pointed.length).toBeGreaterThan(10);
      expect(pointed.every((s) => carried.has(s))).toBe(true);
      expect(embeddedEvents(html)).toHaveLength(result.events.length);
      expect(html).toMatch(/<svg class="chart"/);
      expect(render().html).toBe(html);
    });
  }
});
