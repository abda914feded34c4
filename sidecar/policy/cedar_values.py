"""A call's JSON arguments as Cedar values, exactly or not at all.

Mapping (policy_bundle/README.md has the table and the reasons): integer -> Long (outside
the signed 64-bit range: refused), string -> String, true/false -> Bool, array -> Set,
object -> Record. Refused, naming the JSON path: any number written with a fraction or an
exponent (12.5, 1e3: Cedar has no floats, and guessing a scale would decide on a number the
caller did not send), NaN and Infinity, null (Cedar has no null; a missing field is how
absence is said), a key repeated within one object (two parsers could see two different
calls), and the keys Cedar's JSON reserves for its escapes (`__entity`, `__extn`, `__expr`).

Only what some applicable policy reads is mapped (see reads.py), each value checked against
the type the bundle's schema declares for it: a string where the schema says Long is
refused here rather than left to Cedar, where `==` across types is quietly false.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Final

from meshwarden.policy_bundle.schema_shape import Attribute, CedarType, Named, Primitive, RecordOf, SetOf
from meshwarden.sidecar.policy.reads import Reads
from meshwarden.strict_json import MAX_DEPTH, check_depth

LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1
RESERVED_KEYS: Final = frozenset({"__entity", "__extn", "__expr"})
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ArgumentsNotMappable(ValueError):
    """The arguments cannot be evaluated by Cedar as sent. `path` is a JSON path ("$.amount")."""

    def __init__(self, path: str, problem: str, *, bundle: str = "") -> None:
        suffix = f" (policy {bundle})" if bundle else ""
        super().__init__(f"{problem}{suffix}")
        self.path, self.problem = path, problem

    def for_bundle(self, bundle: str) -> ArgumentsNotMappable:
        return ArgumentsNotMappable(self.path, self.problem, bundle=bundle)


class _JsonNumberText(str):
    """A JSON number Cedar cannot represent (12.5, 1e3, NaN), kept as written for the message."""


# The arguments as their JSON text, or a function giving them already parsed by parse_arguments
# (a call parses its payload once for every decision and check that reads it: payload_facts.py).
ArgumentsSource = bytes | Callable[[], dict[str, object]]


def arguments_of(source: ArgumentsSource) -> dict[str, object]:
    """parse_arguments of the text, or the parsed arguments the function gives."""
    return parse_arguments(source) if isinstance(source, bytes) else source()


def parse_arguments(args_json: bytes) -> dict[str, object]:
    """The arguments object (UTF-8 JSON text). Floats survive parsing only as markers that
    mapping refuses."""
    try:
        value = _DECODER.decode(args_json.decode("utf-8"))
        check_depth(value)
    except RecursionError:
        raise ArgumentsNotMappable(
            "$", f"the arguments nest deeper than {MAX_DEPTH} levels; send flatter JSON"
        ) from None
    except ValueError as exc:
        raise ArgumentsNotMappable("$", f"the arguments are not valid JSON ({exc}); send a JSON object") from exc
    if not isinstance(value, dict):
        raise ArgumentsNotMappable("$", f"the arguments are {_describe(value)}; send a JSON object")
    return value


def project(value: Mapping[str, object], reads: Reads, declared: RecordOf, path: str = "$") -> dict[str, object]:
    """The parts of the record `value` that `reads` names, mapped to Cedar. A part only tested
    with `has` is given as `true`: no policy can see its value, so it need not be mappable."""
    if reads.whole:
        return _record(value, declared, path)
    projected: dict[str, object] = {}
    for name, part in reads.parts.items():
        attribute = declared.attributes.get(name)
        here = child_path(path, name)
        if attribute is None:
            continue  # a validated policy never reads an undeclared attribute
        if name not in value:
            if attribute.required and not part.presence_only:
                raise ArgumentsNotMappable(
                    here, f"{here} is missing, but the schema requires it ({describe_type(attribute.type)})"
                )
            continue
        _refuse_reserved(name, here)
        item = value[name]
        if part.presence_only:
            projected[name] = True
        elif part.whole:
            projected[name] = to_cedar(item, attribute.type, here)
        elif isinstance(attribute.type, RecordOf) and isinstance(item, dict):
            projected[name] = project(item, part, attribute.type, here)
        else:
            projected[name] = to_cedar(item, attribute.type, here)  # refuses the type mismatch
    return projected


def to_cedar(value: object, declared: CedarType, path: str) -> object:
    """`value` as Cedar JSON, checked against `declared`; ArgumentsNotMappable if it cannot be."""
    if isinstance(value, _JsonNumberText):
        raise ArgumentsNotMappable(
            path, f"{path} is {value}: Cedar has no floating-point numbers; send an integer (for money, integer cents)"
        )
    if value is None:
        raise ArgumentsNotMappable(path, f"{path} is null: Cedar has no null; leave the field out instead")
    if isinstance(declared, Primitive):
        return _primitive(value, declared, path)
    if isinstance(declared, SetOf) and isinstance(value, list):
        return [to_cedar(item, declared.element, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(declared, RecordOf) and isinstance(value, dict):
        return _record(value, declared, path)
    if isinstance(declared, Named):
        raise ArgumentsNotMappable(path, f"{path}: the schema declares {declared.name}, which no JSON value maps to")
    raise ArgumentsNotMappable(path, f"{path} is {_describe(value)}, but the schema declares {describe_type(declared)}")


def child_path(path: str, name: str) -> str:
    return f"{path}.{name}" if _IDENTIFIER.fullmatch(name) else f"{path}[{json.dumps(name)}]"


def describe_type(declared: CedarType) -> str:
    if isinstance(declared, Primitive):
        return declared.name
    if isinstance(declared, SetOf):
        return f"Set<{describe_type(declared.element)}>"
    if isinstance(declared, Named):
        return declared.name
    return "a record"


def _primitive(value: object, declared: Primitive, path: str) -> object:
    if declared.name == "Long" and isinstance(value, int) and not isinstance(value, bool):
        if not LONG_MIN <= value <= LONG_MAX:
            raise ArgumentsNotMappable(
                path, f"{path} is {value}: outside Cedar's Long range ({LONG_MIN} to {LONG_MAX})"
            )
        return value
    if (declared.name == "String" and isinstance(value, str)) or (declared.name == "Bool" and isinstance(value, bool)):
        return value
    raise ArgumentsNotMappable(path, f"{path} is {_describe(value)}, but the schema declares {declared.name}")


def _record(value: Mapping[str, object], declared: RecordOf, path: str) -> dict[str, object]:
    mapped: dict[str, object] = {}
    for name, item in value.items():
        here = child_path(path, name)
        _refuse_reserved(name, here)
        attribute: Attribute | None = declared.attributes.get(name)
        if attribute is None:
            raise ArgumentsNotMappable(
                here, f"{here} is not declared in the schema, and a policy reads the whole of {path}: leave it out"
            )
        mapped[name] = to_cedar(item, attribute.type, here)
    for name, attribute in declared.attributes.items():
        if attribute.required and name not in value:
            here = child_path(path, name)
            raise ArgumentsNotMappable(
                here, f"{here} is missing, but the schema requires it ({describe_type(attribute.type)})"
            )
    return mapped


def _refuse_reserved(name: str, path: str) -> None:
    if name in RESERVED_KEYS:
        raise ArgumentsNotMappable(path, f"{path}: the key {name!r} is reserved by Cedar's JSON format; rename it")


def _object_without_repeated_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} appears twice in one object; send each key once")
            seen.add(key)
    return found


# Built once: json.loads with hooks would build a new decoder on every call (about 2 µs).
_DECODER: Final = json.JSONDecoder(
    parse_float=_JsonNumberText, parse_constant=_JsonNumberText, object_pairs_hook=_object_without_repeated_keys
)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({json.dumps(shown)})"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
