/**
 * `Uint8Array.prototype.set`, for block copies on hot paths, called as
 * `u8set.call(view, source, offset)`. V8 (Node 20) does not specialise a
 * `.set` property load on a typed array, so `view.set(...)` goes through a
 * generic load IC on every call (`--log-ic` shows it); a constant function
 * skips it. The simulated memory's block moves and a device's descriptor
 * copies use it.
 */
// eslint-disable-next-line @typescript-eslint/unbound-method -- always called as u8set.call(view, ...)
export const u8set = Uint8Array.prototype.set;
