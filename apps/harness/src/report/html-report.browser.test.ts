/// <reference lib="dom" />
// The functions passed to page.evaluate run in the browser, so this file needs the DOM types.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, type Page, chromium } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import type { ScenarioResult } from "../scenario.js";
import { findScenario } from "../scenarios/index.js";
import { renderHtmlReport } from "./html-report.js";

/**
 * The HTML report as a person sees it: rendered by headless Chromium at a
 * narrow (800 px) and a wide (1280 px) window, for a multi-lane scenario
 * and an IOASID-only one. The browser is the system's (`.ci/run` installs it
 * when it is missing); none is downloaded. If it cannot start, these tests
 * fail saying so: a report check that skips itself checks nothing.
 */
const CHROMIUM = "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const WIDTHS = [800, 1280] as const;
const HEIGHT = 900;

let profile: string | undefined;
/** Started by the first test that needs it; a failure to start fails every test, with its reason. */
let started: Promise<BrowserContext> | undefined;

async function launch(): Promise<BrowserContext> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`headless Chromium is needed for the report checks and ${CHROMIUM} does not exist: install it (apt-get install chromium; .ci/run does)`);
  }
  // A fresh profile each run (Playwright passes it as --user-data-dir).
  profile = mkdtempSync(join(tmpdir(), "vsva-report-chromium-"));
  try {
    return await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: WIDTHS[0], height: HEIGHT } });
  } catch (e) {
    throw new Error(`headless Chromium (${CHROMIUM}) could not start, so the report could not be checked: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

function run(name: string, platform?: "vtd"): { result: ScenarioResult; html: string } {
  const scenario = findScenario(name);
  if (scenario === undefined) throw new Error(`${name} is listed`);
  const result = platform === undefined ? scenario.run({ seed: 1 }) : scenario.run({ seed: 1, platform });
  const html = renderHtmlReport(result, platform === undefined ? { scenario: name, seed: 1 } : { scenario: name, platform, seed: 1 });
  return { result, html };
}

async function open(html: string, width: number): Promise<Page> {
  started ??= launch();
  const page = await (await started).newPage();
  await page.setViewportSize({ width, height: HEIGHT });
  await page.setContent(html, { waitUntil: "load" });
  return page;
}

interface LaneFacts {
  /** Lane header: actor → the count it shows. */
  readonly headers: Record<string, number>;
  /** The actor table in the page header: actor → rows. */
  readonly totals: Record<string, number>;
  /** Rows the swimlane draws per actor (data-actor). */
  readonly drawn: Record<string, number>;
  /** Event rows whose filled cell is not under their actor's lane header (actors that have a lane). */
  readonly misplaced: string[];
  /** The # column of the first body row. */
  readonly firstStep: string;
  /** Gap in px between the header row and the first body row. */
  readonly firstRowGap: number;
}

/** Reads the lane headers, the actor totals and where each row is drawn, from the rendered page. */
function laneFacts(page: Page): Promise<LaneFacts> {
  return page.evaluate(() => {
    const num = (s: string | null | undefined): number => Number((s ?? "").trim());
    const lanes = [...document.querySelectorAll<HTMLTableCellElement>("#swimlane thead th.lane")].map((th) => ({
      actor: (th.firstChild?.textContent ?? "").trim(),
      n: num(th.querySelector(".n")?.textContent),
      cell: th.cellIndex,
    }));
    const headers: Record<string, number> = {};
    for (const l of lanes) headers[l.actor] = l.n;
    const totals: Record<string, number> = {};
    for (const tr of document.querySelectorAll("#actor-counts tbody tr")) {
      const actor = (tr.querySelector("th")?.textContent ?? "").trim();
      totals[actor] = num(tr.querySelector("td.n")?.textContent);
    }
    const drawn: Record<string, number> = {};
    const misplaced: string[] = [];
    const rows = [...document.querySelectorAll<HTMLTableRowElement>("#swimlane tbody tr")];
    for (const tr of rows) {
      const actor = tr.dataset.actor ?? "";
      drawn[actor] = (drawn[actor] ?? 0) + 1;
      const lane = lanes.find((l) => l.actor === actor);
      if (tr.classList.contains("ev") && lane !== undefined) {
        const filled = [...tr.cells].filter((c) => c.classList.contains("lane") && c.textContent !== "").map((c) => c.cellIndex);
        if (filled.length !== 1 || filled[0] !== lane.cell) misplaced.push(`#${tr.dataset.step ?? "?"} ${actor}`);
      }
    }
    const head = document.querySelector("#swimlane thead tr")?.getBoundingClientRect();
    const first = rows[0]?.getBoundingClientRect();
    return {
      headers,
      totals,
      drawn,
      misplaced,
      firstStep: (rows[0]?.cells[0]?.textContent ?? "").trim(),
      firstRowGap: first === undefined || head === undefined ? Number.NaN : first.top - head.bottom,
    };
  });
}

