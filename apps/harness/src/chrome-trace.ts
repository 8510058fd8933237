import { HOST_CONTEXT, type TraceEvent } from "@vsva/kernel";

/**
 * Converts trace-bus events to the Chrome trace-event JSON format, which
 * Perfetto (ui.perfetto.dev) and chrome://tracing open.
 *
 * One process per kernel context (the host, each VM), so guest and host lanes
 * sit side by side; in it one track ("thread") per actor, each event an
 * instant on its actor's track; and every reference count reported with an
 * event as a counter track, so the refcount column of the ioasid.rst life-cycle tables
 * becomes a graph.
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

export function toChromeTrace(events: readonly TraceEvent[], title: string): ChromeTrace {
  const out: ChromeEvent[] = [];
  const pids = new Map<string, number>();
  const tids = new Map<string, number>();
  const pidOf = (context: string): number => {
    let pid = pids.get(context);
    if (pid === undefined) {
      pid = pids.size + 1;
      pids.set(context, pid);
      out.push({ name: "process_name", ph: "M", ts: 0, pid, tid: 0, args: { name: `vsva: ${title} [${context}]` } });
    }
    return pid;
  };
  const tidOf = (pid: number, actor: string): number => {
    const key = `${pid}/${actor}`;
    let tid = tids.get(key);
    if (tid === undefined) {
      tid = tids.size + 1;
      tids.set(key, tid);
      out.push({ name: "thread_name", ph: "M", ts: 0, pid, tid, args: { name: actor } });
    }
    return tid;
  };
  pidOf(HOST_CONTEXT); // the host is process 1, events or not
  for (const e of events) {
    const ts = e.seq;
    const pid = pidOf(e.context);
    out.push({
      name: e.kind,
      cat: e.actor,
      ph: "i",
      s: "t",
      ts,
      pid,
      tid: tidOf(pid, e.actor),
      args: { virtualTimeNs: e.time, ids: e.ids, payload: e.payload, ...(e.refcount === undefined ? {} : { refcount: e.refcount }) },
    });
    if (e.refcount !== undefined) {
      const id = e.ids.ioasid ?? e.ids.hpasid;
      out.push({ name: `refcount${id === undefined ? "" : ` ioasid ${id}`}`, ph: "C", ts, pid, tid: 0, args: { refs: e.refcount } });
    }
  }
  return { traceEvents: out, displayTimeUnit: "ns", otherData: { generator: "vsva" } };
}
