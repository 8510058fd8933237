import type { TraceBus } from "@vsva/kernel";
import type { EndpointPort, PageResponseCode } from "../iommu-port.js";
import type { Layout } from "@vsva/pgtable";
import type { SmmuCaches } from "./caches.js";
import { TlbClass } from "./caches.js";
import type { SmmuConfig } from "./options.js";
import { CmdqError } from "./regs.js";
import {
  ATC_INV_SIZE_ALL,
  CMD_NAMES,
  CmdAtcInv,
  CmdCfgiCd,
  CmdCfgiCdAll,
  CmdCfgiSte,
  CmdCfgiSteRange,
  CmdOp,
  CmdPrefetchAddr,
  CmdPrefetchConfig,
  CmdPriResp,
  CmdResume,
  CmdStallTerm,
  CmdSync,
  CmdTlbiEl2All,
  CmdTlbiEl2Asid,
  CmdTlbiEl2Va,
  CmdTlbiEl2Vaa,
  CmdTlbiNhAll,
  CmdTlbiNhAsid,
  CmdTlbiNhVa,
  CmdTlbiNhVaa,
  CmdTlbiNsnhAll,
  CmdTlbiS12Vmall,
  CmdTlbiS2Ipa,
  PriRespCode,
} from "./structures.js";
import "./trace-events.js";

/** What the command executor needs from the unit. */
export interface CommandContext {
  readonly cfg: SmmuConfig;
  readonly caches: SmmuCaches;
  endpoint(sid: number): EndpointPort | undefined;
  /** CMD_SYNC completion signal: CS (1 IRQ/MSI, 2 SEV), MSI address and data. */
  syncSignal(cs: number, msiAddr: number, msiData: number): void;
  /** CMD_RESUME / CMD_STALL_TERM on a stalled transaction (stall model only). */
  resume(sid: number, stag: number | null, resp: number): void;
  /** CFGI_STE / CFGI_STE_RANGE / CFGI_ALL over StreamIDs [first, last]: stalls of a stream now disabled are terminated. */
  steInvalidated(first: number, last: number): void;
  /** Any configuration or TLB invalidation: the translator's micro-TLB must not outlive it. */
  invalidated(): void;
  readonly trace: TraceBus | undefined;
  readonly unit: string;
}

const LAYOUTS: ReadonlyMap<number, Layout<string>> = new Map<number, Layout<string>>([
  [CmdOp.PREFETCH_CONFIG, CmdPrefetchConfig],
  [CmdOp.PREFETCH_ADDR, CmdPrefetchAddr],
  [CmdOp.CFGI_STE, CmdCfgiSte],
  [CmdOp.CFGI_STE_RANGE, CmdCfgiSteRange],
  [CmdOp.CFGI_CD, CmdCfgiCd],
  [CmdOp.CFGI_CD_ALL, CmdCfgiCdAll],
  [CmdOp.TLBI_NH_ALL, CmdTlbiNhAll],
  [CmdOp.TLBI_NH_ASID, CmdTlbiNhAsid],
  [CmdOp.TLBI_NH_VA, CmdTlbiNhVa],
  [CmdOp.TLBI_NH_VAA, CmdTlbiNhVaa],
  [CmdOp.TLBI_EL2_ALL, CmdTlbiEl2All],
  [CmdOp.TLBI_EL2_ASID, CmdTlbiEl2Asid],
  [CmdOp.TLBI_EL2_VA, CmdTlbiEl2Va],
  [CmdOp.TLBI_EL2_VAA, CmdTlbiEl2Vaa],
  [CmdOp.TLBI_S12_VMALL, CmdTlbiS12Vmall],
  [CmdOp.TLBI_S2_IPA, CmdTlbiS2Ipa],
  [CmdOp.TLBI_NSNH_ALL, CmdTlbiNsnhAll],
  [CmdOp.ATC_INV, CmdAtcInv],
  [CmdOp.PRI_RESP, CmdPriResp],
  [CmdOp.RESUME, CmdResume],
  [CmdOp.STALL_TERM, CmdStallTerm],
  [CmdOp.SYNC, CmdSync],
]);

