/**
 * Escaping for the HTML report. Scenario titles, step labels and trace
 * payloads are data, never markup: a payload string that says `<script>` must
 * show as those characters and run nothing.
 */

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Text safe both as element content and inside a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

// Inside <script type="application/json"> the only thing the HTML parser looks
// for is "</script" (and "<!--"); writing every "<", ">" and "&" as a JSON
// \u escape rules both out while JSON.parse still reads the same string. U+2028
// and U+2029 are escaped too so the text stays valid if it is ever pasted into
// older JavaScript.
const SCRIPT_ESCAPES: Readonly<Record<string, string>> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};

/**
 * JSON for a `<script type="application/json">` block. BigInts (which plain
 * JSON.stringify refuses) are written as decimal strings, so an event with a
 * 64-bit payload field still reaches the page.
 */
export function jsonForScript(value: unknown): string {
  const json = JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
  return json.replace(/[<>&\u2028\u2029]/g, (c) => SCRIPT_ESCAPES[c] ?? c);
}
