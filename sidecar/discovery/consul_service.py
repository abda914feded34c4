"""How an agent instance is written into Consul, and read back: service definition, Meta
layout and the content-addressed schema documents in Consul's KV store.

Consul limits service Meta to 64 keys, keys to 128 characters of [A-Za-z0-9_-] and values to
512 characters (the node-meta rules, which service meta shares). Capability schemas are JSON
Schemas of any size, so they cannot live in Meta. The layout is:

- `meshwarden-version`, `meshwarden-spiffe-id`, `meshwarden-peer-address`: one value each;
- `meshwarden-capabilities`: how many capabilities the instance serves;
- `meshwarden-caps-0`, `-1`, ...: the capabilities as `name=sha256:<hex>` joined by commas,
  packed greedily into values of at most 512 characters (about five per key for typical
  names, so the 59 keys left hold a few hundred capabilities; more is refused, by name);
- the schemas themselves in KV under `meshwarden/schemas/<hex>`, keyed by their hash. A
  reader recomputes the hash of what it reads and refuses a document that does not match,
  so whoever can write that KV prefix can at worst make an instance unroutable, never give
  it another contract.

Service Address and Port are the peer endpoint as well, so Consul's DNS interface and UI show
where the sidecar listens; the tag `meshwarden` marks services that are meshwarden agents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meshwarden.addresses import AddressError, parse_host_port
from meshwarden.identity.spiffe_ids import agent_id
from meshwarden.names import CAPABILITY_NAME
from meshwarden.schema_hash import schema_hash
from meshwarden.sidecar.catalog import CapabilitySpec
from meshwarden.sidecar.discovery.consul_api import ServiceDefinition, ServiceEntry, TtlCheck
from meshwarden.sidecar.local_agent import LocalAgent, Registration
from meshwarden.sidecar.schemas import InvalidSchema, canonical_schema
from meshwarden.v1 import catalog_pb2

MESH_TAG = "meshwarden"
META_VERSION = "meshwarden-version"
META_SPIFFE_ID = "meshwarden-spiffe-id"
META_PEER_ADDRESS = "meshwarden-peer-address"
META_CAPABILITY_COUNT = "meshwarden-capabilities"
META_CHUNK_PREFIX = "meshwarden-caps-"
SCHEMA_KEY_PREFIX = "meshwarden/schemas/"

MAX_META_KEYS = 64
MAX_META_KEY_LENGTH = 128
MAX_META_VALUE_LENGTH = 512
META_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_FIXED_KEYS = 4


class MetaTooLarge(ValueError):
    """The capabilities do not fit Consul's service Meta limits."""


class InvalidEntry(ValueError):
    """A Consul entry that is no usable meshwarden instance; the message says why."""


class MissingSchema(InvalidEntry):
    """The instance is fine but a schema document it names is not (yet) readable: try again later."""


@dataclass(frozen=True, slots=True)
class SchemaPair:
    input_schema_json: str
    output_schema_json: str


def check_id(instance_id: str) -> str:
    return f"meshwarden:{instance_id}"


def service_definition(local: LocalAgent, registration: Registration, check: TtlCheck) -> ServiceDefinition:
    """The registration of `local`'s instance; raises MetaTooLarge when its capabilities do not fit."""
    peer = parse_host_port(local.peer_address, what="peer address")
    meta = {
        META_VERSION: str(registration.version),
        META_SPIFFE_ID: local.spiffe_id,
        META_PEER_ADDRESS: local.peer_address,
        **encode_capabilities([(s.name, s.schema_hash) for s in registration.capabilities.values()]),
    }
    return ServiceDefinition(
        name=local.name,
        service_id=local.instance_id,
        address=peer.host,
        port=peer.port,
        tags=(MESH_TAG,),
        meta=meta,
        check=check,
    )


def encode_capabilities(capabilities: Sequence[tuple[str, str]]) -> dict[str, str]:
    chunks: list[str] = []
    for name, digest in sorted(capabilities):
        item = f"{name}={digest}"
        if chunks and len(chunks[-1]) + 1 + len(item) <= MAX_META_VALUE_LENGTH:
            chunks[-1] += "," + item
        else:
            chunks.append(item)
    if _FIXED_KEYS + len(chunks) > MAX_META_KEYS:
        raise MetaTooLarge(
            f"{len(capabilities)} capabilities need {len(chunks)} Consul Meta values of at most "
            f"{MAX_META_VALUE_LENGTH} characters, and a service may have only {MAX_META_KEYS} Meta keys "
            f"({_FIXED_KEYS} are taken); serve fewer capabilities per agent, or shorter names"
        )
    meta = {f"{META_CHUNK_PREFIX}{i}": chunk for i, chunk in enumerate(chunks)}
    meta[META_CAPABILITY_COUNT] = str(len(capabilities))
    return meta


