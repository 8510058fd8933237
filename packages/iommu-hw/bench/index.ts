// `pnpm bench` for @vsva/iommu-hw: deterministic walk reference counts and the
// VT-d unit's ratios, each printed on its own line with its target.
import { printFigures } from "./figure.js";
import { benchWalk } from "./walk.js";

printFigures("iommu-hw: page walks (memory references, deterministic)", await benchWalk());
