"""`build(directory)`: a bundle directory in git becomes one checked, unsigned artifact.

Everything that can be wrong is reported at once, each problem as `file:line: message`:
the manifest, the schema (Cedar's parser, then the mesh's model of `action "call"`), each
policy (parsed one statement at a time so its file and line are known; `@id` required and
unique; no templates), the policies against the schema (`cedarpy.validate_policies`), and
entities.json against the schema. Only a bundle with no problem becomes an artifact.
About 300 lines: one step per file kind, in the order above; the rules themselves live in
manifest.py, model.py, entity_check.py and cedar_source.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cedarpy

from meshwarden.policy_bundle import artifact as fmt
from meshwarden.policy_bundle.approval_rules import approval_rule
from meshwarden.policy_bundle.cedar_source import Statement, culprit_line, locate_error, split_statements
from meshwarden.policy_bundle.entity_check import mesh_rule_problems, schema_mismatches, uid_text
from meshwarden.policy_bundle.errors import BundleInvalid, SourceProblem, bundle_label
from meshwarden.policy_bundle.manifest import MANIFEST_FILE, Manifest, parse_manifest, with_revision
from meshwarden.policy_bundle.mcp_servers import MCP_SERVERS_FILE, NO_SERVERS, McpServers, parse_mcp_servers
from meshwarden.policy_bundle.model import (
    CALL_TOOL_ACTION,
    MODEL_ACTION,
    MODEL_ATTRIBUTES,
    MODEL_TYPE,
    TOOL_TYPE,
    call_action_problems,
    call_tool_action_problems,
    model_action_problems,
)
from meshwarden.policy_bundle.model_catalog import model_entities, parse_catalog
from meshwarden.policy_bundle.schema_shape import SchemaShape, SchemaShapeError, read_schema

POLICY_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
POLICY_ID_RULE: Final = "1-128 characters of letters, digits, '.', '_', ':' and '-', starting with a letter or digit"
_CEDAR_POLICY_PREFIX: Final = re.compile(r"^for policy `policy\d+`, ")


@dataclass(frozen=True, slots=True)
class PolicySource:
    """Where one policy is, by its @id."""

    policy_id: str
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class BuiltBundle:
    contents: fmt.BundleContents
    artifact: fmt.Artifact
    policies: tuple[PolicySource, ...]

    @property
    def digest(self) -> str:
        return fmt.bundle_digest(self.artifact.digests)

    def to_bytes(self) -> bytes:
        return fmt.encode(self.artifact)


def build(directory: Path, revision: int | None = None) -> BuiltBundle:
    """The checked, unsigned bundle built from `directory` (with manifest.toml's revision set to
    `revision` when given); BundleInvalid lists every problem."""
    files, problems = _read_files(directory)
    if revision is not None and MANIFEST_FILE in files:
        files[MANIFEST_FILE] = _with_revision(files[MANIFEST_FILE], revision, problems)
    return build_files(files, str(directory), problems)


def build_files(files: Mapping[str, str], source: str, problems: list[SourceProblem] | None = None) -> BuiltBundle:
    """The checked, unsigned bundle of these files (relative path -> text), as read from
    `source` (named in errors): how `bundle rollback` rebuilds an old revision's files."""
    files, problems = dict(files), list(problems or [])
    manifest = _manifest(files, problems)
    label = manifest.label if manifest else bundle_label("", None)
    schema, shape = _schema(files.get(fmt.SCHEMA_FILE), problems)
    servers = _mcp_servers(files, shape, problems)
    statements, policies = _policies(files, problems)
    if schema is not None and statements:
        problems.extend(_validation_problems(statements, schema))
    if fmt.ENTITIES_FILE in files:
        problems.extend(_entity_problems(files[fmt.ENTITIES_FILE], schema, shape))
    if fmt.MODELS_FILE in files:
        problems.extend(_model_problems(files[fmt.MODELS_FILE], schema, shape))
    if problems or manifest is None:
        raise BundleInvalid(sorted(problems, key=lambda p: (p.file, p.line)), bundle=f"{label} ({source})")
    policy_files = tuple(fmt.PolicyFile(p, t) for p, t in sorted(files.items()) if fmt.POLICY_FILE.fullmatch(p))
    contents = fmt.BundleContents(
        manifest=manifest,
        schema_text=files[fmt.SCHEMA_FILE],
        policy_files=policy_files,
        entities_text=files[fmt.ENTITIES_FILE],
        models_text=files.get(fmt.MODELS_FILE, ""),
        mcp_servers=servers,
    )
    return BuiltBundle(contents=contents, artifact=fmt.unsigned(files), policies=tuple(policies))


