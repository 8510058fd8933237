import {
  CmdResume,
  CmdStallTerm,
  ResumeResp,
  ATC_INV_SIZE_ALL,
  CmdAtcInv,
  CmdCfgiCd,
  CmdCfgiSte,
  CmdCfgiSteRange,
  CmdOp,
  CmdPriResp,
  CmdTlbiNhAsid,
  CmdTlbiNhVa,
  CmdTlbiNsnhAll,
  CmdTlbiS12Vmall,
  CmdTlbiS2Ipa,
  PriRespCode,
} from "@vsva/iommu-hw";
import type { PageResponse } from "@vsva/iommu-core";

/**
 * Command builders (`arm_smmu_cmdq_build_cmd`), each from its layout. Every
 * stage-1 command carries VMID 0: stage-1-only STEs are written with
 * S2VMID = 0, which is how the unit tags their TLB entries.
 */

const PAGE = 4096;

/** SSV and SSID of a command naming a substream, or neither. */
const substream = (ssid: number | undefined): { SSV?: number; SSID?: number } => (ssid === undefined ? {} : { SSV: 1, SSID: ssid });

/** CMD_RESUME.Resp (Linux's CMDQ_RESUME_0_RESP_*), by the driver's names. */
const RESUME_RESP = { terminate: ResumeResp.TERMINATE, retry: ResumeResp.RETRY, abort: ResumeResp.ABORT } as const;

/** CMD_RESUME for the transaction stalled under `stag` on StreamID `sid`. */
export function resume(sid: number, stag: number, action: keyof typeof RESUME_RESP): Uint32Array {
  return CmdResume.encode({ OPCODE: CmdOp.RESUME, SID: sid, STAG: stag, RESP: RESUME_RESP[action] });
}

/** CMD_STALL_TERM: every transaction stalled on StreamID `sid` is terminated. */
export function stallTerm(sid: number): Uint32Array {
  return CmdStallTerm.encode({ OPCODE: CmdOp.STALL_TERM, SID: sid });
}

export function cfgiSte(sid: number): Uint32Array {
  return CmdCfgiSte.encode({ OPCODE: CmdOp.CFGI_STE, SID: sid, LEAF: 1 });
}

/** CFGI_ALL: CFGI_STE_RANGE with Range = 31 (every STE and CD). */
export function cfgiAll(): Uint32Array {
  return CmdCfgiSteRange.encode({ OPCODE: CmdOp.CFGI_STE_RANGE, RANGE: 31 });
}

export function cfgiCd(sid: number, ssid: number): Uint32Array {
  return CmdCfgiCd.encode({ OPCODE: CmdOp.CFGI_CD, SID: sid, SSID: ssid, LEAF: 1 });
}

export function tlbiNsnhAll(): Uint32Array {
  return CmdTlbiNsnhAll.encode({ OPCODE: CmdOp.TLBI_NSNH_ALL });
}

export function tlbiNhAsid(asid: number): Uint32Array {
  return CmdTlbiNhAsid.encode({ OPCODE: CmdOp.TLBI_NH_ASID, ASID: asid });
}

/** One 4 KiB page (TG = 0: no range; a block covering it goes too). */
export function tlbiNhVa(asid: number, va: number): Uint32Array {
  const c = CmdTlbiNhVa.encode({ OPCODE: CmdOp.TLBI_NH_VA, ASID: asid });
  CmdTlbiNhVa.setAddr(c, "ADDR", va);
  return c;
}

export function tlbiS12Vmall(vmid: number): Uint32Array {
  return CmdTlbiS12Vmall.encode({ OPCODE: CmdOp.TLBI_S12_VMALL, VMID: vmid });
}

export function tlbiS2Ipa(vmid: number, ipa: number): Uint32Array {
  const c = CmdTlbiS2Ipa.encode({ OPCODE: CmdOp.TLBI_S2_IPA, VMID: vmid });
  CmdTlbiS2Ipa.setAddr(c, "ADDR", ipa);
  return c;
}

/**
 * TLBI by page over [addr, addr + size) when that is at most `maxPages`
 * commands, else the whole context (what Linux does past
 * CMDQ_MAX_TLBI_OPS without range invalidation).
 */
export function tlbiRange(byPage: (va: number) => Uint32Array, all: () => Uint32Array, addr: number, size: number, maxPages = 32): Uint32Array[] {
  const first = Math.floor(addr / PAGE);
  const last = Math.ceil((addr + size) / PAGE);
  if (!(size > 0)) return [];
  if (last - first > maxPages) return [all()];
  const out: Uint32Array[] = [];
  for (let p = first; p < last; p++) out.push(byPage(p * PAGE));
  return out;
}

/**
 * ATC_INV over the smallest naturally aligned power-of-two span that covers
 * [addr, addr + size) (`arm_smmu_atc_inv_to_cmd`); size 0 or a span of
 * 2^52 bytes or more invalidates everything.
 */
export function atcInv(sid: number, ssid: number | undefined, addr: number, size: number): Uint32Array {
  const c = CmdAtcInv.encode({ OPCODE: CmdOp.ATC_INV, SID: sid, ...substream(ssid) });
  let log2 = ATC_INV_SIZE_ALL;
  if (size > 0 && addr >= 0) {
    log2 = Math.max(0, Math.ceil(Math.log2(Math.ceil(size / PAGE))));
    while (log2 < ATC_INV_SIZE_ALL && Math.floor(addr / (PAGE * 2 ** log2)) !== Math.floor((addr + size - 1) / (PAGE * 2 ** log2))) log2++;
  }
  CmdAtcInv.set(c, "SIZE", log2);
  if (log2 < ATC_INV_SIZE_ALL) CmdAtcInv.setAddr(c, "ADDR", Math.floor(addr / (PAGE * 2 ** log2)) * PAGE * 2 ** log2);
  return c;
}

/** PRI_RESP: success → SUCCESS, invalid → DENIED (Linux's IOMMU_PAGE_RESP_INVALID), failure → FAILURE. */
export function priResp(sid: number, ssid: number | undefined, grpid: number, code: PageResponse["code"]): Uint32Array {
  const resp = code === "success" ? PriRespCode.SUCCESS : code === "failure" ? PriRespCode.FAILURE : PriRespCode.DENIED;
  return CmdPriResp.encode({ OPCODE: CmdOp.PRI_RESP, SID: sid, ...substream(ssid), PRGINDEX: grpid, RESP: resp });
}
