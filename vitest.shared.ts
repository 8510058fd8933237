import { defaultClientConditions, defaultServerConditions } from "vite";
import { defineProject } from "vitest/config";

// Tests resolve workspace packages to their TypeScript source through the
// `@vsva/source` export condition, so no build is needed first. Node-env tests
// only honour `ssr.resolve.conditions` (toolchain.md P4).
//
// No test here measures time (speed lives in `pnpm bench`), so the timeout is
// only a hang guard: 20 s, because on a shared 2-core machine under load the
// property and fail-nth sweeps that take 1–2 s alone ran past vitest's default
// 5 s and failed for no fault of the code.
export const sharedProject = defineProject({
  test: { testTimeout: 20_000 },
  resolve: { conditions: ["@vsva/source", ...defaultClientConditions] },
  ssr: { resolve: { conditions: ["@vsva/source", ...defaultServerConditions] } },
});