/** Words (runs of letters, digits and _) in the swimlane's cells that the browser laid out over more than one line. */
function brokenWords(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const broken: string[] = [];
    for (const td of document.querySelectorAll("#swimlane td")) {
      const walk = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
      for (let n = walk.nextNode(); n !== null; n = walk.nextNode()) {
        const text = n.textContent ?? "";
        for (const m of text.matchAll(/[A-Za-z0-9_]{2,}/g)) {
          const range = document.createRange();
          range.setStart(n, m.index);
          range.setEnd(n, m.index + m[0].length);
          const lines = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
          if (lines.size > 1) broken.push(m[0]);
        }
      }
    }
    return broken;
  });
}

interface Readability {
  /** Pairs of lane headers whose boxes overlap (by more than half a pixel). */
  readonly overlapping: string[];
  /** Lane headers whose text is wider than their box (clipped or spilling into the next). */
  readonly clippedHeaders: string[];
  /** Event cells whose content is wider than the cell. */
  readonly overflowingCells: string[];
  /** Event lanes narrower than an 8-character word at their font: a lane no one could read. */
  readonly narrowLanes: string[];
  /** Whether the refcount chart is drawn with at least one point. */
  readonly refcountPoints: number;
}

/** What makes a many-lane page unreadable, measured on the rendered boxes. */
function readability(page: Page): Promise<Readability> {
  return page.evaluate(() => {
    const ths = [...document.querySelectorAll<HTMLTableCellElement>("#swimlane thead th.lane")];
    const boxes = ths.map((th) => ({ name: (th.firstChild?.textContent ?? "").trim(), r: th.getBoundingClientRect(), th }));
    const overlapping: string[] = [];
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const [a, b] = [boxes[i], boxes[j]];
        if (a === undefined || b === undefined) continue;
        const w = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
        const h = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
        if (w > 0.5 && h > 0.5) overlapping.push(`${a.name} / ${b.name}`);
      }
    }
    const clippedHeaders = boxes.filter((b) => b.th.scrollWidth > b.th.clientWidth + 1).map((b) => `${b.name} (${String(b.th.scrollWidth)} > ${String(b.th.clientWidth)} px)`);
    const probe = document.createElement("span");
    probe.textContent = "MMMMMMMM";
    probe.style.cssText = "position:absolute;visibility:hidden;font:inherit";
    ths[0]?.appendChild(probe);
    const word = probe.getBoundingClientRect().width;
    probe.remove();
    // The step actor's lane (USER) is narrow on purpose: its rows are section headers spanning every lane.
    const narrowLanes = boxes.filter((b) => b.name !== "USER" && b.r.width < word).map((b) => `${b.name} (${String(Math.round(b.r.width))} px)`);
    const overflowingCells = [...document.querySelectorAll<HTMLTableCellElement>("#swimlane td.cell")]
      .filter((td) => td.scrollWidth > td.clientWidth + 1)
      .map((td) => `#${(td.parentElement as HTMLTableRowElement | null)?.dataset.step ?? "?"}`);
    return { overlapping, clippedHeaders, overflowingCells, narrowLanes, refcountPoints: document.querySelectorAll(".chart .point").length };
  });
}