const NH = [TlbClass.S1, TlbClass.NESTED] as const;
const EL2 = [TlbClass.EL2] as const;
const TWO32 = 2 ** 32;
const TWO63 = 2 ** 63;
const TWO64 = 2 ** 64;

/**
 * Executes one command (SMMUv3 spec chapter 4). Returns CMDQ_CONS.ERR: NONE, or
 * ILL for an unknown opcode, a set reserved bit (every bit the command's
 * layout does not declare), or a command for a feature the unit does not
 * implement (TLBI_EL2_* without HYP, TLBI_EL3_* in a non-secure model,
 * ATC_INV without ATS, PRI_RESP without PRI, RESUME without stall,
 * NUM/SCALE without RIL, an ASID or VMID wider than IDR0 allows).
 */
export function executeCommand(ctx: CommandContext, cmd: Uint32Array): number {
  const opcode = (cmd[0] ?? 0) & 0xff;
  const layout = LAYOUTS.get(opcode);
  if (layout === undefined || layout.hasReservedBits(cmd)) return CmdqError.ILL;
  const g = (f: string): number => layout.get(cmd, f);
  const has = (f: string): boolean => layout.fieldNames.includes(f);
  const { cfg, caches } = ctx;
  if (has("ASID") && !cfg.asid16 && g("ASID") > 0xff) return CmdqError.ILL;
  if (has("VMID") && !cfg.vmid16 && g("VMID") > 0xff) return CmdqError.ILL;
  if (has("NUM") && !cfg.ril && (g("NUM") !== 0 || g("SCALE") !== 0)) return CmdqError.ILL;

  let removed = 0;
  let sid: number | null = has("SID") ? g("SID") : null;
  const range = (): { addr: number; size: number } => {
    let addr = layout.getAddr(cmd, "ADDR");
    if (addr >= TWO63) addr -= TWO64;
    const tg = g("TG");
    if (tg === 0) return { addr, size: 4096 };
    const granule = 2 ** (10 + 2 * tg);
    return { addr: Math.floor(addr / granule) * granule, size: (g("NUM") + 1) * 2 ** g("SCALE") * granule };
  };
  const leaf = (): boolean => g("LEAF") === 1;

  switch (opcode) {
    case CmdOp.PREFETCH_CONFIG:
    case CmdOp.PREFETCH_ADDR:
      // Prefetching is a hint; doing nothing is a correct implementation.
      break;
    case CmdOp.CFGI_STE: {
      const s = g("SID");
      removed = caches.invalidateStes(s, s);
      ctx.steInvalidated(s, s);
      break;
    }
    case CmdOp.CFGI_STE_RANGE: {
      // Range = 31 is CFGI_ALL (⚠ QEMU's opcode 0x07 "CFGI_ALL" is not architectural, SMMUv3 spec chapter 4).
      const span = 2 ** (g("RANGE") + 1);
      const first = Math.floor(g("SID") / span) * span;
      if (g("RANGE") === 31) {
        removed = caches.ste.invalidateAll() + caches.cd.invalidateAll();
        sid = null;
        ctx.steInvalidated(0, TWO32 - 1);
      } else {
        removed = caches.invalidateStes(first, first + span - 1);
        ctx.steInvalidated(first, first + span - 1);
      }
      break;
    }
    case CmdOp.CFGI_CD:
      removed = caches.cd.invalidate(g("SID"), g("SSID")) ? 1 : 0;
      break;
    case CmdOp.CFGI_CD_ALL:
      removed = caches.cd.invalidateTag(g("SID"));
      break;
    case CmdOp.TLBI_NH_ALL:
      if (!cfg.stage1) return CmdqError.ILL;
      removed = caches.invalidateVmidS1(NH, g("VMID"));
      break;
    case CmdOp.TLBI_NH_ASID:
      if (!cfg.stage1) return CmdqError.ILL;
      removed = caches.invalidateAsid(NH, g("VMID"), g("ASID"));
      break;
    case CmdOp.TLBI_NH_VA: {
      if (!cfg.stage1) return CmdqError.ILL;
      const r = range();
      removed = caches.invalidateVa(NH, g("VMID"), g("ASID"), r.addr, r.size, leaf());
      break;
    }
    case CmdOp.TLBI_NH_VAA: {
      if (!cfg.stage1) return CmdqError.ILL;
      const r = range();
      removed = caches.invalidateVaAllAsids(NH, g("VMID"), r.addr, r.size, leaf());
      break;
    }
    case CmdOp.TLBI_EL2_ALL:
      if (!cfg.hyp) return CmdqError.ILL;
      removed = caches.invalidateVmidS1(EL2, 0);
      break;
    case CmdOp.TLBI_EL2_ASID:
      if (!cfg.hyp) return CmdqError.ILL;
      removed = caches.invalidateAsid(EL2, 0, g("ASID"));
      break;
    case CmdOp.TLBI_EL2_VA: {
      if (!cfg.hyp) return CmdqError.ILL;
      const r = range();
      removed = caches.invalidateVa(EL2, 0, g("ASID"), r.addr, r.size, leaf());
      break;
    }
    case CmdOp.TLBI_EL2_VAA: {
      if (!cfg.hyp) return CmdqError.ILL;
      const r = range();
      removed = caches.invalidateVaAllAsids(EL2, 0, r.addr, r.size, leaf());
      break;
    }
    case CmdOp.TLBI_S12_VMALL:
      if (!cfg.stage2) return CmdqError.ILL;
      removed = caches.invalidateVmidAll(g("VMID"));
      break;
    case CmdOp.TLBI_S2_IPA: {
      if (!cfg.stage2) return CmdqError.ILL;
      const r = range();
      removed = caches.invalidateIpa(g("VMID"), r.addr, r.size, leaf());
      break;
    }
    case CmdOp.TLBI_NSNH_ALL:
      // Every non-secure non-hyp entry; the EL2 entries go too (invalidating more is always allowed).
      removed = caches.invalidateAllTranslations();
      break;
    case CmdOp.ATC_INV: {
      if (!cfg.ats) return CmdqError.ILL;
      const sizeCode = g("SIZE");
      if (sizeCode > ATC_INV_SIZE_ALL) return CmdqError.ILL;
      const size = 2 ** (12 + sizeCode);
      const addr = sizeCode === ATC_INV_SIZE_ALL ? 0 : Math.floor(layout.getAddr(cmd, "ADDR") / size) * size;
      const ep = ctx.endpoint(g("SID"));
      const ssv = g("SSV") === 1;
      ep?.invalidateDeviceTlb({ ...(ssv ? { pasid: g("SSID") } : {}), global: g("GLOBAL") === 1, addr, size });
      break;
    }
    case CmdOp.PRI_RESP: {
      if (!cfg.pri) return CmdqError.ILL;
      const resp = g("RESP");
      if (resp === 3) return CmdqError.ILL;
      const code: PageResponseCode = resp === PriRespCode.SUCCESS ? "success" : resp === PriRespCode.FAILURE ? "failure" : "invalid";
      const s = g("SID");
      const ssv = g("SSV") === 1;
      const r = { sid: s as EndpointPort["sid"], groupIndex: g("PRGINDEX"), code };
      ctx.endpoint(s)?.pageResponse(ssv ? { ...r, pasid: g("SSID") } : r);
      ctx.trace?.emit("smmu.page-response", "HW", {}, { unit: ctx.unit, sid: s, ssid: ssv ? g("SSID") : null, groupIndex: r.groupIndex, code, auto: false });
      break;
    }
    case CmdOp.RESUME:
      if (!cfg.stall || g("RESP") === 3) return CmdqError.ILL;
      ctx.resume(g("SID"), g("STAG"), g("RESP"));
      break;
    case CmdOp.STALL_TERM:
      if (!cfg.stall) return CmdqError.ILL;
      ctx.resume(g("SID"), null, 0);
      break;
    case CmdOp.SYNC: {
      const cs = g("CS");
      if (cs === 3) return CmdqError.ILL;
      ctx.syncSignal(cs, layout.getAddr(cmd, "MSIADDR"), g("MSIDATA"));
      break;
    }
  }
  if (removed > 0) ctx.invalidated();
  ctx.trace?.emit("smmu.command", "HW", {}, { unit: ctx.unit, opcode, name: CMD_NAMES[opcode] ?? "?", sid, removed });
  return CmdqError.NONE;
}
