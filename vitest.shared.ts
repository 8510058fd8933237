import { defaultClientConditions, defaultServerConditions } from "vite";
import { defineProject } from "vitest/config";

// Tests resolve workspace packages to their TypeScript source through the
// `@vsva/source` export condition, so no build is needed first. Node-env tests
// only honour `ssr.resolve.conditions` (toolchain.md P4).
export const sharedProject = defineProject({
  resolve: { conditions: ["@vsva/source", ...defaultClientConditions] },
  ssr: { resolve: { conditions: ["@vsva/source", ...defaultServerConditions] } },
});
