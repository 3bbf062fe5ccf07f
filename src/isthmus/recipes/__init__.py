"""One recipe per seed paper: parts + a claim check → :class:`Result` → result.json + report.md.

``get_recipe(slug)`` imports implemented recipe modules lazily; ``list_recipes()`` gives all 44
catalog entries with their status.
"""

from isthmus.recipes.base import MODES, MetricSummary, Paper, Recipe, RecipeSettings, Result, summarize
from isthmus.recipes.gates import VERDICTS, Check, Gate, GateResult, Measured, Precondition
from isthmus.recipes.catalog import SLUGS, CatalogEntry
from isthmus.recipes.registry import (
    PlannedRecipeError,
    RecipeError,
    UnknownRecipeError,
    get_recipe,
    list_recipes,
    register_recipe,
)

__all__ = [
    "MODES",
    "VERDICTS",
    "MetricSummary",
    "Paper",
    "Recipe",
    "RecipeSettings",
    "Result",
    "summarize",
    "Check",
    "Gate",
    "GateResult",
    "Measured",
    "Precondition",
    "SLUGS",
    "CatalogEntry",
    "RecipeError",
    "UnknownRecipeError",
    "PlannedRecipeError",
    "get_recipe",
    "list_recipes",
    "register_recipe",
]
