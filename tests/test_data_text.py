"""isthmus.data.text: the text loaders shared by the CLI and the recipes."""

import pytest

from isthmus.data import text as T


def test_paragraphs_split_blank_lines_and_cut_long_ones():
    assert T.paragraphs("a b\nc\n\n\n second \n\n" + "x" * 4500) == ["a b\nc", "second", "x" * 2000, "x" * 2000,
                                                                        "x" * 500]
    with pytest.raises(ValueError, match="max_chars"):
        T.paragraphs("a", max_chars=0)


def test_old_cli_names_still_import():
    from isthmus.cli.sae import DATASETS, paragraphs

    assert paragraphs is T.paragraphs and DATASETS is T.DATASETS


def test_dataset_text_reads_a_local_copy_and_rejects_unknown_names(tmp_path, monkeypatch):
    (tmp_path / "wikitext-2").mkdir()
    (tmp_path / "wikitext-2" / "valid.txt").write_text("short line\n" + " ".join(["w"] * 25) + "\n")
    monkeypatch.setenv("ISTHMUS_DATA", str(tmp_path))
    assert T.read_dataset_text("wikitext-2").startswith("short line")
    assert T.wikitext_lines(min_words=20) == [" ".join(["w"] * 25)]
    with pytest.raises(ValueError, match="unknown text data set"):
        T.read_dataset_text("nope")


def test_missing_data_gives_empty_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("ISTHMUS_DATA", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    assert T.package_readme_paragraphs("no_such_package_xyz") == []
