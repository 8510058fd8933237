import { Errno, KernelError } from "@vsva/kernel";
import type { IoasidAllocatorOps } from "./types.js";

/** Custom allocators that share alloc/free functions, hence one ID space. The first member is the one called. */
interface Group {
  readonly members: IoasidAllocatorOps[];
}

function sameFunctions(a: IoasidAllocatorOps, b: IoasidAllocatorOps): boolean {
  return a.alloc === b.alloc && a.free === b.free;
}

export interface RegisterResult {
  readonly active: boolean;
  readonly shared: boolean;
}

/**
 * The custom allocator list of upstream ioasid.c, with its rules:
 * - the first custom allocator becomes active only while the default
 *   allocator has no IDs outstanding (EAGAIN otherwise);
 * - the same ops registered twice: EEXIST;
 * - allocators with the same alloc and free functions join one group and
 *   share its ID space; later groups wait in registration order;
 * - unregistering the last member of the active group activates the next
 *   group, or falls back to the default allocator.
 *
 * Two decisions differ from upstream, both so that no ID is ever orphaned:
 * unregistering the last member of the active group while its IDs are
 * outstanding is refused with EBUSY (upstream WARNs and loses them), and when
 * the first member of a group leaves, the next member is the one called
 * (upstream kept calling the departed ops).
 */
export class AllocatorRegistry {
  readonly #groups: Group[] = [];

  /** The allocator in use, or null for the default. */
  get active(): IoasidAllocatorOps | null {
    return this.#groups[0]?.members[0] ?? null;
  }

  get registered(): number {
    return this.#groups.reduce((n, g) => n + g.members.length, 0);
  }

  /** Checks that `ops` may be registered; `outstanding` is how many IDs the active space holds. */
  check(ops: IoasidAllocatorOps, outstanding: number): void {
    if (typeof ops !== "object" || typeof ops.alloc !== "function" || typeof ops.free !== "function") {
      throw new KernelError(Errno.EINVAL, "allocator ops need alloc and free functions");
    }
    if (this.#groups.length === 0) {
      if (outstanding > 0) {
        throw new KernelError(Errno.EAGAIN, `default allocator active with ${outstanding} IOASIDs outstanding`);
      }
      return;
    }
    if (this.#groups.some((g) => g.members.includes(ops))) {
      throw new KernelError(Errno.EEXIST, "IOASID allocator already registered");
    }
  }

  /** Registers after a successful {@link check}. */
  add(ops: IoasidAllocatorOps): RegisterResult {
    const group = this.#groups.find((g) => g.members[0] !== undefined && sameFunctions(g.members[0], ops));
    if (group !== undefined) {
      group.members.push(ops);
      return { active: group === this.#groups[0], shared: true };
    }
    this.#groups.push({ members: [ops] });
    return { active: this.#groups.length === 1, shared: false };
  }

  /**
   * Removes `ops`. ENOENT if it is not registered; EBUSY if it is the last
   * member of the active group and `outstanding` IDs remain in its space.
   */
  remove(ops: IoasidAllocatorOps, outstanding: number): "default" | "custom" | "none" {
    const gi = this.#groups.findIndex((g) => g.members.includes(ops));
    const group = this.#groups[gi];
    if (group === undefined) throw new KernelError(Errno.ENOENT, "IOASID allocator not registered");
    if (group.members.length > 1) {
      group.members.splice(group.members.indexOf(ops), 1);
      return "none";
    }
    if (gi === 0 && outstanding > 0) {
      throw new KernelError(
        Errno.EBUSY,
        `cannot remove the active IOASID allocator with ${outstanding} IOASIDs outstanding; free them first`,
      );
    }
    this.#groups.splice(gi, 1);
    if (gi !== 0) return "none";
    return this.#groups.length > 0 ? "custom" : "default";
  }
}
