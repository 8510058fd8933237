// dependency-cruiser's configuration for `pnpm lint` (turbo task //#lint:layers)
// and `pnpm graph`; the rules come from layers.json through tools/layering.
import { dependencyCruiserConfig, readLayers } from "./tools/layering/rules.js";

export default dependencyCruiserConfig(readLayers());
