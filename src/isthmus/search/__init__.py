"""Architecture search: a search-space language over JSON architectures and the searchers of DeepArchitect."""

from isthmus.search.searchers import (
    SEARCHERS, EvolutionSearcher, MCTSSearcher, RandomSearcher, SearchTrace, SMBOSearcher, ngram_counts, run_search,
)
from isthmus.search.space import (
    Choice, Concat, Incomplete, Module, Node, Optional, Or, Repeat, complete_path, count, enumerate_paths, is_specified,
    key, module_types, next_choice, resolve, sample_path,
)

__all__ = ["Choice", "Concat", "Incomplete", "Module", "Node", "Optional", "Or", "Repeat", "complete_path", "count",
           "enumerate_paths", "is_specified", "key", "module_types", "next_choice", "resolve", "sample_path",
           "SEARCHERS", "EvolutionSearcher", "MCTSSearcher", "RandomSearcher", "SearchTrace", "SMBOSearcher",
           "ngram_counts", "run_search"]
