"""The registry's domain errors, typed by what the caller can do about them.

    RegistryError
      InvalidInput       fix the request; names the field (server: INVALID_ARGUMENT)
      UnknownInstance    the lease expired or never existed; register again (server: NOT_FOUND)
      StoreError         the data directory or database cannot be used (startup fails)

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


class StoreError(RegistryError):
    """The registry's data directory or database is unusable; says which path and why."""
