"""Process-wide logging set-up: human lines by default, one JSON object per line on request.

Logs go to stderr; stdout is reserved for results (CLI) and the ready line (servers).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Literal

LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else was passed with `extra=` and is structured data.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with `extra=` fields as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Human lines, one per record: control characters in a message (a newline in a session
    id someone sent, an escape sequence) are written escaped, so nothing from outside can
    start a forged log line or repaint a terminal. Tracebacks keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        return line if line.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)


def configure(level: str = "info", fmt: LogFormat = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
        import time

        JsonFormatter.converter = time.gmtime
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc's own logger is chatty at INFO about things we report ourselves.
    logging.getLogger("grpc").setLevel(max(root.level, logging.WARNING))
    # The `mcp` client logs every failed OAuth flow (a refused client secret) with a traceback at
    # ERROR; the sidecar reports that failure itself, once, saying what to check
    # (sidecar/hops/mcp_upstreams.py).
    logging.getLogger("mcp.client.auth.oauth2").setLevel(logging.CRITICAL)
