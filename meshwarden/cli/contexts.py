"""Named registry contexts for operators' commands, like kubeconfig's: where the registry is,
which CA to trust, where the operator token is, so commands need neither flags nor a
particular working directory, and a pinned CA ends the trust-on-first-use warning.

The file is `$MESHWARDEN_CONTEXTS`, else `$XDG_CONFIG_HOME/meshwarden/contexts.toml` (default
`~/.config/...`), written 0600 in a 0700 directory:

    current = "prod"

    [contexts.prod]
    registry = "registry.example.com:7400"
    ca_pin = "sha256:…"
    operator_token_file = "/home/ops/.meshwarden/prod.token"

A context fills in only what neither a flag nor a MESHWARDEN_* variable gave; `--context NAME`
(env MESHWARDEN_CONTEXT) picks one other than the current for one command.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Final

CONTEXTS_ENV: Final = "MESHWARDEN_CONTEXTS"
CONTEXT_ENV: Final = "MESHWARDEN_CONTEXT"
MAX_NAME: Final = 63


class ContextError(Exception):
    """The contexts file or a context name is unusable; the message says how to fix it."""


@dataclass(frozen=True)
class Context:
    registry: str = ""
    ca_pin: str = ""
    trust_bundle: str = ""
    trust_domain: str = ""
    operator_token_file: str = ""


@dataclass(frozen=True)
class Contexts:
    current: str
    named: dict[str, Context]


# The flag (argparse dest) each context field stands in for, and the variable that beats it.
_FILLS: Final = {
    "registry": "MESHWARDEN_REGISTRY",
    "ca_pin": "MESHWARDEN_CA_PIN",
    "trust_bundle": "MESHWARDEN_TRUST_BUNDLE",
    "trust_domain": "MESHWARDEN_TRUST_DOMAIN",
    "operator_token_file": "MESHWARDEN_OPERATOR_TOKEN",
}

_CA_TRUST: Final = frozenset({"ca_pin", "trust_bundle"})


def path(environ: Mapping[str, str]) -> Path:
    if environ.get(CONTEXTS_ENV):
        return Path(environ[CONTEXTS_ENV])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "meshwarden" / "contexts.toml"


def check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME or not all(c.isalnum() or c in "-_." for c in name):
        raise ContextError(f"context name {name[:80]!r} must be 1 to {MAX_NAME} letters, digits, '-', '_' or '.'")
    return name


def load(environ: Mapping[str, str]) -> Contexts:
    """The contexts file, or no contexts when there is none."""
    file = path(environ)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        return Contexts("", {})
    except (OSError, UnicodeDecodeError) as exc:
        raise ContextError(f"cannot read the contexts file {file}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ContextError(f"{file} is not valid TOML ({exc}); fix or delete it") from exc
    known = {f.name for f in fields(Context)}
    named: dict[str, Context] = {}
    for name, table in dict(data.get("contexts", {})).items():
        unknown = set(table) - known
        if unknown or not all(isinstance(v, str) for v in table.values()):
            raise ContextError(
                f"{file}: context {name!r} may hold only the strings {', '.join(sorted(known))}"
                + (f" (not {', '.join(sorted(unknown))})" if unknown else "")
            )
        named[check_name(name)] = Context(**table)
    current = data.get("current", "")
    if not isinstance(current, str):
        raise ContextError(f"{file}: `current` must be a context name")
    return Contexts(current, named)


def save(contexts: Contexts, environ: Mapping[str, str]) -> Path:
    """Writes the file whole (temp file, then rename), 0600, so a reader never sees half of it."""
    file = path(environ)
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # TOML basic strings take JSON's escapes, so json.dumps writes any value safely; a writer
    # library would be a dependency of the base install for five string keys.
    lines = [f"current = {json.dumps(contexts.current)}", ""]
    for name in sorted(contexts.named):
        lines.append(f"[contexts.{json.dumps(name)}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in asdict(contexts.named[name]).items() if value]
        lines.append("")
    temporary = file.with_name(file.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write("\n".join(lines))
    os.replace(temporary, file)
    return file


def selected(flag: str | None, environ: Mapping[str, str]) -> tuple[str, Context]:
    """The context a command runs in: --context, else $MESHWARDEN_CONTEXT, else the current
    one; ("", Context()) when none is set. A name that does not exist is an error."""
    contexts = load(environ)
    name = flag or environ.get(CONTEXT_ENV) or contexts.current
    if not name:
        return "", Context()
    if name not in contexts.named:
        known = ", ".join(sorted(contexts.named)) or "none"
        raise ContextError(f"no context {name!r} in {path(environ)} (known: {known}); see `meshwarden context list`")
    return name, contexts.named[name]


def fill(args: argparse.Namespace, environ: Mapping[str, str]) -> argparse.Namespace:
    """`args` with what the selected context holds, where no flag and no variable said it."""
    _, context = selected(getattr(args, "context", None), environ)
    filled = argparse.Namespace(**vars(args))
    given = {key for key, variable in _FILLS.items() if getattr(args, key, None) or environ.get(variable)}
    if given & _CA_TRUST:  # a pin or a bundle given for this command replaces the context's CA trust
        given |= _CA_TRUST
    for key in _FILLS.keys() - given:
        if getattr(context, key):
            setattr(filled, key, getattr(context, key))
    return filled


def with_context(contexts: Contexts, name: str, context: Context) -> Contexts:
    return replace(contexts, named={**contexts.named, check_name(name): context})
