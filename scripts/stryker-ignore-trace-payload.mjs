// A Stryker ignorer: mutants inside the payload argument of a trace emit
// (`x.emit(name, actor, ids, payload, refcount)`, kernel TraceBus.emit) are not
// scored. The payload describes an event for the harness's report; the ids and
// refcount arguments, which tests check against state, are still mutated.
// Written without importing @stryker-mutator/api (not hoisted under pnpm):
// declareValuePlugin(PluginKind.Ignore, ...) is this object.
const PAYLOAD_ARG = 3;

/** @param {import("@babel/core").NodePath} path */
function insideTracePayload(path) {
  for (let p = path; p.parentPath; p = p.parentPath) {
    const parent = p.parentPath;
    // `trace.emit(...)` and `this.trace?.emit(...)` (an OptionalCallExpression in Babel's tree).
    if ((parent.isCallExpression() || parent.isOptionalCallExpression()) && p.listKey === "arguments" && p.key === PAYLOAD_ARG) {
      const callee = parent.node.callee;
      const member = callee.type === "MemberExpression" || callee.type === "OptionalMemberExpression";
      if (member && callee.property.type === "Identifier" && callee.property.name === "emit") return true;
    }
  }
  return false;
}

export const strykerPlugins = [
  {
    kind: "Ignore",
    name: "trace-payload",
    value: {
      shouldIgnore(path) {
        return insideTracePayload(path) ? "Trace payload: a diagnostic for the report, not state" : undefined;
      },
    },
  },
];
