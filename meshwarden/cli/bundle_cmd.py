"""`meshwarden bundle`: write, build, sign, check and read Cedar policy bundles.

    bundle init DIR                                   a starting bundle for the demo mesh
    bundle build DIR [-o FILE]                        check everything, write the artifact
    bundle keygen --key-id ID --out-dir DIR           an Ed25519 key pair for signing
    bundle sign FILE --key KEYFILE --key-id ID [-o FILE]
    bundle verify FILE --trusted-key KEY_ID=PUBFILE ...
    bundle show FILE [--trusted-key ...] [--output json]
    bundle history | pull REVISION | rollback REVISION --key KEYFILE --key-id ID   (the registry's revisions)

Exit codes: 0 done; 1 a bundle that is not trusted (signature, digest, unknown key, older
revision); 2 bad flags or bad input (build problems print one `file:line: message` each).
`push` and `status` talk to the registry and live with the registry's commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from meshwarden.cli import bundle_history_cmd, bundle_rollout_cmd, exit_codes, registry_access
from meshwarden.policy_bundle import artifact as fmt
from meshwarden.policy_bundle.build import build
from meshwarden.policy_bundle.errors import BundleError, BundleInvalid, BundleNotTrusted, RevisionNotNewer
from meshwarden.policy_bundle.init import DirectoryNotEmpty, init
from meshwarden.policy_bundle.inventory import Inventory, inventory
from meshwarden.policy_bundle.keys import keygen, load_private_key, load_public_key
from meshwarden.policy_bundle.sign import sign
from meshwarden.policy_bundle.verify import verify
from meshwarden.secure_files import write_atomically


def add_to(commands: Any) -> None:
    bundle = commands.add_parser("bundle", help="write, build, sign and check Cedar policy bundles")
    actions = bundle.add_subparsers(dest="action", metavar="ACTION", required=True)

    start = actions.add_parser("init", help="write a starting bundle (the demo mesh's agents and two example policies)")
    start.add_argument("directory", type=Path, metavar="DIR", help="a new or empty directory")
    start.add_argument(
        "--models",
        action="store_true",
        help="also write models.json (providers, models, prices for the model gateway) and policies/models.cedar",
    )
    start.add_argument(
        "--from-registry",
        action="store_true",
        help="describe the agents and capabilities the registry knows instead of the demo's; on a bundle "
        "directory, add what appeared since to entities.json and raise the revision",
    )
    registry_access.add_registry_flags(start)
    start.set_defaults(run=_init)

    make = actions.add_parser(
        "build",
        help="check a bundle directory and write its artifact",
        description="Checks the manifest, schema, policies and entities; prints each problem as "
        "file:line: message and exits 2, or writes the unsigned artifact.",
    )
    make.add_argument("directory", type=Path, metavar="DIR")
    make.add_argument("-o", "--output-file", type=Path, metavar="FILE", help="default: <name>.rev<N>.bundle.json here")
    make.add_argument(
        "--revision",
        type=int,
        metavar="N",
        help="build with manifest.toml's revision set to N (the directory is not changed), e.g. a release number",
    )
    make.set_defaults(run=_build)

    keys = actions.add_parser("keygen", help="create an Ed25519 signing key pair: <ID>.key (0600) and <ID>.pub")
    keys.add_argument("--key-id", required=True, metavar="ID", help="the name verifiers know the key by")
    keys.add_argument("--out-dir", required=True, type=Path, metavar="DIR", help="created 0700 if missing")
    keys.set_defaults(run=_keygen)

    signing = actions.add_parser("sign", help="add the one signature to a built bundle")
    signing.add_argument("file", type=Path, metavar="FILE", help="the unsigned artifact `bundle build` wrote")
    signing.add_argument("--key", required=True, type=Path, metavar="KEYFILE", help="the private key (.key)")
    signing.add_argument(
        "--key-id", required=True, metavar="ID", help="the name verifiers know the key by (as in bundle keys)"
    )
    signing.add_argument("-o", "--output-file", type=Path, metavar="FILE", help="default: replace FILE")
    signing.set_defaults(run=_sign)

    checking = actions.add_parser(
        "verify",
        help="check a signed bundle against trusted public keys",
        description="Exit 0 when signed by exactly one trusted key and intact, 1 when not trusted, 2 on bad input.",
    )
    checking.add_argument("file", type=Path, metavar="FILE")
    _trusted_key_flag(checking, required=True)
    checking.add_argument(
        "--newer-than", type=int, metavar="REV", help="refuse revisions not above REV (rollback check)"
    )
    checking.set_defaults(run=_verify)

    showing = actions.add_parser("show", help="summarise a bundle: manifest, digest, signature, policies, entities")
    showing.add_argument("file", type=Path, metavar="FILE")
    _trusted_key_flag(showing, required=False)
    showing.add_argument("--output", choices=["text", "json"], default="text", help="default text")
    showing.set_defaults(run=_show)

    bundle_rollout_cmd.add_actions(actions)  # push and status: through the registry
    bundle_history_cmd.add_actions(actions)  # history, pull, rollback: the stored revisions


def _trusted_key_flag(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        required=required,
        metavar="KEY_ID=PUBFILE",
        help="a trusted public key and its id; repeat for several",
    )


def _init(args: argparse.Namespace) -> int:
    if args.from_registry:
        from meshwarden.cli import bundle_from_registry  # grpc only when it talks to the registry

        if args.models:
            return _fail("init", "--models and --from-registry do not go together yet", exit_codes.USAGE)
        return bundle_from_registry.run(args)
    try:
        written = init(args.directory, models=args.models)
    except DirectoryNotEmpty as exc:
        return _fail("init", str(exc), exit_codes.USAGE)
    for path in written:
        print(path)
    print(f"next: meshwarden bundle build {args.directory}", file=sys.stderr)
    return exit_codes.OK


def _build(args: argparse.Namespace) -> int:
    try:
        built = build(args.directory, revision=args.revision)
    except BundleInvalid as exc:
        for problem in exc.problems:
            print(f"{args.directory / problem.file}:{problem.line}: {problem.message}", file=sys.stderr)
        return exit_codes.USAGE
    manifest = built.contents.manifest
    target = args.output_file or Path(f"{manifest.name}.rev{manifest.revision}.bundle.json")
    try:
        write_atomically(target, built.to_bytes(), mode=0o644)
    except OSError as exc:
        return _fail("build", f"cannot write {target}: {exc.strerror}", exit_codes.USAGE)
    print(target)
    print(f"built {manifest.label}: {len(built.policies)} policies, digest {built.digest}, unsigned", file=sys.stderr)
    return exit_codes.OK


def _keygen(args: argparse.Namespace) -> int:
    try:
        files = keygen(args.out_dir, args.key_id)
    except (BundleError, OSError) as exc:
        return _fail("keygen", str(exc), exit_codes.USAGE)
    print(files.private_key)
    print(files.public_key)
    print(
        f"keep {files.private_key} secret; give {files.public_key} to sidecars as trusted key {files.key_id}",
        file=sys.stderr,
    )
    return exit_codes.OK


def _sign(args: argparse.Namespace) -> int:
    target = args.output_file or args.file
    try:
        signed = sign(_read(args.file), load_private_key(args.key), args.key_id)
        write_atomically(target, signed, mode=0o644)
    except BundleError as exc:
        return _fail("sign", str(exc), exit_codes.USAGE)
    except OSError as exc:
        return _fail("sign", f"{exc.filename or target}: {exc.strerror}", exit_codes.USAGE)
    print(target)
    return exit_codes.OK


def _verify(args: argparse.Namespace) -> int:
    try:
        trusted = _trusted_keys(args.trusted_key)
        verified = verify(_read(args.file), trusted, newer_than=args.newer_than)
    except (BundleNotTrusted, RevisionNotNewer) as exc:
        return _fail("verify", str(exc), exit_codes.FAILED)
    except BundleError as exc:
        return _fail("verify", str(exc), exit_codes.USAGE)
    except OSError as exc:
        return _fail("verify", f"{exc.filename}: {exc.strerror}", exit_codes.USAGE)
    print(f"verified {verified.manifest.label}: signed by trusted key {verified.key_id}, digest {verified.digest}")
    return exit_codes.OK


def _show(args: argparse.Namespace) -> int:
    try:
        raw = _read(args.file)
        parsed = fmt.decode(raw)
        contents = fmt.contents_of(parsed)
        verified = verify(raw, _trusted_keys(args.trusted_key)) if args.trusted_key else None
    except (BundleNotTrusted, RevisionNotNewer) as exc:
        return _fail("show", str(exc), exit_codes.FAILED)
    except BundleError as exc:
        return _fail("show", str(exc), exit_codes.USAGE)
    except OSError as exc:
        return _fail("show", f"{exc.filename}: {exc.strerror}", exit_codes.USAGE)
    summary = ShowSummary(parsed, contents, inventory(contents), verified.key_id if verified else None)
    print(json.dumps(show_json(summary), indent=2) if args.output == "json" else render_show(summary))
    return exit_codes.OK


@dataclass(frozen=True, slots=True)
class ShowSummary:
    parsed: fmt.Artifact
    contents: fmt.BundleContents
    listed: Inventory
    verified_by: str | None  # the trusted key id, when --trusted-key was given and it verified


def show_json(summary: ShowSummary) -> dict[str, object]:
    """The object `bundle show --output json` prints (keys are a stable interface)."""
    manifest = summary.contents.manifest
    return {
        "name": manifest.name,
        "revision": manifest.revision,
        "description": manifest.description,
        "settings": {"store_raw_arguments": manifest.settings.store_raw_arguments},
        "digest": fmt.bundle_digest(summary.parsed.digests),
        "signatures": [{"key_id": s.key_id, "algorithm": s.algorithm} for s in summary.parsed.signatures],
        "verified_by": summary.verified_by,
        "files": dict(sorted(summary.parsed.digests.items())),
        "entities": dict(summary.listed.entities_by_type),
        "policies": [
            {"id": p.policy_id, "effect": p.effect, "reason": p.reason, "file": p.file, "line": p.line}
            for p in summary.listed.policies
        ],
    }


def render_show(summary: ShowSummary) -> str:
    manifest = summary.contents.manifest
    signed_by = ", ".join(f"key {s.key_id} ({s.algorithm})" for s in summary.parsed.signatures) or "none"
    if summary.verified_by:
        trust = f"verified with trusted key {summary.verified_by}"
    else:
        trust = (
            "not verified (pass --trusted-key KEY_ID=PUBFILE to check it)" if summary.parsed.signatures else "unsigned"
        )
    policies = summary.listed.policies
    width = max((len(p.policy_id) for p in policies), default=0)
    lines = [
        f"{manifest.label}: {manifest.description}".rstrip(": "),
        f"  digest     {fmt.bundle_digest(summary.parsed.digests)}",
        f"  signature  {signed_by}; {trust}",
        f"  settings   store_raw_arguments = {str(manifest.settings.store_raw_arguments).lower()}",
        "  entities   " + ", ".join(f"{kind} {count}" for kind, count in summary.listed.entities_by_type),
        f"  policies   {len(policies)}",
    ]
    lines += [f"    {p.effect:6}  {p.policy_id.ljust(width)}  {p.file}:{p.line}  {p.reason}".rstrip() for p in policies]
    lines.append("  files")
    lines += [f"    {path}  {digest}" for path, digest in sorted(summary.parsed.digests.items())]
    return "\n".join(lines)


def _trusted_keys(specs: list[str]) -> dict[str, Ed25519PublicKey]:
    trusted: dict[str, Ed25519PublicKey] = {}
    for spec in specs:
        key_id, separator, path = spec.partition("=")
        if not separator or not key_id or not path:
            raise BundleError(f"--trusted-key must be KEY_ID=PUBFILE, got {spec!r}")
        trusted[key_id] = load_public_key(Path(path))
    return trusted


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _fail(action: str, message: str, code: int) -> int:
    print(f"meshwarden bundle {action}: {message}", file=sys.stderr)
    return code