def _read_files(directory: Path) -> tuple[dict[str, str], list[SourceProblem]]:
    files: dict[str, str] = {}
    problems: list[SourceProblem] = []
    if not directory.is_dir():
        raise BundleInvalid(
            [SourceProblem(str(directory), 1, "not a directory; create one with `meshwarden bundle init DIR`")]
        )
    for name in (MANIFEST_FILE, fmt.SCHEMA_FILE, fmt.ENTITIES_FILE):
        path = directory / name
        if not path.is_file():
            problems.append(SourceProblem(name, 1, f"missing: every bundle has {name} (see `meshwarden bundle init`)"))
            continue
        _read_text(path, name, files, problems)
    if (directory / fmt.MODELS_FILE).is_file():  # optional: a bundle without it declares no model
        _read_text(directory / fmt.MODELS_FILE, fmt.MODELS_FILE, files, problems)
    if (directory / MCP_SERVERS_FILE).is_file():  # optional: a bundle without it lets agents reach no tool
        _read_text(directory / MCP_SERVERS_FILE, MCP_SERVERS_FILE, files, problems)
    policy_dir = directory / fmt.POLICY_DIR
    found = sorted(policy_dir.glob("*.cedar")) if policy_dir.is_dir() else []
    if not found:
        problems.append(
            SourceProblem(fmt.POLICY_DIR, 1, "no policies/*.cedar files: a bundle without policies denies every call")
        )
    for path in found:
        relative = f"{fmt.POLICY_DIR}/{path.name}"
        if not fmt.POLICY_FILE.fullmatch(relative):
            problems.append(SourceProblem(relative, 1, "policy file names are letters, digits, '.', '_' and '-' only"))
            continue
        _read_text(path, relative, files, problems)
    return files, problems


