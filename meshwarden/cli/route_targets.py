"""Before `meshwarden route set` sends weights: does the registry's catalog know the capability
and every version named? A typo in either would otherwise be stored and pushed to every sidecar,
where it silently weights nothing (routing falls back to all versions). `--force` skips this, for
routes staged before their versions are deployed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from meshwarden.v1 import catalog_pb2


class UnknownRouteTarget(ValueError):
    """The capability or a version is not in the catalog; the message says what is served."""


def check(capability: str, weights: Mapping[str, int], instances: Iterable[catalog_pb2.Instance]) -> None:
    """Raises UnknownRouteTarget when no live instance serves `capability`, or a weighted
    version has none."""
    served: dict[str, set[str]] = {}
    for instance in instances:
        for cap in instance.capabilities:
            served.setdefault(cap.name, set()).add(instance.version)
    if capability not in served:
        near = difflib.get_close_matches(capability, sorted(served), n=3)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        raise UnknownRouteTarget(
            f"no instance in the registry's catalog serves capability {capability!r}{hint} "
            "(meshwarden agents list; --force sets the route anyway)"
        )
    missing = sorted(set(weights) - served[capability])
    if missing:
        raise UnknownRouteTarget(
            f"no instance of {capability} runs version {', '.join(missing)}; live versions: "
            f"{', '.join(sorted(served[capability]))} (--force sets the route anyway, e.g. before a deploy)"
        )
