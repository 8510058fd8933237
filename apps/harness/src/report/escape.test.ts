import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { escapeHtml, jsonForScript } from "./escape.js";

describe("escapeHtml", () => {
  it("writes the five markup characters as entities and leaves other text alone", () => {
    expect(escapeHtml(`<a href="x">Tom & Jerry's</a>`)).toBe("&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;");
    expect(escapeHtml("pasid=1 @0x2aaa → ok")).toBe("pasid=1 @0x2aaa → ok");
  });

  // About 1 s alone; a full check on a loaded 2-core machine took it past the default 5 s.
  it("never leaves a markup character in its output, for any string", { timeout: 30_000 }, () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (s) => {
        expect(escapeHtml(s)).not.toMatch(/[<>"']/);
        // Every & left is the start of one of the entities written.
        expect(escapeHtml(s).replace(/&(amp|lt|gt|quot|#39);/g, "")).not.toContain("&");
      }),
    );
  });
});

describe("jsonForScript", () => {
  it("cannot close the script element it sits in", () => {
    const text = jsonForScript({ message: "</script><script>alert(1)</script><!--" });
    expect(text).not.toMatch(/[<>&]/);
    expect(JSON.parse(text)).toEqual({ message: "</script><script>alert(1)</script><!--" });
  });

  it("reads back as the same value through JSON.parse, and holds no <, > or &", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const text = jsonForScript(v);
        expect(text).not.toMatch(/[<>&\u2028\u2029]/);
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(v)));
      }),
    );
  });

  it("writes a BigInt as its decimal string instead of throwing", () => {
    expect(JSON.parse(jsonForScript({ addr: 0xffff_ffff_ffff_f000n }))).toEqual({ addr: "18446744073709547520" });
  });
});
