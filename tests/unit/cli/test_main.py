"""meshwarden.cli.main: the command table agrees with the modules, and the lazy parser is the
same parser; a missing extra becomes a message naming it (tests/integration/test_wheel.py runs
the commands in an environment without the extras)."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

import pytest

from meshwarden.cli import main
from meshwarden.cli.extras import MissingExtra, needs_extra


class Recorder:
    """Stands in for argparse's subparsers to see what a module's add_to registers."""

    def __init__(self) -> None:
        self.helps: dict[str, str | None] = {}

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        self.helps[name] = kwargs.get("help")
        return argparse.ArgumentParser(prog=name)


@pytest.mark.parametrize("module", sorted({c.module for c in main.COMMANDS}))
def test_each_module_registers_the_commands_and_help_the_table_gives(module: str) -> None:
    recorder = Recorder()
    importlib.import_module(f"meshwarden.cli.{module}").add_to(recorder)
    assert recorder.helps == {c.name: c.help for c in main.COMMANDS if c.module == module}


def test_the_command_is_found_without_its_module() -> None:
    assert main.selected_command(["--log-level", "debug", "agents", "list", "--output", "json"]) == "agents"
    assert main.selected_command(["session", "show", "s-1"]) == "session"


def test_the_lazy_parser_parses_as_the_full_one() -> None:
    argv = ["--log-format", "json", "agents", "list", "--agent", "billing", "--output", "json"]
    lazy = main.build_parser(full=["agents"]).parse_args(argv)
    full = main.build_parser().parse_args(argv)
    assert vars(lazy) == vars(full)


def test_a_missing_third_party_module_names_the_extra() -> None:
    with pytest.raises(MissingExtra) as info, needs_extra("sidecar", "sidecar run"):
        raise ModuleNotFoundError("No module named 'aiohttp'", name="aiohttp")
    assert info.value.extra == "sidecar" and info.value.module == "aiohttp"
    assert "pip install 'meshwarden[sidecar]'" in str(info.value)


@pytest.mark.parametrize(("extra", "missing"), [("sidecar", "meshwarden.sidecar.gone"), (None, "aiohttp")])
def test_a_missing_module_of_our_own_or_of_the_base_install_is_a_bug_and_propagates(
    extra: str | None, missing: str
) -> None:
    with pytest.raises(ModuleNotFoundError), needs_extra(extra, "agents"):
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    """`meshwarden … | head`: the pipe closes before the output is written."""
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-m", "meshwarden.cli.main", "sessions", "list", "--help"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    errors = child.stderr.read().decode()
    assert child.wait(timeout=60) == 0, errors
    assert "Traceback" not in errors and "BrokenPipeError" not in errors
