"""Flags override environment variables (MESHWARDEN_...) override a TOML config file.

Each component declares its options once as `Option`s; this module adds them to argparse,
resolves the three layers, and reports a bad value naming where it came from, the rule and
the value. Only this module and the components' config modules read the environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the setting, its source and the rule."""


@dataclass(frozen=True)
class Option(Generic[T]):
    key: str  # snake_case; the flag is --key-with-dashes, the env var MESHWARDEN_<PREFIX>_<KEY>
    parse: Callable[[str], T]
    default: T | None
    help: str
    required: bool = False
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def env_name(self, prefix: str) -> str:
        return f"MESHWARDEN_{prefix}_{self.key}".upper()


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option[Any]], env_prefix: str) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"TOML file with a [{env_prefix.lower()}] table (env MESHWARDEN_{env_prefix}_CONFIG)",
    )
    for opt in options:
        parser.add_argument(
            opt.flag,
            dest=opt.key,
            metavar=opt.metavar,
            default=argparse.SUPPRESS,
            help=f"{opt.help} ({'; '.join(_help_notes(opt, env_prefix))})",
        )


def _help_notes(opt: Option[Any], env_prefix: str) -> list[str]:
    notes = [f"env {opt.env_name(env_prefix)}"]
    if opt.required:
        notes.append("required")
    elif opt.default is not None:
        notes.append(f"default {describe(opt.default)}")
    elif "default" not in opt.help:
        notes.append("default: unset")
    return notes


def describe(value: object) -> str:
    """A value as a person would type it as a flag: 127.0.0.1:7400, .meshwarden/registry, 30,
    true; never a Python repr such as HostPort(host=...) or PosixPath(...)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path | str | int):
        return str(value) if str(value) else '""'
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple | frozenset | set):
        return ",".join(describe(v) for v in value) or '""'
    text = str(value)
    if type(value).__str__ is object.__str__:  # no way to write it that a person would recognise
        raise TypeError(f"{type(value).__name__} has no __str__ for --help; give it one")
    return text


def resolve(
    options: Sequence[Option[Any]],
    args: argparse.Namespace,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
    origins: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The value of every option, by key, from the highest layer that sets it; `origins`, when
    given, receives where each came from: "flag", "env MESHWARDEN_...", "file PATH" or "default"."""
    origins = {} if origins is None else origins
    env = os.environ if environ is None else environ
    file_path = getattr(args, "config", None) or env.get(f"MESHWARDEN_{env_prefix}_CONFIG")
    file_values = _read_file(Path(file_path), env_prefix.lower(), {o.key for o in options}) if file_path else {}
    values: dict[str, Any] = {}
    for opt in options:
        raw: object
        if hasattr(args, opt.key):
            raw, source = getattr(args, opt.key), opt.flag
            origins[opt.key] = f"flag {opt.flag}"
        elif opt.env_name(env_prefix) in env:
            raw, source = env[opt.env_name(env_prefix)], opt.env_name(env_prefix)
            origins[opt.key] = f"env {opt.env_name(env_prefix)}"
        elif opt.key in file_values:
            raw, source = file_values[opt.key], f"{file_path}: {env_prefix.lower()}.{opt.key}"
            origins[opt.key] = f"file {file_path}"
        elif opt.required:
            raise ConfigError(f"{opt.flag} is required (or set {opt.env_name(env_prefix)})")
        else:
            values[opt.key] = opt.default
            origins[opt.key] = "default"
            continue
        try:
            values[opt.key] = opt.parse(raw if isinstance(raw, str) else str(raw))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    return values


def _read_file(path: Path, table: str, known: set[str]) -> dict[str, object]:
    import tomllib  # only when a config file is given: every CLI command imports this module

    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    section = data.get(table, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [{table}] must be a table")
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) in [{table}]: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return section


# Parsers shared by the components' option lists.


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be a number greater than 0, got {text}")
    return value


def positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) <= 0:
        raise ValueError(f"must be a whole number greater than 0, got {text}")
    return int(text)


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {text}")
        return text

    return parse


def text(value: str) -> str:
    return value


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be true or false, got {text}")
