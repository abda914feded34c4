"""manifest.toml: a bundle's name, revision, description and settings, checked once.

Unknown keys are errors (a misspelt setting must not be silently ignored), and so is
`allow_when_empty`: default deny is how the mesh works, not a bundle's choice.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from meshwarden.policy_bundle.errors import BundleInvalid, SourceProblem, bundle_label

MANIFEST_FILE: Final = "manifest.toml"
BUNDLE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
BUNDLE_NAME_RULE: Final = "1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
_TOP_KEYS: Final = frozenset({"name", "revision", "description", "settings"})
_SETTING_KEYS: Final = frozenset({"store_raw_arguments", "approvers_see_arguments"})
_TOML_LOCATION: Final = re.compile(r"\(at line (\d+), column \d+\)")


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleSettings:
    # Receipts keep a digest of each call's arguments; with this set they keep the arguments
    # themselves too. Off by default: arguments may carry personal data.
    store_raw_arguments: bool = False
    # A call held for approval (an @approval permit) shows its arguments to the operators who
    # decide, and the registry keeps them with the approval; false shows their sha256 only.
    approvers_see_arguments: bool = True


# Revisions are stored as SQLite integers and compared as such: below 2^63. A release number
# or a date-time (20261206153000) fits with room for every later release.
MAX_REVISION: Final = 2**63 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    name: str
    revision: int  # positive; a newer bundle always carries a larger one
    description: str = ""
    settings: BundleSettings = field(default_factory=BundleSettings)

    @property
    def label(self) -> str:
        """ "bundle <name> rev <n>", the way every message names this bundle."""
        return bundle_label(self.name, self.revision)


def parse_manifest(text: str) -> Manifest:
    """The manifest in `text`, or BundleInvalid listing every problem with its line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LOCATION.search(str(exc))
        line = int(found.group(1)) if found else max(1, text.count("\n"))
        raise BundleInvalid([SourceProblem(MANIFEST_FILE, line, f"not valid TOML: {exc}")]) from exc
    problems: list[SourceProblem] = []

    def problem(table: str, key: str, message: str) -> None:
        problems.append(SourceProblem(MANIFEST_FILE, _key_line(text, table, key), message))

    for key in sorted(set(data) - _TOP_KEYS):
        problem("", key, _unknown_key_message(key, "", _TOP_KEYS))
    name = data.get("name")
    if not isinstance(name, str) or not BUNDLE_NAME.fullmatch(name):
        problem("", "name", f"name must be a string of {BUNDLE_NAME_RULE}, got {name!r}")
    revision = data.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or not 1 <= revision <= MAX_REVISION:
        problem(
            "",
            "revision",
            f"revision must be a positive integer below 2^63 that grows with every release, got {revision!r}",
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        problem("", "description", f"description must be a string, got {description!r}")
    settings = _parse_settings(data.get("settings", {}), problem)
    if problems or not isinstance(name, str) or not isinstance(revision, int) or not isinstance(description, str):
        raise BundleInvalid(problems, bundle=bundle_label(name if isinstance(name, str) else "", None))
    return Manifest(name=name, revision=revision, description=description, settings=settings)


def _parse_settings(raw: object, problem: Callable[[str, str, str], None]) -> BundleSettings:
    if not isinstance(raw, dict):
        problem("", "settings", "settings must be a table: [settings]")
        return BundleSettings()
    for key in sorted(set(raw) - _SETTING_KEYS):
        problem("settings", key, _unknown_key_message(key, "settings.", _SETTING_KEYS))
    store_raw = raw.get("store_raw_arguments", False)
    if not isinstance(store_raw, bool):
        problem(
            "settings", "store_raw_arguments", f"settings.store_raw_arguments must be true or false, got {store_raw!r}"
        )
        store_raw = False
    approvers_see = raw.get("approvers_see_arguments", True)
    if not isinstance(approvers_see, bool):
        problem(
            "settings",
            "approvers_see_arguments",
            f"settings.approvers_see_arguments must be true or false, got {approvers_see!r}",
        )
        approvers_see = True
    return BundleSettings(store_raw_arguments=store_raw, approvers_see_arguments=approvers_see)


def _unknown_key_message(key: str, prefix: str, known: frozenset[str]) -> str:
    if key == "allow_when_empty":
        return (
            f"{prefix}allow_when_empty is not a bundle setting: meshwarden always denies what no policy "
            "permits; write a permit policy for what should be allowed"
        )
    return f"unknown key {prefix}{key}; known keys: {', '.join(prefix + k for k in sorted(known))}"


def _key_line(text: str, table: str, key: str) -> int:
    """The line where `key` is set inside `[table]` ("" for the top level); 1 if absent."""
    current = ""
    assignment = re.compile(rf"\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
    header = re.compile(r"\s*\[\s*([^\]\s]+)\s*\]")
    for number, line in enumerate(text.splitlines(), start=1):
        heading = header.match(line)
        if heading:
            current = heading.group(1)
            if not table and current == key:
                return number
            continue
        if current == table and assignment.match(line):
            return number
    return 1


_REVISION_LINE: Final = re.compile(r"(?m)^revision\s*=\s*\d+[ \t]*$")


def with_revision(manifest_text: str, revision: int) -> str:
    """The manifest with its top-level `revision = N` line set to `revision`, the rest kept as
    written (a diff shows one line); ValueError when there is no such line."""
    changed, count = _REVISION_LINE.subn(f"revision = {revision}", manifest_text, count=1)
    if count != 1:
        raise ValueError("manifest.toml has no `revision = N` line to set")
    return changed
