// `pnpm bench` for @vsva/iommu-hw: deterministic walk reference counts and the
// VT-d unit's ratios, each printed on its own line with its target.
import { printFigures } from "./figure.js";
import { benchSmmu } from "./smmu.js";
import { benchVtd } from "./vtd.js";
import { benchWalk } from "./walk.js";

printFigures("iommu-hw: page walks (memory references, deterministic)", await benchWalk());
printFigures("iommu-hw: VT-d unit (timing ratios measured in one run; counts exact)", await benchVtd());
printFigures("iommu-hw: SMMUv3 unit (timing ratios measured in one run; counts exact)", await benchSmmu());
