// `pnpm bench` for @vsva/iommu-hw: deterministic walk reference counts and the
// VT-d unit's ratios, each printed on its own line with its target.
import { deterministic, printFigures } from "./figure.js";
import { benchSmmu } from "./smmu.js";
import { benchVtd } from "./vtd.js";
import { benchWalk } from "./walk.js";

const walks = await benchWalk();
printFigures("iommu-hw: page walks (memory references, deterministic)", [...walks, deterministic("page walks", walks, await benchWalk())]);
printFigures("iommu-hw: VT-d unit (timing ratios measured in one run; counts exact)", await benchVtd());
printFigures("iommu-hw: SMMUv3 unit (timing ratios measured in one run; counts exact)", await benchSmmu());
