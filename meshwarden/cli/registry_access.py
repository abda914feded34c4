"""How operators' commands reach the registry: its address, which CA to trust, the operator token.

Shared by `meshwarden agents list` and `meshwarden identity token create`. The registry speaks
TLS only, so the CLI must know its CA before it sends anything:
1. `--trust-bundle FILE` (env MESHWARDEN_TRUST_BUNDLE): the CA certificates, PEM; else
2. `--ca-pin sha256:<hex>` (env MESHWARDEN_CA_PIN): the CA is read from the registry's TLS
   handshake and accepted only with that fingerprint (the registry prints it in its ready
   line and log); else
3. on loopback only, trust on first use (identity.bootstrap logs the fingerprint).
The trust domain, which names the registry's SPIFFE ID the server must prove, is taken from
the CA certificate (`spiffe://<trust-domain>` URI SAN) unless `--trust-domain` says otherwise.

The operator token: `--operator-token-file FILE`, else env MESHWARDEN_OPERATOR_TOKEN (the token
itself), else the default registry data dir's `operator.token` when it exists (one machine,
no set-up). It goes to the registry as `authorization: Bearer <token>`, and nowhere else.

What no flag and no variable gives comes from the selected context (`--context NAME`, env
MESHWARDEN_CONTEXT, else the current one; meshwarden/cli/contexts.py), before the defaults.

Every operator command's parser adds these flags, so this module imports grpc, cryptography
and pyOpenSSL only in the functions that contact the registry: `--help` stays instant.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from meshwarden.addresses import DEFAULT_REGISTRY_ADDRESS, AddressError, parse_host_port
from meshwarden.cli import exit_codes
from meshwarden.identity.spiffe_ids import DEFAULT_TRUST_DOMAIN, IdentityError, check_trust_domain

if TYPE_CHECKING:
    import grpc.aio

    from meshwarden.registry_client import RegistryTrust

REGISTRY_ENV: Final = "MESHWARDEN_REGISTRY"
TRUST_BUNDLE_ENV: Final = "MESHWARDEN_TRUST_BUNDLE"
CA_PIN_ENV: Final = "MESHWARDEN_CA_PIN"
TRUST_DOMAIN_ENV: Final = "MESHWARDEN_TRUST_DOMAIN"
OPERATOR_TOKEN_ENV: Final = "MESHWARDEN_OPERATOR_TOKEN"
# The registry's default --data-dir (registry.config.DEFAULT_DATA_DIR) and its token file.
DEFAULT_OPERATOR_TOKEN_FILE: Final = Path("./.meshwarden/registry/operator.token")
OPERATOR_USER_HEADER: Final = "meshwarden-operator-user"  # registry.operators reads it


class AccessError(Exception):
    """The registry cannot be reached safely with what was given; carries the exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RegistryAccess:
    address: str
    trust: RegistryTrust
    operator_token: str = field(repr=False)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        # The user name is a claim the registry's audit log keeps beside the proven actor.
        return (("authorization", f"Bearer {self.operator_token}"), (OPERATOR_USER_HEADER, _user_name()))


def add_registry_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        metavar="HOST:PORT",
        help=f"the registry's TLS address, its --listen (env {REGISTRY_ENV}; default {DEFAULT_REGISTRY_ADDRESS})",
    )
    parser.add_argument(
        "--trust-bundle", metavar="FILE", help=f"CA certificates to trust, PEM (env {TRUST_BUNDLE_ENV})"
    )
    parser.add_argument(
        "--ca-pin",
        metavar="sha256:HEX",
        help=f"trust the CA the registry presents only with this fingerprint (env {CA_PIN_ENV}); "
        "without it or --trust-bundle, a loopback registry is trusted on first use",
    )
    parser.add_argument(
        "--trust-domain",
        metavar="DOMAIN",
        help=f"the mesh's trust domain (env {TRUST_DOMAIN_ENV}; default: from the CA certificate)",
    )
    parser.add_argument(
        "--operator-token-file",
        metavar="FILE",
        help=f"the registry's operator.token (or env {OPERATOR_TOKEN_ENV} with the token itself; "
        f"default {DEFAULT_OPERATOR_TOKEN_FILE} when it exists)",
    )
    parser.add_argument(
        "--context",
        metavar="NAME",
        help="take what these flags do not give from this context (env MESHWARDEN_CONTEXT; "
        "default: the current one, see `meshwarden context list`)",
    )


