// CHANGELOG lines for `changeset version`: each changeset's summary as
// written, and one line naming the dependencies a release moves to (the
// stock generator repeats "Updated dependencies" once per changeset).
// @ts-check

/** @type {import("@changesets/types").ChangelogFunctions} */
const functions = {
  async getReleaseLine(changeset) {
    const [first = "", ...rest] = changeset.summary.trim().split("\n").map((l) => l.trimEnd());
    return `\n- ${first}\n${rest.map((l) => (l === "" ? "" : `  ${l}`)).join("\n")}`;
  },
  async getDependencyReleaseLine(_changesets, dependencies) {
    if (dependencies.length === 0) return "";
    return `- Dependencies: ${dependencies.map((d) => `${d.name}@${d.newVersion}`).join(", ")}`;
  },
};

module.exports = functions;
