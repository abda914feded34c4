"""Model clients that call through the agent's sidecar: the official `openai` and `anthropic`
clients, pointed at the sidecar's model gateway, carrying the local API token (never a
provider key) and the attribution headers of the call being handled.

`CallContext.openai()` and `.anthropic()` build them; any other client does the same with two
settings, its base URL and its key, plus these headers as default headers. A gateway on a Unix
socket (`unix:PATH`) is reached through an HTTP client bound to the socket. The packages are
imported when first asked for, so the SDK does not require them.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any, Final

from meshwarden import session_labels

DEFAULT_GATEWAY: Final = "http://127.0.0.1:7413"  # the sidecar's --gateway-listen default
SESSION_HEADER: Final = "x-meshwarden-session-id"
WORKFLOW_HEADER: Final = "x-meshwarden-workflow-id"
TASK_HEADER: Final = "x-meshwarden-task-id"
PARENT_CALL_HEADER: Final = "x-meshwarden-parent-call-id"
TASK_TOKEN_HEADER: Final = "x-meshwarden-task-token"
ON_BEHALF_OF_HEADER: Final = "x-meshwarden-on-behalf-of"
UNIX_PREFIX: Final = "unix:"
SOCKET_BASE: Final = "http://sidecar"  # the host a client names when it reaches the gateway's Unix socket


def gateway_url(gateway: str | None) -> str:
    """The gateway's base URL: given, else MESHWARDEN_GATEWAY, else the sidecar's default; a
    Unix socket (`unix:PATH`, the sidecar's `--gateway-listen unix:PATH`) stays as it is."""
    url = gateway or os.environ.get("MESHWARDEN_GATEWAY", "") or DEFAULT_GATEWAY
    if url.startswith(UNIX_PREFIX):
        return url
    return url.rstrip("/") if "://" in url else f"http://{url.rstrip('/')}"


def _over_socket(gateway: str, package: Any, sync: bool, options: dict[str, Any]) -> str:
    """The base URL to give a client; for a Unix socket gateway, also an HTTP client bound to
    it (in `options`, unless the caller brought one). The URL's host is then only a name."""
    if not gateway.startswith(UNIX_PREFIX):
        return gateway
    if "http_client" not in options:
        import httpx2  # the official clients' HTTP library

        path = gateway.removeprefix(UNIX_PREFIX)
        if sync:
            options["http_client"] = package.DefaultHttpxClient(transport=httpx2.HTTPTransport(uds=path))
        else:
            options["http_client"] = package.DefaultAsyncHttpxClient(transport=httpx2.AsyncHTTPTransport(uds=path))
    return SOCKET_BASE


def attribution(
    session_id: str = "",
    workflow_id: str = "",
    task_id: str = "",
    parent_call_id: str = "",
    on_behalf_of: str = "",
    labels: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers that attribute a model call to a session, workflow, task and parent call,
    and (at a session's entry point only) who the session is started for and its free labels
    (meshwarden.session_labels: raises InvalidLabels naming what is wrong)."""
    pairs = (
        (SESSION_HEADER, session_id),
        (WORKFLOW_HEADER, workflow_id),
        (TASK_HEADER, task_id),
        (PARENT_CALL_HEADER, parent_call_id),
        (ON_BEHALF_OF_HEADER, on_behalf_of),
        (session_labels.HEADER, session_labels.to_header(labels or {})),
    )
    return {name: value for name, value in pairs if value}


def openai_client(gateway: str, token: str, headers: dict[str, str], **options: Any) -> Any:
    """An `openai.AsyncOpenAI` (or `openai.OpenAI` with sync=True) through the gateway."""
    try:
        import openai
    except ImportError as exc:
        raise ImportError("ctx.openai() needs the openai package: pip install openai") from exc
    sync = options.pop("sync", False)
    factory = openai.OpenAI if sync else openai.AsyncOpenAI
    extra = {**headers, **options.pop("default_headers", {})}
    base = _over_socket(gateway, openai, sync, options)
    return factory(base_url=f"{base}/v1", api_key=token or "no-token", default_headers=extra, **options)


def anthropic_client(gateway: str, token: str, headers: dict[str, str], **options: Any) -> Any:
    """An `anthropic.AsyncAnthropic` (or `anthropic.Anthropic` with sync=True) through the gateway."""
    try:
        import anthropic
    except ImportError as exc:
        raise ImportError("ctx.anthropic() needs the anthropic package: pip install anthropic") from exc
    sync = options.pop("sync", False)
    factory = anthropic.Anthropic if sync else anthropic.AsyncAnthropic
    extra = {**headers, **options.pop("default_headers", {})}
    base = _over_socket(gateway, anthropic, sync, options)
    return factory(base_url=base, api_key=token or "no-token", default_headers=extra, **options)


def task_token_header(signed_token: bytes) -> str:
    """A task's signed fencing claim as the value of `x-meshwarden-task-token` (base64url)."""
    return base64.urlsafe_b64encode(signed_token).rstrip(b"=").decode()