def decode_capabilities(meta: Mapping[str, str]) -> list[tuple[str, str]]:
    """(name, schema hash) pairs; raises InvalidEntry when the Meta is incomplete or malformed."""
    count_text = meta.get(META_CAPABILITY_COUNT, "")
    if not count_text.isdigit():
        raise InvalidEntry(f"Meta {META_CAPABILITY_COUNT} is missing or not a number")
    found: list[tuple[str, str]] = []
    index = 0
    while f"{META_CHUNK_PREFIX}{index}" in meta:
        for item in meta[f"{META_CHUNK_PREFIX}{index}"].split(","):
            name, sep, digest = item.partition("=")
            if not sep or not CAPABILITY_NAME.fullmatch(name) or not _HASH.fullmatch(digest):
                raise InvalidEntry(f"Meta {META_CHUNK_PREFIX}{index} holds {item!r}, not name=sha256:<hex>")
            found.append((name, digest))
        index += 1
    if len(found) != int(count_text):
        raise InvalidEntry(f"Meta lists {len(found)} capabilities but {META_CAPABILITY_COUNT} says {count_text}")
    return found


def schema_key(digest: str) -> str:
    return SCHEMA_KEY_PREFIX + digest.removeprefix("sha256:")


def schema_document(spec: CapabilitySpec) -> bytes:
    return json.dumps(
        {"input_schema_json": spec.input_schema_json, "output_schema_json": spec.output_schema_json},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def read_schema_document(digest: str, raw: bytes) -> SchemaPair:
    """The schemas stored under `digest`; raises InvalidEntry unless they hash to `digest`."""
    try:
        document = json.loads(raw)
        pair = SchemaPair(str(document["input_schema_json"]), str(document["output_schema_json"]))
        actual = schema_hash(
            canonical_schema(pair.input_schema_json, where="input schema"),
            canonical_schema(pair.output_schema_json, where="output schema"),
        )
    except (ValueError, KeyError, TypeError, InvalidSchema) as exc:
        raise InvalidEntry(f"the schema document {schema_key(digest)} is unreadable: {exc}") from exc
    if actual != digest:
        raise InvalidEntry(f"the schema document {schema_key(digest)} hashes to {actual}, not {digest}")
    return pair


def instance_from_entry(
    entry: ServiceEntry, trust_domain: str, schemas: Mapping[str, SchemaPair]
) -> catalog_pb2.Instance:
    """The catalog instance an entry describes. Raises InvalidEntry when it is not a usable
    meshwarden instance; in particular its SPIFFE ID must be the one of its service name, or an
    instance registered as `billing` could be reached while proving another identity."""
    meta = entry.meta
    expected_id = agent_id(trust_domain, entry.name)
    if meta.get(META_SPIFFE_ID) != expected_id:
        raise InvalidEntry(
            f"instance {entry.service_id} of {entry.name} lists SPIFFE ID {meta.get(META_SPIFFE_ID)!r}; "
            f"only {expected_id} may serve as {entry.name}"
        )
    peer_address = meta.get(META_PEER_ADDRESS, "")
    try:
        parse_host_port(peer_address, what="peer address")
    except AddressError as exc:
        raise InvalidEntry(f"instance {entry.service_id}: {exc}") from exc
    capabilities = []
    for name, digest in decode_capabilities(meta):
        pair = schemas.get(digest)
        if pair is None:
            raise MissingSchema(f"instance {entry.service_id}: no valid schema document for {name} ({digest}) yet")
        capabilities.append(
            catalog_pb2.Capability(
                name=name,
                input_schema_json=pair.input_schema_json,
                output_schema_json=pair.output_schema_json,
                schema_hash=digest,
            )
        )
    return catalog_pb2.Instance(
        instance_id=entry.service_id,
        agent=entry.name,
        version=meta.get(META_VERSION, ""),
        peer_address=peer_address,
        spiffe_id=expected_id,
        capabilities=capabilities,
    )
