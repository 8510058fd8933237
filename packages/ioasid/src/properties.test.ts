import { asSpid, type Ioasid, isKernelError, Kernel } from "@vsva/kernel";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IoasidCore } from "./core.js";

/**
 * Random operation sequences against a model written from the rules, not
 * from the implementation: each ID's references are the owner's (until free)
 * plus every get/findBySpid not yet put. After every step the core's refcount
 * must equal that sum (conservation), an ID is IDLE exactly when the sum is 0,
 * a refused operation changes nothing, and alloc never returns an ID that
 * still has a reference.
 */
interface ModelId {
  set: number;
  owner: boolean;
  refs: number;
  spid: number | null;
}

type Op =
  | { op: "alloc"; set: number; min: number; span: number }
  | { op: "get" | "put" | "free" | "detachSpid"; set: number; id: number }
  | { op: "attachSpid"; set: number; id: number; spid: number }
  | { op: "findBySpid"; set: number; spid: number }
  | { op: "freeSet"; set: number };

const CAPACITY = 12;
const QUOTA = 5;
const idArb = fc.integer({ min: 1, max: CAPACITY });
const setArb = fc.integer({ min: 0, max: 1 });
const spidArb = fc.integer({ min: 100, max: 103 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant("alloc" as const), set: setArb, min: fc.integer({ min: 0, max: CAPACITY }), span: fc.nat(CAPACITY) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constantFrom("get" as const, "put" as const, "free" as const, "detachSpid" as const), set: setArb, id: idArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("attachSpid" as const), set: setArb, id: idArb, spid: spidArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("findBySpid" as const), set: setArb, spid: spidArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("freeSet" as const), set: setArb }) },
);

const total = (m: ModelId) => (m.owner ? 1 : 0) + m.refs;

function run(ops: readonly Op[]): void {
  const kernel = new Kernel();
  const core = new IoasidCore({ scheduler: kernel.scheduler, trace: kernel.trace, faults: kernel.faults, capacity: CAPACITY });
  const sets = [core.allocSet({ vm: 0 }, QUOTA, "mm"), core.allocSet({ vm: 1 }, QUOTA, "mm")];
  const model = new Map<number, ModelId>();
  const setOf = (i: number) => sets[i]!;
  const owned = (s: number, id: number) => model.get(id)?.set === s;
  const reclaimIfDone = (id: number) => {
    const m = model.get(id);
    if (m !== undefined && total(m) === 0) model.delete(id);
  };

  for (const o of ops) {
    const before = core.snapshot();
    /** What the rules say: undefined = must be refused; otherwise apply to the model. */
    let expectOk: (() => void) | undefined;
    let result: unknown;
    let check: ((r: unknown) => void) | undefined;
    const m = "id" in o ? model.get(o.id) : undefined;
    switch (o.op) {
      case "alloc": {
        const inSet = [...model.values()].filter((x) => x.set === o.set).length;
        const lo = Math.max(1, o.min);
        const hi = Math.min(CAPACITY, o.min + o.span);
        let want = -1;
        for (let i = lo; i <= hi; i++) if (!model.has(i)) { want = i; break; }
        if (inSet < QUOTA && want > 0) {
          expectOk = () => model.set(want, { set: o.set, owner: true, refs: 0, spid: null });
          check = (r) => expect(r).toBe(want);
        }
        break;
      }
      case "get":
        if (m !== undefined && owned(o.set, o.id) && m.owner) expectOk = () => m.refs++;
        break;
      case "put":
        if (m !== undefined && owned(o.set, o.id) && m.refs > 0) {
          const reclaimed = total(m) === 1;
          expectOk = () => {
            m.refs--;
            reclaimIfDone(o.id);
          };
          check = (r) => expect(r).toBe(reclaimed);
        }
        break;
      case "free":
        if (m !== undefined && owned(o.set, o.id)) expectOk = () => {
            m.owner = false;
            reclaimIfDone(o.id);
          };
        break;
      case "attachSpid": {
        const used = [...model.values()].some((x) => x.set === o.set && x.spid === o.spid);
        if (m !== undefined && owned(o.set, o.id) && m.owner && m.spid === null && !used) expectOk = () => (m.spid = o.spid);
        break;
      }
      case "detachSpid":
        if (m !== undefined && owned(o.set, o.id) && m.spid !== null) expectOk = () => (m.spid = null);
        break;
      case "findBySpid": {
        const hit = [...model.entries()].find(([, x]) => x.set === o.set && x.spid === o.spid && x.owner);
        if (hit !== undefined) {
          expectOk = () => hit[1].refs++;
          check = (r) => expect(r).toBe(hit[0]);
        }
        break;
      }
      case "freeSet":
        expectOk = () => {
          for (const [id, x] of [...model.entries()]) {
            if (x.set === o.set) {
              x.owner = false;
              reclaimIfDone(id);
            }
          }
        };
        break;
    }

    let error: unknown;
    try {
      const s = setOf(o.set);
      switch (o.op) {
        case "alloc": result = core.alloc(s, o.min, o.min + o.span); break;
        case "get": core.get(s, o.id as Ioasid); break;
        case "put": result = core.put(s, o.id as Ioasid); break;
        case "free": result = core.free(s, o.id as Ioasid); break;
        case "attachSpid": core.attachSpid(s, o.id as Ioasid, asSpid(o.spid)); break;
        case "detachSpid": core.detachSpid(s, o.id as Ioasid); break;
        case "findBySpid": result = core.findBySpid(s, asSpid(o.spid)); break;
        case "freeSet": result = core.freeSet(s); break;
      }
    } catch (e) {
      if (!isKernelError(e)) throw e;
      error = e;
    }

    if (expectOk === undefined) {
      expect(error, `${JSON.stringify(o)} must be refused`).toBeDefined();
      expect(core.snapshot()).toEqual(before);
    } else {
      expect(error, `${JSON.stringify(o)} must succeed`).toBeUndefined();
      check?.(result);
      expectOk();
    }

    // Conservation: the core's refcount is exactly the model's holders, for every ID.
    for (let id = 1; id <= CAPACITY; id++) {
      const x = model.get(id);
      expect(core.refcount(id as Ioasid)).toBe(x === undefined ? 0 : total(x));
      expect(core.state(id as Ioasid)).toBe(x === undefined ? "IDLE" : x.owner ? "ACTIVE" : "FREE_PENDING");
    }
    expect(sets.map((s) => s.count)).toEqual([0, 1].map((i) => [...model.values()].filter((x) => x.set === i).length));
  }
}

describe("random operation sequences", () => {
  it("conserve references, refuse without change, and never reuse an ID that still has a reference", () => {
    fc.assert(fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => run(ops)), { numRuns: 300 });
  });
});
