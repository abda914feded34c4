"""Why an entity in entities.json was refused, in words a person can act on.

Cedar is the judge (`cedarpy.Entities.from_json_str(text, schema)`), but cedarpy 4.12 says
only "entity does not conform to the schema". When it does, this module compares the entity
with the schema's declaration and names the attribute or parent at fault. It also holds the
rules the mesh adds to Cedar's: entity ids that can never match a real agent or capability
name are mistakes, and so is a spiffe_id that names another agent.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshwarden.names import AGENT_NAME, AGENT_NAME_RULE, CAPABILITY_NAME, CAPABILITY_NAME_RULE
from meshwarden.policy_bundle.model import AGENT_TYPE, CAPABILITY_TYPE
from meshwarden.policy_bundle.schema_shape import CedarType, EntityDecl, Named, Primitive, RecordOf, SetOf

CAPABILITY_KINDS = ("capability", "tool")


def uid_text(entity: Mapping[str, object]) -> str:
    uid = entity.get("uid")
    if isinstance(uid, Mapping):
        return f'{uid.get("type")}::"{uid.get("id")}"'
    return "an entity without a uid"


def schema_mismatches(entity: Mapping[str, object], declarations: Mapping[str, EntityDecl]) -> list[str]:
    """What in `entity` breaks its type's declaration; empty when nothing visible here does."""
    uid = entity.get("uid")
    if not isinstance(uid, Mapping) or not isinstance(uid.get("type"), str) or not isinstance(uid.get("id"), str):
        return ['"uid" must be {"type": "<EntityType>", "id": "<id>"}']
    declaration = declarations.get(str(uid["type"]))
    if declaration is None:
        return [f"entity type {uid['type']} is not declared in schema.cedarschema"]
    found: list[str] = []
    attrs = entity.get("attrs", {})
    if isinstance(attrs, Mapping):
        found.extend(_value_mismatches(attrs, declaration.attributes, "attrs"))
    else:
        found.append('"attrs" must be a JSON object')
    parents = entity.get("parents", [])
    if not isinstance(parents, list):
        return found + ['"parents" must be a JSON list of {"type": ..., "id": ...}']
    for parent in parents:
        parent_type = parent.get("type") if isinstance(parent, Mapping) else None
        if parent_type not in declaration.parent_types:
            allowed = ", ".join(declaration.parent_types) or "none"
            found.append(f"parent of type {parent_type} is not allowed: {declaration.name} may be in {allowed}")
    return found


def mesh_rule_problems(entity: Mapping[str, object]) -> list[str]:
    """The mesh's own rules for Agent and Capability entities."""
    uid = entity.get("uid")
    attrs = entity.get("attrs")
    if not isinstance(uid, Mapping) or not isinstance(attrs, Mapping):
        return []
    kind, name = uid.get("type"), str(uid.get("id"))
    if kind == AGENT_TYPE:
        if not AGENT_NAME.fullmatch(name):
            return [f"agent name {name!r} can never match an agent: names are {AGENT_NAME_RULE}"]
        spiffe_id = attrs.get("spiffe_id")
        if isinstance(spiffe_id, str) and not spiffe_id.endswith(f"/agent/{name}"):
            return [
                f"spiffe_id {spiffe_id!r} names another agent; agent {name} is spiffe://<trust domain>/agent/{name}"
            ]
    if kind == CAPABILITY_TYPE:
        if not CAPABILITY_NAME.fullmatch(name):
            return [f"capability name {name!r} can never match a capability: names are {CAPABILITY_NAME_RULE}"]
        if "kind" in attrs and attrs["kind"] not in CAPABILITY_KINDS:
            return [f"kind must be one of {', '.join(CAPABILITY_KINDS)}, got {attrs['kind']!r}"]
    return []


def _value_mismatches(value: Mapping[str, object], declared: RecordOf, path: str) -> list[str]:
    found = [
        f"{path}.{name} is missing ({_describe(a.type)} required by the schema)"
        for name, a in declared.attributes.items()
        if a.required and name not in value
    ]
    for name, item in value.items():
        attribute = declared.attributes.get(name)
        if attribute is None:
            found.append(f"{path}.{name} is not declared in the schema")
            continue
        found.extend(_type_mismatches(item, attribute.type, f"{path}.{name}"))
    return found


def _type_mismatches(value: object, declared: CedarType, path: str) -> list[str]:
    if isinstance(declared, Primitive):
        ok = {
            "Long": isinstance(value, int) and not isinstance(value, bool),
            "String": isinstance(value, str),
            "Bool": isinstance(value, bool),
        }[declared.name]
        return [] if ok else [f"{path} is {value!r}, the schema declares {declared.name}"]
    if isinstance(declared, SetOf):
        if not isinstance(value, list):
            return [f"{path} is {value!r}, the schema declares {_describe(declared)} (a JSON list)"]
        return [
            problem
            for i, item in enumerate(value)
            for problem in _type_mismatches(item, declared.element, f"{path}[{i}]")
        ]
    if isinstance(declared, RecordOf):
        if not isinstance(value, Mapping):
            return [f"{path} is {value!r}, the schema declares a record (a JSON object)"]
        return _value_mismatches(value, declared, path)
    return []  # entity and extension values: Cedar's message is all there is


def _describe(declared: CedarType) -> str:
    if isinstance(declared, Primitive):
        return declared.name
    if isinstance(declared, SetOf):
        return f"Set<{_describe(declared.element)}>"
    if isinstance(declared, Named):
        return declared.name
    return "record"
