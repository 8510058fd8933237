import { Errno, KernelError } from "@vsva/kernel";

/**
 * Every key a unit's options accept, written as a record over the options type so that the
 * compiler keeps it complete: a key added to the interface must be added here.
 */
export type KnownKeys<T> = { readonly [K in keyof Required<T>]: true };

/**
 * Refuses option keys the unit does not know (a misspelt capability would otherwise be
 * ignored silently and the unit built with its default): EINVAL naming the key.
 */
export function rejectUnknownKeys<T extends object>(unit: string, what: string, o: T | undefined, known: KnownKeys<T>): void {
  if (o === undefined) return;
  // Callers from plain JavaScript can pass anything.
  const v: unknown = o;
  if (typeof v !== "object" || v === null) throw new KernelError(Errno.EINVAL, `${unit}: ${what} must be an object`);
  for (const k of Object.keys(o)) {
    if (!Object.hasOwn(known, k)) {
      throw new KernelError(Errno.EINVAL, `${unit}: unknown ${what} key "${k}" (known: ${Object.keys(known).join(", ")})`);
    }
  }
}
