import { defineProject } from "vitest/config";

// Release checks: they pack the packages and install them outside the
// workspace, so they resolve nothing through the `@vsva/source` condition.
export default defineProject({ test: { name: "release", testTimeout: 180_000, hookTimeout: 240_000 } });
