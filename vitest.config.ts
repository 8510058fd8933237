import { defineConfig } from "vitest/config";

// One Vitest project per package: `pnpm test:all` runs them in one process.
export default defineConfig({ test: { projects: ["packages/*", "apps/*", "tools/layering", "tools/release"] } });
