"""The registry's domain errors, typed by what the caller can do about them.

    RegistryError
      InvalidInput       fix the request; names the field (server: INVALID_ARGUMENT)
      UnknownInstance    the lease expired or never existed; register again (server: NOT_FOUND)
      UnknownControl     no such kill switch or isolation is in force (server: NOT_FOUND)
      UnknownBundleRevision  no bundle of that revision was ever pushed (server: NOT_FOUND)
      Unauthenticated    no usable identity: no or a bad SVID, no operator token (server: UNAUTHENTICATED)
      PermissionDenied   the identity is known but may not do this (server: PERMISSION_DENIED)
      StoreError         the data directory or database cannot be used (startup fails)
      CaError            the embedded CA cannot be created or used (startup fails)

registry.server maps them to gRPC status codes, in one place.
"""

from __future__ import annotations


class RegistryError(Exception):
    pass


class InvalidInput(RegistryError):
    """A request field breaks a rule; `field` is its path, e.g. "instance.capabilities[1].name"."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


class UnknownInstance(RegistryError):
    def __init__(self, instance_id: str) -> None:
        super().__init__(f"instance {instance_id!r}: lease expired or unknown; register again")
        self.instance_id = instance_id


class UnknownSession(RegistryError):
    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"session {session_id!r}: the registry holds no receipt and no outcome for it "
            "(receipts arrive in batches a few seconds after the calls; meshwarden sessions list shows the known ones)"
        )


class StoreError(RegistryError):
    """The registry's data directory or database is unusable; says which path and why."""


class Unauthenticated(RegistryError):
    """The caller presented no usable identity; the message says which one the call needs."""


class PermissionDenied(RegistryError):
    """The caller's identity is known but does not allow this call; the message names both sides."""


class CaError(RegistryError):
    """The embedded CA in the data directory cannot be created or used; says which file and what to do."""


class Conflict(RegistryError):
    """The request is well formed but contradicts what the registry holds (FAILED_PRECONDITION)."""


class UnknownControl(RegistryError):
    """No kill switch or isolation by that id or target is in force (server: NOT_FOUND)."""


class UnknownBundleRevision(RegistryError):
    """No bundle of that revision was ever pushed (server: NOT_FOUND)."""

    def __init__(self, revision: int) -> None:
        super().__init__(
            f"no policy bundle revision {revision} was ever pushed; see the stored ones with: meshwarden bundle history"
            if revision
            else "no policy bundle was ever pushed"
        )
        self.revision = revision
