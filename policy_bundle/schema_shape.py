"""The declaration of `action "call"` in a bundle's Cedar schema: who may call what, and the
type of the context, read from the schema text.

Why read it ourselves: cedarpy (4.12) parses and checks a schema but cannot hand back its
types, and the sidecar needs the declared type of `context.args` to map a call's JSON
arguments exactly (a string where the schema says Long is refused, naming the JSON path, rather
than left to Cedar's `==`, which is quietly false across types). The text given here has
already been accepted by `cedarpy.Schema.from_str`, so this reader only has to follow the
grammar far enough to find the declarations and the types they use.

Over 300 lines: one reader for one grammar (tokens, declarations, types, alias resolution);
split, its parts would only call each other.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal

_TOKEN: Final = re.compile(
    r'(?P<space>\s+)|(?P<comment>//[^\n]*)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<string>"(?:\\.|[^"\\])*")'
    r"|(?P<path>::)|(?P<punct>[{}\[\]<>,;:?=@()])"
)
_PRIMITIVES: Final = {"Long": "Long", "String": "String", "Bool": "Bool", "Boolean": "Bool"}


class SchemaShapeError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, slots=True)
class Primitive:
    name: Literal["Long", "String", "Bool"]


@dataclass(frozen=True, slots=True)
class SetOf:
    element: CedarType


@dataclass(frozen=True, slots=True)
class Attribute:
    type: CedarType
    required: bool
    line: int


@dataclass(frozen=True, slots=True)
class RecordOf:
    attributes: Mapping[str, Attribute]  # read-only by convention; built once per schema


@dataclass(frozen=True, slots=True)
class Named:
    """An entity or extension type (ipaddr, decimal, datetime...): no JSON value maps to it."""

    name: str


CedarType = Primitive | SetOf | RecordOf | Named


@dataclass(frozen=True, slots=True)
class CallAction:
    principal_types: tuple[str, ...]
    resource_types: tuple[str, ...]
    context: RecordOf
    line: int


@dataclass(frozen=True, slots=True)
class EntityDecl:
    name: str
    parent_types: tuple[str, ...]
    attributes: RecordOf
    line: int


@dataclass(frozen=True, slots=True)
class SchemaShape:
    """The empty namespace's entity types and actions, types resolved."""

    entities: Mapping[str, EntityDecl]
    actions: Mapping[str, CallAction]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # name, string, path, punct
    text: str
    line: int


def read_call_action(schema_text: str, action: str = "call") -> CallAction:
    """The declaration of `Action::"<action>"` in the empty namespace, its types resolved."""
    found = read_schema(schema_text).actions.get(action)
    if found is None:
        raise SchemaShapeError(1, f'the schema declares no `action "{action}"` outside any namespace')
    return found


def read_schema(schema_text: str) -> SchemaShape:
    reader = _Reader(list(_tokens(schema_text)))
    reader.declarations(namespace="")
    resolver = _Resolver(reader.aliases, set(reader.entities))
    actions: dict[str, CallAction] = {}
    for name, (principals, resources, context, line) in reader.actions.items():
        resolved = resolver.resolve(context, line)
        if not isinstance(resolved, RecordOf):
            raise SchemaShapeError(line, f'the context of action "{name}" must be a record type')
        actions[name] = CallAction(principals, resources, resolved, line)
    entities: dict[str, EntityDecl] = {}
    for name, (parents, attributes, line) in reader.entities.items():
        if "::" not in name:
            resolved = resolver.resolve(attributes, line)
            entities[name] = EntityDecl(
                name, parents, resolved if isinstance(resolved, RecordOf) else RecordOf({}), line
            )
    return SchemaShape(entities=entities, actions=actions)


