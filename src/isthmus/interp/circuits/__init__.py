"""Circuit discovery: the discrete-SAE-code method (O'Neill & Bui 2024), patching/ablation baselines,
and toy models with planted circuits (exact ground truth)."""

from isthmus.interp.circuits.baselines import (
    BASELINES,
    BaselineResult,
    activation_patching,
    attribution_patching,
    mean_ablation,
    output_difference,
    target_logprob,
)
from isthmus.interp.circuits.method import (
    CircuitResult,
    CodeSAE,
    edge_scores,
    find_circuit,
    head_outputs,
    head_points,
    node_scores,
)
from isthmus.interp.circuits.planted import PlantedCircuit, induction_pairs, planted_induction

__all__ = [
    "find_circuit",
    "CircuitResult",
    "CodeSAE",
    "head_outputs",
    "head_points",
    "node_scores",
    "edge_scores",
    "BASELINES",
    "BaselineResult",
    "mean_ablation",
    "activation_patching",
    "attribution_patching",
    "output_difference",
    "target_logprob",
    "PlantedCircuit",
    "planted_induction",
    "induction_pairs",
]
