"""Automated explanation of SAE latents and neurons (seed 18, Paulo et al. 2024): latent records,
explainers (offline token statistics; OpenAI-compatible HTTP) and scorers (detection, fuzzing, embedding)."""

from isthmus.interp.explain.explainers import (
    Explainer,
    ExplainerError,
    ExplainerTimeout,
    Explanation,
    OpenAICompatibleExplainer,
    TokenStatsExplainer,
    explain_prompt,
    predicate_mask,
)
from isthmus.interp.explain.concepts import ConceptExplainer
from isthmus.interp.explain.records import (
    Example,
    LatentRecord,
    build_record,
    build_records,
    render_window,
    token_counts,
)
from isthmus.interp.explain.scorers import (
    ClientSimulator,
    MiniLMEncoder,
    PredicateSimulator,
    auroc,
    balanced_accuracy,
    detection_score,
    embedding_score,
    fuzzing_score,
    score_record,
)

__all__ = [
    "Example",
    "LatentRecord",
    "build_record",
    "build_records",
    "render_window",
    "token_counts",
    "Explanation",
    "Explainer",
    "TokenStatsExplainer",
    "ConceptExplainer",
    "OpenAICompatibleExplainer",
    "ExplainerError",
    "ExplainerTimeout",
    "explain_prompt",
    "predicate_mask",
    "PredicateSimulator",
    "ClientSimulator",
    "detection_score",
    "fuzzing_score",
    "embedding_score",
    "score_record",
    "MiniLMEncoder",
    "balanced_accuracy",
    "auroc",
]