def _read_text(path: Path, name: str, files: dict[str, str], problems: list[SourceProblem]) -> None:
    try:
        files[name] = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(SourceProblem(name, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
    except OSError as exc:
        problems.append(SourceProblem(name, 1, f"cannot be read: {exc.strerror}"))


def _manifest(files: Mapping[str, str], problems: list[SourceProblem]) -> Manifest | None:
    if MANIFEST_FILE not in files:
        return None
    try:
        return parse_manifest(files[MANIFEST_FILE])
    except BundleInvalid as exc:
        problems.extend(exc.problems)
        return None


def _schema(text: str | None, problems: list[SourceProblem]) -> tuple[cedarpy.Schema | None, SchemaShape | None]:
    if text is None:
        return None, None
    try:
        schema = cedarpy.Schema.from_str(text)
    except ValueError as exc:
        line = locate_error(text, 1, str(exc), cedarpy.Schema.from_str)
        problems.append(SourceProblem(fmt.SCHEMA_FILE, line, f"Cedar schema error: {exc}"))
        return None, None
    try:
        shape = read_schema(text)
        action = shape.actions.get("call")
        if action is None:
            problems.append(
                SourceProblem(
                    fmt.SCHEMA_FILE,
                    1,
                    'declare `action "call" appliesTo { principal: [Agent], resource: [Capability], context: {...} };`',
                )
            )
            return schema, shape
    except SchemaShapeError as exc:
        problems.append(SourceProblem(fmt.SCHEMA_FILE, exc.line, f"meshwarden cannot read this schema: {exc}"))
        return schema, None
    problems.extend(SourceProblem(fmt.SCHEMA_FILE, line, message) for line, message in call_action_problems(action))
    return schema, shape


def _mcp_servers(files: Mapping[str, str], shape: SchemaShape | None, problems: list[SourceProblem]) -> McpServers:
    """mcp_servers.toml checked, and the schema's `action "CallTool"` with it when it declares
    servers (or when the schema declares the action at all)."""
    servers = NO_SERVERS
    if MCP_SERVERS_FILE in files:
        try:
            servers = parse_mcp_servers(files[MCP_SERVERS_FILE])
        except BundleInvalid as exc:
            problems.extend(exc.problems)
    if shape is None:
        return servers
    action = shape.actions.get(CALL_TOOL_ACTION)
    if action is None:
        if servers.servers:
            problems.append(
                SourceProblem(
                    fmt.SCHEMA_FILE,
                    1,
                    f'{MCP_SERVERS_FILE} declares MCP servers: declare `action "{CALL_TOOL_ACTION}" appliesTo '
                    f"{{ principal: [Agent], resource: [{TOOL_TYPE}], context: {{...}} }};` and `entity {TOOL_TYPE} "
                    "{ server: String, name: String, risk: String };`",
                )
            )
        return servers
    problems.extend(
        SourceProblem(fmt.SCHEMA_FILE, line, message)
        for line, message in call_tool_action_problems(action, shape.entities.get(TOOL_TYPE))
    )
    return servers


@dataclass(frozen=True, slots=True)
class _LocatedStatement:
    file: str
    statement: Statement


def _policies(
    files: Mapping[str, str], problems: list[SourceProblem]
) -> tuple[list[_LocatedStatement], list[PolicySource]]:
    statements: list[_LocatedStatement] = []
    policies: list[PolicySource] = []
    seen: dict[str, PolicySource] = {}
    for path, text in sorted(files.items()):
        if not fmt.POLICY_FILE.fullmatch(path):
            continue
        for statement in split_statements(text):
            policy_id = _check_statement(path, statement, problems)
            if policy_id is None:
                continue
            statements.append(_LocatedStatement(path, statement))  # parsed: worth validating
            source = PolicySource(policy_id, path, statement.line)
            earlier = seen.get(policy_id)
            if earlier is not None:
                problems.append(
                    SourceProblem(
                        path,
                        statement.line,
                        f'duplicate @id("{policy_id}"): also at {earlier.file}:{earlier.line}; ids must be unique in a bundle',
                    )
                )
                continue
            seen[policy_id] = source
            policies.append(source)
    return statements, policies


def _check_statement(path: str, statement: Statement, problems: list[SourceProblem]) -> str | None:
    """The statement's @id if it is one well-formed policy; problems recorded otherwise."""
    try:
        parsed = cedarpy.PolicySet.from_str(statement.text)
    except ValueError as exc:
        line = locate_error(statement.text, statement.line, str(exc), cedarpy.PolicySet.from_str)
        hint = " (a policy ends with `;`)" if not statement.terminated else ""
        problems.append(SourceProblem(path, line, f"Cedar syntax error: {exc}{hint}"))
        return None
    tree = parsed.to_pst()
    if tree.templates:
        problems.append(
            SourceProblem(
                path,
                statement.line,
                "templates (?principal, ?resource) are not supported in bundles: name the entity instead of the slot",
            )
        )
        return None
    policy = next(iter(tree.static_policies.values()))
    policy_id = policy.annotations.get("id")
    if policy_id is None:
        problems.append(
            SourceProblem(
                path,
                statement.line,
                'policy has no @id("..."): every policy needs an id, unique in the bundle (decisions and receipts name it)',
            )
        )
        return None
    if not POLICY_ID.fullmatch(policy_id):
        problems.append(SourceProblem(path, statement.line, f"@id {policy_id!r} must be {POLICY_ID_RULE}"))
        return None
    try:
        approval_rule(policy.effect, policy.annotations)
    except ValueError as exc:
        problems.append(SourceProblem(path, statement.line, f'policy "{policy_id}": {exc}'))
    reason = policy.annotations.get("reason")
    if reason is not None and not reason.strip():
        problems.append(
            SourceProblem(
                path,
                statement.line,
                f'@reason of policy "{policy_id}" is empty: say what the caller can do, or leave it out',
            )
        )
    return policy_id


def _validation_problems(statements: Sequence[_LocatedStatement], schema: cedarpy.Schema) -> list[SourceProblem]:
    """cedarpy.validate_policies over all policies at once; its positional policy ids
    ("policy<N>": the N-th statement, in the order joined here) lead back to file and line."""
    result = cedarpy.validate_policies("\n".join(s.statement.text for s in statements), schema)
    problems: list[SourceProblem] = []
    for error in result.errors:
        index = int(error.policy_id.removeprefix("policy")) if re.fullmatch(r"policy\d+", error.policy_id) else -1
        if not 0 <= index < len(statements):
            problems.append(SourceProblem(fmt.SCHEMA_FILE, 1, f"Cedar validation error: {error.error}"))
            continue
        located = statements[index]
        message = _CEDAR_POLICY_PREFIX.sub("", error.error)
        line = culprit_line(located.statement.text, located.statement.line, message)
        problems.append(SourceProblem(located.file, line, f"does not match the schema: {message}"))
    return problems


def _model_problems(text: str, schema: cedarpy.Schema | None, shape: SchemaShape | None) -> list[SourceProblem]:
    """models.json on its own (model_catalog), then against the schema: the gateway asks Cedar
    `CallModel` on `Model::"<name>"` entities made from the catalog, so both must be declared."""
    try:
        catalog = parse_catalog(text)
    except BundleInvalid as exc:
        return list(exc.problems)
    if shape is None or schema is None:
        return []
    problems = [
        SourceProblem(fmt.SCHEMA_FILE, line, message)
        for line, message in model_action_problems(shape.actions.get(MODEL_ACTION))
    ]
    if problems:
        return problems
    try:
        cedarpy.Entities.from_json_str(json.dumps(model_entities(catalog)), schema)
    except ValueError as exc:
        attributes = ", ".join(f"{name}: {kind}" for name, kind in MODEL_ATTRIBUTES.items())
        problems.append(
            SourceProblem(
                fmt.SCHEMA_FILE,
                1,
                f"the models of models.json do not fit the schema's entity {MODEL_TYPE} ({exc}); declare "
                f"`entity {MODEL_TYPE} {{ {attributes} }};`",
            )
        )
    return problems


def _entity_problems(text: str, schema: cedarpy.Schema | None, shape: SchemaShape | None) -> list[SourceProblem]:
    try:
        entities = json.loads(text)
    except json.JSONDecodeError as exc:
        return [SourceProblem(fmt.ENTITIES_FILE, exc.lineno, f"not valid JSON: {exc.msg}")]
    if not isinstance(entities, list):
        return [SourceProblem(fmt.ENTITIES_FILE, 1, "must be a JSON list of entities in Cedar's entity format")]
    lines = _element_lines(text)
    problems = [
        SourceProblem(fmt.ENTITIES_FILE, line, f"{uid_text(entity)}: {message}")
        for entity, line in zip(entities, lines, strict=True)
        if isinstance(entity, dict)
        for message in mesh_rule_problems(entity)
    ]
    if schema is None:
        return problems
    try:
        cedarpy.Entities.from_json_str(text, schema)
    except ValueError as exc:
        problems.extend(_explain_entities(entities, lines, schema, shape, str(exc)))
    return problems


def _explain_entities(
    entities: list[object], lines: list[int], schema: cedarpy.Schema, shape: SchemaShape | None, message: str
) -> list[SourceProblem]:
    """Cedar refused the file; find each entity it refuses alone, and say why if we can."""
    found: list[SourceProblem] = []
    for entity, line in zip(entities, lines, strict=True):
        try:
            cedarpy.Entities.from_json_str(json.dumps([entity]), schema)
        except ValueError as exc:
            label = uid_text(entity) if isinstance(entity, dict) else "this entry"
            details = schema_mismatches(entity, shape.entities) if isinstance(entity, dict) and shape else []
            for detail in details or [str(exc)]:
                found.append(SourceProblem(fmt.ENTITIES_FILE, line, f"{label}: {detail}"))
    return found or [SourceProblem(fmt.ENTITIES_FILE, 1, f"Cedar refused the entities: {message}")]


def _element_lines(text: str) -> list[int]:
    """The line on which each element of the top-level JSON list starts."""
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    lines: list[int] = []
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] == "]":
            return lines
        lines.append(text.count("\n", 0, position) + 1)
        _, position = decoder.raw_decode(text, position)


def _with_revision(manifest_text: str, revision: int, problems: list[SourceProblem]) -> str:
    try:
        return with_revision(manifest_text, revision)
    except ValueError as exc:
        problems.append(SourceProblem(MANIFEST_FILE, 1, f"{exc} (--revision)"))
        return manifest_text
