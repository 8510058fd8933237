import type { TraceEvent } from "@vsva/kernel";

/**
 * Converts trace-bus events to the Chrome trace-event JSON format, which
 * Perfetto (ui.perfetto.dev) and chrome://tracing open.
 *
 * One track ("thread") per actor, each event an instant on its actor's track,
 * and every reference count reported with an event as a counter track, so the
 * refcount column of the ioasid.rst life-cycle tables becomes a graph.
 *
 * The time axis is the event order, one microsecond per event: in a functional
 * simulator the virtual clock stands still across most steps, and a lifecycle
 * is read as a sequence. The virtual time in ns is kept in each event's args.
 */
interface ChromeEvent {
  readonly name: string;
  readonly ph: "i" | "C" | "M";
  readonly ts: number;
  readonly pid: number;
  readonly tid: number;
  readonly s?: "t";
  readonly cat?: string;
  readonly args: Record<string, unknown>;
}

export interface ChromeTrace {
  readonly traceEvents: readonly ChromeEvent[];
  readonly displayTimeUnit: "ns";
  readonly otherData: Record<string, string>;
}

const PID = 1;

export function toChromeTrace(events: readonly TraceEvent[], title: string): ChromeTrace {
  const tids = new Map<string, number>();
  const out: ChromeEvent[] = [{ name: "process_name", ph: "M", ts: 0, pid: PID, tid: 0, args: { name: `vsva: ${title}` } }];
  const tidOf = (actor: string): number => {
    let tid = tids.get(actor);
    if (tid === undefined) {
      tid = tids.size + 1;
      tids.set(actor, tid);
      out.push({ name: "thread_name", ph: "M", ts: 0, pid: PID, tid, args: { name: actor } });
    }
    return tid;
  };
  for (const e of events) {
    const ts = e.seq;
    out.push({
      name: e.kind,
      cat: e.actor,
      ph: "i",
      s: "t",
      ts,
      pid: PID,
      tid: tidOf(e.actor),
      args: { virtualTimeNs: e.time, ids: e.ids, payload: e.payload, ...(e.refcount === undefined ? {} : { refcount: e.refcount }) },
    });
    if (e.refcount !== undefined) {
      const id = e.ids.ioasid ?? e.ids.hpasid;
      out.push({ name: `refcount${id === undefined ? "" : ` ioasid ${id}`}`, ph: "C", ts, pid: PID, tid: 0, args: { refs: e.refcount } });
    }
  }
  return { traceEvents: out, displayTimeUnit: "ns", otherData: { generator: "vsva" } };
}
