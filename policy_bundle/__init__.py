"""Policy bundles: Cedar policies, schema and entities with a manifest, signed with Ed25519.

Shared by the CLI (init, build, keygen, sign, verify, show), the registry (store, distribute)
and the sidecar (verify, then sidecar.policy.ActivePolicy). README.md in this directory
describes the model, the JSON-to-Cedar mapping and the artifact format.
"""

from meshwarden.policy_bundle.artifact import BundleContents, PolicyFile
from meshwarden.policy_bundle.build import BuiltBundle, PolicySource, build
from meshwarden.policy_bundle.errors import (
    AlreadySigned,
    BundleError,
    BundleInvalid,
    BundleNotTrusted,
    BundleUnreadable,
    DigestMismatch,
    KeyFileError,
    RevisionNotNewer,
    SignatureCountWrong,
    SignatureInvalid,
    SourceProblem,
    UnknownKeyId,
)
from meshwarden.policy_bundle.keys import KeyFiles, keygen, load_private_key, load_public_key
from meshwarden.policy_bundle.manifest import BundleSettings, Manifest, parse_manifest
from meshwarden.policy_bundle.sign import sign
from meshwarden.policy_bundle.verify import VerifiedBundle, verify

__all__ = [
    "AlreadySigned",
    "BuiltBundle",
    "BundleContents",
    "BundleError",
    "BundleInvalid",
    "BundleNotTrusted",
    "BundleSettings",
    "BundleUnreadable",
    "DigestMismatch",
    "KeyFileError",
    "KeyFiles",
    "Manifest",
    "PolicyFile",
    "PolicySource",
    "RevisionNotNewer",
    "SignatureCountWrong",
    "SignatureInvalid",
    "SourceProblem",
    "UnknownKeyId",
    "VerifiedBundle",
    "build",
    "keygen",
    "load_private_key",
    "load_public_key",
    "parse_manifest",
    "sign",
    "verify",
]