def registry_address(flag: str | None, environ: Mapping[str, str]) -> str:
    """--registry, else $MESHWARDEN_REGISTRY, else the default local registry."""
    return flag or environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY_ADDRESS


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> RegistryAccess:
    """Everything needed to call the registry as an operator. May contact the registry (to
    learn its CA); raises AccessError saying what to fix."""
    from meshwarden.cli.contexts import ContextError, fill
    from meshwarden.registry_client import RegistryTrust

    try:
        args = fill(args, environ)
    except ContextError as exc:
        raise AccessError(str(exc), exit_codes.USAGE) from exc
    address = registry_address(args.registry, environ)
    token = operator_token(args.operator_token_file, environ)
    bundle = trust_bundle(
        address, args.trust_bundle or environ.get(TRUST_BUNDLE_ENV), args.ca_pin or environ.get(CA_PIN_ENV)
    )
    domain = trust_domain(args.trust_domain or environ.get(TRUST_DOMAIN_ENV), bundle)
    return RegistryAccess(address, RegistryTrust(domain, bundle), token)


def operator_token(file_flag: str | None, environ: Mapping[str, str]) -> str:
    if file_flag:
        return _read_token(Path(file_flag))
    if environ.get(OPERATOR_TOKEN_ENV):
        return environ[OPERATOR_TOKEN_ENV].strip()
    if DEFAULT_OPERATOR_TOKEN_FILE.exists():
        return _read_token(DEFAULT_OPERATOR_TOKEN_FILE)
    raise AccessError(
        "this command needs the registry's operator token: give --operator-token-file "
        f"<registry data dir>/operator.token, or set {OPERATOR_TOKEN_ENV}",
        exit_codes.USAGE,
    )


def trust_bundle(address: str, bundle_file: str | None, pin: str | None) -> bytes:
    from cryptography import x509

    from meshwarden.identity.bootstrap import BootstrapError, learn_registry_ca

    if bundle_file and pin:
        raise AccessError("give either --trust-bundle or --ca-pin, not both", exit_codes.USAGE)
    if bundle_file:
        try:
            pem = Path(bundle_file).read_bytes()
            x509.load_pem_x509_certificates(pem)
        except OSError as exc:
            raise AccessError(f"cannot read the trust bundle {bundle_file}: {exc.strerror}", exit_codes.USAGE) from exc
        except ValueError as exc:
            raise AccessError(f"{bundle_file} holds no PEM certificates", exit_codes.USAGE) from exc
        return pem
    try:
        target = parse_host_port(address, what="registry address")
        return learn_registry_ca(target, pin=pin or "").bundle_pem
    except AddressError as exc:
        raise AccessError(str(exc), exit_codes.USAGE) from exc
    except BootstrapError as exc:
        unreachable = isinstance(exc.__cause__, OSError)
        raise AccessError(str(exc), exit_codes.UNREACHABLE if unreachable else exit_codes.USAGE) from exc


def trust_domain(given: str | None, bundle_pem: bytes) -> str:
    from cryptography import x509

    from meshwarden.identity.svid import spiffe_ids_of

    try:
        if given:
            return check_trust_domain(given)
        for ca in x509.load_pem_x509_certificates(bundle_pem):
            for uri in spiffe_ids_of(ca):
                return check_trust_domain(uri.removeprefix("spiffe://").rstrip("/"))
    except IdentityError as exc:
        raise AccessError(str(exc), exit_codes.USAGE) from exc
    return DEFAULT_TRUST_DOMAIN


def report_rpc_error(command: str, err: grpc.aio.AioRpcError, address: str) -> int:
    """Prints what went wrong on stderr; returns the exit code."""
    import grpc

    code = err.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        print(
            f"{command}: cannot reach the registry at {address} ({code.name}: {err.details()}); "
            f"is it running? Point to it with --registry or {REGISTRY_ENV}",
            file=sys.stderr,
        )
        return exit_codes.UNREACHABLE
    print(f"{command}: {code.name}: {err.details()}", file=sys.stderr)
    return exit_codes.USAGE if code is grpc.StatusCode.INVALID_ARGUMENT else exit_codes.FAILED


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise AccessError(f"cannot read the operator token file {path}: {exc.strerror}", exit_codes.USAGE) from exc
    if not token:
        raise AccessError(f"the operator token file {path} is empty", exit_codes.USAGE)
    return token
