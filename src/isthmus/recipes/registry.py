"""Recipe registry: slug → Recipe class, with the 44-paper catalog as the allowed set of slugs.

Implemented recipes live in ``isthmus/recipes/<slug_with_underscores>.py`` and register
themselves with ``@register_recipe``. The registry imports them lazily, on the first
:func:`get_recipe` / :func:`list_recipes`, so ``import isthmus.recipes`` stays cheap and one slow
recipe module never taxes the others.

Which modules are looked for: :data:`RECIPE_MODULES`, derived from the catalog, so adding a
recipe means adding its file, nothing else. A module file that is absent is skipped (that paper is
"planned"); a module that exists but fails to import raises, because hiding a broken recipe as
"planned" would silently drop it from the reproduction table.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from typing import Iterable, TypeVar

from isthmus.recipes.base import Paper, Recipe
from isthmus.recipes.catalog import SEEDS, SLUGS, CatalogEntry, seed, slug_to_module

__all__ = [
    "RecipeError",
    "UnknownRecipeError",
    "PlannedRecipeError",
    "RECIPE_MODULES",
    "register_recipe",
    "get_recipe",
    "list_recipes",
    "implemented_slugs",
]

R = TypeVar("R", bound=type[Recipe])

PACKAGE = "isthmus.recipes"
# One candidate module per catalog slug; includes gradient_noise and stacked_ae_clustering.
RECIPE_MODULES: tuple[str, ...] = tuple(slug_to_module(s) for s in SLUGS)

_REGISTRY: dict[str, type[Recipe]] = {}
_LOADED = False


class RecipeError(ValueError):
    """A recipe slug is unknown, not implemented, or a recipe class is malformed."""


class UnknownRecipeError(RecipeError):
    """The slug is not one of the 44 catalog slugs."""


class PlannedRecipeError(RecipeError):
    """The slug is in the catalog but no recipe is implemented for it yet."""


def _unknown(slug: str) -> UnknownRecipeError:
    close = difflib.get_close_matches(slug, SLUGS, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `isthmus recipes list`"
    return UnknownRecipeError(f"unknown recipe {slug!r}{hint}")


def _validate(cls: type) -> None:
    name = getattr(cls, "__qualname__", repr(cls))
    if not (isinstance(cls, type) and issubclass(cls, Recipe)):
        raise RecipeError(f"{name} must subclass isthmus.recipes.base.Recipe")
    slug = getattr(cls, "slug", None)
    if not isinstance(slug, str):
        raise RecipeError(f"{name} needs a `slug` string naming one of the 44 catalog recipes")
    if slug not in SLUGS:
        raise _unknown(slug)
    if not isinstance(getattr(cls, "paper", None), Paper):
        raise RecipeError(f"{name}.paper must be a Paper(title, arxiv)")
    claim = getattr(cls, "claim", None)
    if not isinstance(claim, str) or not claim.strip():
        raise RecipeError(f"{name}.claim must be a non-empty sentence")
    _validate_frame(cls, name)  # settings per mode, gates and arms are declared
    # A recipe shipped in the package must live in the module named after its slug, so the lazy
    # loader finds it; a copy-pasted slug in the wrong file is caught here.
    module = cls.__module__
    if module.startswith(PACKAGE + ".") and module != f"{PACKAGE}.{slug_to_module(slug)}":
        raise RecipeError(f"{name} (slug {slug!r}) must live in {PACKAGE}.{slug_to_module(slug)}, not {module}")


def _validate_frame(cls: type[Recipe], name: str) -> None:
    from isthmus.recipes.base import RecipeSettings

    settings_cls = getattr(cls, "Settings", None)
    if not (isinstance(settings_cls, type) and issubclass(settings_cls, RecipeSettings)):
        raise RecipeError(f"{name}.Settings must subclass isthmus.recipes.base.RecipeSettings")
    missing = [m for m in ("smoke", "quick", "record") if m not in cls.modes]
    if missing:
        raise RecipeError(f"{name}.modes lacks {missing}: every recipe has smoke, quick and record settings")
    for mode, st in cls.modes.items():
        if not isinstance(st, settings_cls):
            raise RecipeError(f"{name}.modes[{mode!r}] must be a {settings_cls.__name__}, got {type(st).__name__}")
    if not cls.gates:
        raise RecipeError(f"{name}.gates is empty: declare the claim as gates before the first run")
    names = [g.name for g in cls.gates]
    if len(set(names)) != len(names):
        raise RecipeError(f"{name}.gates has duplicate names {names}")


def register_recipe(cls: R) -> R:
    """Class decorator: validate ``cls`` and register it under ``cls.slug``."""
    _validate(cls)
    existing = _REGISTRY.get(cls.slug)
    if existing is not None and (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
        raise RecipeError(f"recipe {cls.slug!r} is already registered by {existing.__module__}.{existing.__qualname__}")
    _REGISTRY[cls.slug] = cls
    return cls


def load_recipe_modules(package: str = PACKAGE, names: Iterable[str] = RECIPE_MODULES) -> list[str]:
    """Import ``package.name`` for each name whose module exists; return the names imported.

    Absent modules are skipped; an existing module that raises on import propagates the error.
    """
    imported = []
    for name in names:
        full = f"{package}.{name}"
        if importlib.util.find_spec(full) is None:
            continue
        importlib.import_module(full)
        imported.append(name)
    return imported


def _ensure_loaded() -> None:
    global _LOADED
    if not _LOADED:
        load_recipe_modules()
        _LOADED = True  # only after success, so a fixed module is retried next call


def get_recipe(slug: str) -> type[Recipe]:
    """The Recipe class for ``slug``; raises Unknown/PlannedRecipeError with a helpful message."""
    _ensure_loaded()
    if slug in _REGISTRY:
        return _REGISTRY[slug]
    if slug not in SLUGS:
        raise _unknown(slug)
    s = seed(slug)
    raise PlannedRecipeError(
        f"recipe {slug!r} (#{s.number}, {s.title}) is planned, not implemented yet; "
        f"implemented: {', '.join(implemented_slugs()) or 'none'}"
    )


def implemented_slugs() -> list[str]:
    """Slugs with a registered recipe, in catalog order."""
    _ensure_loaded()
    return [s for s in SLUGS if s in _REGISTRY]


def list_recipes() -> list[CatalogEntry]:
    """All 44 catalog entries in order, each with status "implemented" or "planned"."""
    _ensure_loaded()
    return [
        CatalogEntry(s.number, s.slug, s.title, s.arxiv, "implemented" if s.slug in _REGISTRY else "planned")
        for s in SEEDS
    ]