/**
 * The share of the swimlane's on-screen area the selected-row panel covers, with the page
 * scrolled to the swimlane (as one reads it) and a row on screen selected.
 */
async function panelCover(page: Page): Promise<{ covered: number; swimlaneVisible: number }> {
  await page.evaluate(() => {
    document.querySelector("#swimlane")?.scrollIntoView({ block: "start" });
  });
  const row = page.locator("#swimlane tbody tr.ev").first();
  await row.click();
  return page.evaluate(() => {
    const vw = window.innerWidth;
    const vh = window.innerHeight;
    const clip = (r: DOMRect) => ({ l: Math.max(0, r.left), t: Math.max(0, r.top), r: Math.min(vw, r.right), b: Math.min(vh, r.bottom) });
    const area = (x: { l: number; t: number; r: number; b: number }): number => Math.max(0, x.r - x.l) * Math.max(0, x.b - x.t);
    const lanes = document.querySelector("section.lanes")?.getBoundingClientRect();
    const swim = document.querySelector("#swimlane")?.getBoundingClientRect();
    const panel = document.querySelector("aside")?.getBoundingClientRect();
    if (lanes === undefined || swim === undefined || panel === undefined) return { covered: Number.NaN, swimlaneVisible: 0 };
    // What of the swimlane is on screen: its box, cut to the viewport and to its scrolling section.
    const s = clip(swim);
    const sec = clip(lanes);
    const visible = { l: Math.max(s.l, sec.l), t: Math.max(s.t, sec.t), r: Math.min(s.r, sec.r), b: Math.min(s.b, sec.b) };
    const p = clip(panel);
    const overlap = { l: Math.max(visible.l, p.l), t: Math.max(visible.t, p.t), r: Math.min(visible.r, p.r), b: Math.min(visible.b, p.b) };
    const v = area(visible);
    return { covered: v === 0 ? Number.NaN : area(overlap) / v, swimlaneVisible: v };
  });
}

