"""meshwarden.cli.list_paging and the lists that page with it (issue 19): --limit is bounded
before anything is sent, the sort key is in each list's help, and a next page's cursor goes to
stderr as `more: --cursor CURSOR`."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshwarden.cli import list_paging
from meshwarden.cli.main import build_parser, main

LISTS = [
    (["kill", "list"], "by engaged time, then id"),
    (["isolate", "list"], "by isolated time, then agent, then version"),
    (["budget", "list"], "by budget id, then subject"),
    (["route", "list"], "by capability"),
    (["bundle", "history"], "newest first"),
]


def _unreachable(tmp_path: Path) -> list[str]:
    token = tmp_path / "operator.token"
    token.write_text("mwop_" + "a" * 40 + "\n")
    token.chmod(0o600)
    return ["--registry", "127.0.0.1:1", "--operator-token-file", str(token)]


@pytest.mark.parametrize(("words", "order"), LISTS)
def test_a_limit_out_of_bounds_exits_2_before_asking(
    words: list[str], order: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = _unreachable(tmp_path)
    for bad in ("-1", "10001"):
        assert main([*words, "--limit", bad, *flags]) == 2
        assert "--limit must be from" in capsys.readouterr().err
    # In bounds, it does ask: the registry is not there (3), which the bound check came before.
    assert main([*words, "--limit", "5", "--cursor", "[1]", *flags]) == 3


@pytest.mark.parametrize(("words", "order"), LISTS)
def test_the_help_names_the_order_pages_follow(words: list[str], order: str) -> None:
    parser = build_parser()
    args = parser.parse_args([*words, "--limit", "7", "--cursor", "C"])
    assert (args.limit, args.cursor) == (7, "C")
    help_text = " ".join(_help_of(parser, words).split())
    assert order in help_text and "--cursor" in help_text


def _help_of(parser: object, words: list[str]) -> str:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    sub = parser
    for word in words:
        actions = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        sub = actions[0].choices[word]
    return sub.format_help()


def test_more_goes_to_stderr_only_when_a_page_follows(capsys: pytest.CaptureFixture[str]) -> None:
    list_paging.print_more("")
    assert capsys.readouterr() == ("", "")
    list_paging.print_more('[1.5,"k-1"]')
    assert capsys.readouterr() == ("", 'more: --cursor [1.5,"k-1"]\n')
    assert list_paging.limit_error("x", 0) == "" and list_paging.limit_error("x", 0, least=1)