def _tokens(text: str) -> Iterator[_Token]:
    line, position = 1, 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise SchemaShapeError(line, f"unexpected character {text[position]!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            yield _Token(kind, match.group(), line)
        line += match.group().count("\n")
        position = match.end()


class _Reader:
    """A recursive-descent walk over the declarations; keeps aliases, entity names and actions."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens, self._at = tokens, 0
        self.aliases: dict[str, CedarType] = {}
        self.entities: dict[str, tuple[tuple[str, ...], CedarType, int]] = {}
        self.actions: dict[str, tuple[tuple[str, ...], tuple[str, ...], CedarType, int]] = {}

    def declarations(self, namespace: str) -> None:
        while self._peek() is not None and self._peek_text() != "}":
            self._annotations()
            keyword = self._take("name")
            if keyword.text == "namespace":
                inner = self._path()
                self._expect("{")
                self.declarations(namespace=inner)
                self._expect("}")
            elif keyword.text == "entity":
                self._entity(namespace, keyword.line)
            elif keyword.text == "type":
                name = self._take("name").text
                self._expect("=")
                self.aliases[_qualify(namespace, name)] = self._type()
                self._expect(";")
            elif keyword.text == "action":
                self._action(namespace, keyword.line)
            else:
                raise SchemaShapeError(keyword.line, f"unexpected {keyword.text!r} in schema")

    def _entity(self, namespace: str, line: int) -> None:
        names = self._names()
        parents: tuple[str, ...] = ()
        attributes: CedarType = RecordOf({})
        if self._peek_text() == "in":
            self._take("name")
            parents = self._type_list()
        if self._peek_text() == "=":
            self._take("punct")
        if self._peek_text() == "{":
            attributes = self._record()
        self._skip_to_semicolon()  # tags, enum [...]: not needed here
        for name in names:
            self.entities[_qualify(namespace, name)] = (parents, attributes, line)

    def _action(self, namespace: str, line: int) -> None:
        names = self._names()
        principals: tuple[str, ...] = ()
        resources: tuple[str, ...] = ()
        context: CedarType = RecordOf({})
        if self._peek_text() == "in":
            self._take("name")
            self._skip_refs()
        if self._peek_text() == "appliesTo":
            self._take("name")
            self._expect("{")
            while self._peek_text() != "}":
                key = self._take("name")
                self._expect(":")
                if key.text == "principal":
                    principals = self._type_list()
                elif key.text == "resource":
                    resources = self._type_list()
                elif key.text == "context":
                    context = self._type()
                else:
                    raise SchemaShapeError(key.line, f"unexpected {key.text!r} in appliesTo")
                if self._peek_text() == ",":
                    self._take("punct")
            self._expect("}")
        self._skip_to_semicolon()
        if not namespace:
            for name in names:
                self.actions[name] = (principals, resources, context, line)

    def _type(self) -> CedarType:
        if self._peek_text() == "{":
            return self._record()
        path = self._path()
        if path == "Set" and self._peek_text() == "<":
            self._expect("<")
            element = self._type()
            self._expect(">")
            return SetOf(element)
        return Named(path)  # an alias, entity, builtin or extension name: resolved afterwards

    def _record(self) -> RecordOf:
        self._expect("{")
        attributes: dict[str, Attribute] = {}
        while self._peek_text() != "}":
            self._annotations()
            token = self._peek()
            name_token = self._take("name", "string")
            name = _unquote(name_token.text) if name_token.kind == "string" else name_token.text
            required = True
            if self._peek_text() == "?":
                self._take("punct")
                required = False
            self._expect(":")
            attributes[name] = Attribute(self._type(), required, token.line if token else 0)
            if self._peek_text() == ",":
                self._take("punct")
        self._expect("}")
        return RecordOf(attributes)

    def _type_list(self) -> tuple[str, ...]:
        if self._peek_text() != "[":
            return (self._path(),)
        self._expect("[")
        found: list[str] = []
        while self._peek_text() != "]":
            found.append(self._path())
            if self._peek_text() == ",":
                self._take("punct")
        self._expect("]")
        return tuple(found)

    def _names(self) -> list[str]:
        names = [self._name_or_string()]
        while self._peek_text() == ",":
            self._take("punct")
            names.append(self._name_or_string())
        return names

    def _name_or_string(self) -> str:
        token = self._take("name", "string")
        return _unquote(token.text) if token.kind == "string" else token.text

    def _path(self) -> str:
        parts = [self._take("name").text]
        while self._peek_text() == "::":
            self._take("path")
            parts.append(self._take("name").text)
        return "::".join(parts)

    def _annotations(self) -> None:
        while self._peek_text() == "@":
            self._take("punct")
            self._take("name")
            if self._peek_text() == "(":
                self._take("punct")
                self._take("string")
                self._expect(")")

    def _skip_refs(self) -> None:
        depth = 0
        while True:
            token = self._take("name", "string", "path", "punct")
            depth += {"[": 1, "]": -1}.get(token.text, 0)
            if depth == 0 and self._peek_text() in ("appliesTo", ";", "{", "@"):
                return

    def _skip_to_semicolon(self) -> None:
        depth = 0
        while True:
            token = self._take("name", "string", "path", "punct")
            depth += {"{": 1, "[": 1, "<": 1, "(": 1, "}": -1, "]": -1, ">": -1, ")": -1}.get(token.text, 0)
            if depth == 0 and token.text == ";":
                return

    def _expect(self, text: str) -> None:
        token = self._take("punct", "path")
        if token.text != text:
            raise SchemaShapeError(token.line, f"expected {text!r}, found {token.text!r}")

    def _take(self, *kinds: str) -> _Token:
        token = self._peek()
        if token is None:
            last = self._tokens[-1].line if self._tokens else 1
            raise SchemaShapeError(last, "the schema ends in the middle of a declaration")
        if token.kind not in kinds:
            raise SchemaShapeError(token.line, f"unexpected {token.text!r}")
        self._at += 1
        return token

    def _peek(self) -> _Token | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _peek_text(self) -> str:
        token = self._peek()
        return token.text if token is not None else ""


class _Resolver:
    """Replaces alias names by their types and builtin names by primitives, as Cedar does: a
    common type first, then an entity type, then a builtin."""

    def __init__(self, aliases: Mapping[str, CedarType], entities: set[str]) -> None:
        self._aliases, self._entities = aliases, entities

    def resolve(self, cedar_type: CedarType, line: int, seen: frozenset[str] = frozenset()) -> CedarType:
        if isinstance(cedar_type, SetOf):
            return SetOf(self.resolve(cedar_type.element, line, seen))
        if isinstance(cedar_type, RecordOf):
            return RecordOf(
                {
                    name: Attribute(self.resolve(a.type, a.line, seen), a.required, a.line)
                    for name, a in cedar_type.attributes.items()
                }
            )
        if isinstance(cedar_type, Named):
            name = cedar_type.name
            if name in self._aliases:
                if name in seen:
                    raise SchemaShapeError(line, f"type {name} refers to itself")
                return self.resolve(self._aliases[name], line, seen | {name})
            if name in self._entities:
                return Named(name)
            builtin = _PRIMITIVES.get(name.removeprefix("__cedar::"))
            if builtin == "Long":
                return Primitive("Long")
            if builtin == "String":
                return Primitive("String")
            if builtin == "Bool":
                return Primitive("Bool")
            return Named(name)
        return cedar_type


def _qualify(namespace: str, name: str) -> str:
    return f"{namespace}::{name}" if namespace else name


def _unquote(text: str) -> str:
    return text[1:-1].encode().decode("unicode_escape") if "\\" in text else text[1:-1]