describe("the HTML report in headless Chromium", { timeout: 120_000 }, () => {
  afterAll(async () => {
    const context = await started?.catch(() => undefined);
    await context?.close();
    if (profile !== undefined) rmSync(profile, { recursive: true, force: true });
  });

  for (const width of WIDTHS) {
    it(`native-sva at ${width} px: lane headers, actor totals and drawn rows agree; no identifier broken mid-word; the panel leaves most of the swimlane visible`, async () => {
      const { result, html } = run("native-sva", "vtd");
      const page = await open(html, width);
      try {
        const f = await laneFacts(page);
        expect(Object.keys(f.headers)).toEqual(result.columns);
        for (const [actor, n] of Object.entries(f.headers)) {
          expect(f.totals[actor], `${actor}: actor table vs lane header`).toBe(n);
          expect(f.drawn[actor] ?? 0, `${actor}: rows drawn vs lane header`).toBe(n);
        }
        expect(f.misplaced).toEqual([]);
        expect(f.firstStep).toBe("1");
        expect(await brokenWords(page)).toEqual([]);
        const cover = await panelCover(page);
        expect(cover.swimlaneVisible).toBeGreaterThan(0);
        expect(cover.covered, `the selected-row panel covers ${String(Math.round(cover.covered * 100))}% of the visible swimlane`).toBeLessThan(0.5);
      } finally {
        await page.close();
      }
    });
  }

  for (const width of WIDTHS) {
    it(`guest-crash (two VMs) at ${width} px: each guest's lanes ("vm1 …", "vm2 …") beside the host's, each with its own rows and totals; no identifier broken mid-word`, async () => {
      const { result, html } = run("guest-crash", "vtd");
      const page = await open(html, width);
      try {
        const f = await laneFacts(page);
        expect(Object.keys(f.headers)).toEqual(result.columns);
        const guestLanes = result.columns.filter((c) => /^vm[12] /.test(c));
        expect(guestLanes).toEqual(expect.arrayContaining(["vm1 IOMMU", "vm1 IOASID", "vm2 IOMMU", "vm2 IOASID"]));
        expect(result.columns).toEqual(expect.arrayContaining(["IOMMU", "IOASID", "VFIO"]));
        for (const [actor, n] of Object.entries(f.headers)) {
          expect(f.totals[actor], `${actor}: actor table vs lane header`).toBe(n);
          expect(f.drawn[actor] ?? 0, `${actor}: rows drawn vs lane header`).toBe(n);
        }
        for (const lane of guestLanes) expect(f.drawn[lane] ?? 0, lane).toBeGreaterThan(0);
        expect(f.misplaced).toEqual([]);
        expect(await brokenWords(page)).toEqual([]);
      } finally {
        await page.close();
      }
    });
  }

  for (const width of WIDTHS) {
    it(`ioasid-lifecycle (IOASID-only) at ${width} px: rows start at row 1 right under the headers, each in its actor's lane`, async () => {
      const { result, html } = run("ioasid-lifecycle");
      const page = await open(html, width);
      try {
        const f = await laneFacts(page);
        expect(f.firstStep).toBe("1");
        expect(Math.abs(f.firstRowGap)).toBeLessThan(2);
        expect(f.misplaced).toEqual([]);
        for (const [actor, n] of Object.entries(f.headers)) {
          expect(f.totals[actor], `${actor}: actor table vs lane header`).toBe(n);
          expect(f.drawn[actor] ?? 0, `${actor}: rows drawn vs lane header`).toBe(n);
        }
        // Every lane actor's rows are drawn, and there are some.
        expect(Object.values(f.drawn).reduce((a, b) => a + b, 0)).toBe(result.rows.length);
        expect(await brokenWords(page)).toEqual([]);
        const cover = await panelCover(page);
        expect(cover.covered).toBeLessThan(0.5);
      } finally {
        await page.close();
      }
    });
  }
  for (const width of WIDTHS) {
    it(`flagship (two VMs beside host users) at ${width} px: both VMs' lanes beside the host's, each with its rows; lane headers side by side without overlap, none clipped or too narrow to read; no cell overflows; the refcount track drawn`, async () => {
      const { result, html } = run("flagship", "vtd");
      expect(result.violations).toEqual([]);
      const page = await open(html, width);
      try {
        const f = await laneFacts(page);
        expect(Object.keys(f.headers)).toEqual(result.columns);
        const guestLanes = result.columns.filter((c) => /^vm[12] /.test(c));
        for (const vm of ["vm1", "vm2"]) {
          for (const actor of ["IOMMU", "IOASID", "DEVICE"]) expect(guestLanes, `${vm} ${actor}`).toContain(`${vm} ${actor}`);
        }
        expect(result.columns).toEqual(expect.arrayContaining(["IOMMU", "IOASID", "VFIO", "KVM", "VDCM", "DEVICE"]));
        for (const [actor, n] of Object.entries(f.headers)) {
          expect(f.totals[actor], `${actor}: actor table vs lane header`).toBe(n);
          expect(f.drawn[actor] ?? 0, `${actor}: rows drawn vs lane header`).toBe(n);
        }
        for (const lane of guestLanes) expect(f.drawn[lane] ?? 0, lane).toBeGreaterThan(0);
        expect(f.misplaced).toEqual([]);
        const r = await readability(page);
        expect(r.overlapping).toEqual([]);
        expect(r.clippedHeaders).toEqual([]);
        expect(r.narrowLanes).toEqual([]);
        expect(r.overflowingCells).toEqual([]);
        expect(r.refcountPoints).toBeGreaterThan(0);
        expect(await brokenWords(page)).toEqual([]);
      } finally {
        await page.close();
      }
    });
  }
});
