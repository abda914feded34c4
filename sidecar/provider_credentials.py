"""The model providers' keys, which the sidecar holds so its agent never does.

The bundle's models.json names where each provider's key is (an environment variable of the
sidecar's process, or a file on its host); this module reads it. A file must be readable by
its owner only (0600 or stricter), as a private key is: a key file others can read is refused
rather than used. Files are read in a worker thread (never on the event loop) and kept for a
minute, so a rotated key is picked up without a restart.

A key never leaves this module except into the Authorization or x-api-key header of the
provider request: errors name the variable or the file, never the value. `redact` scrubs
keys out of what a provider answers (some providers echo part of a wrong key).
"""

from __future__ import annotations

import asyncio
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final

from meshwarden.errors import Unreachable
from meshwarden.policy_bundle.model_catalog import Credential

FILE_TTL_S: Final = 60.0
MAX_KEY_BYTES: Final = 16 * 1024
_REDACTED: Final = "[redacted]"


class CredentialUnavailable(Unreachable):
    """The sidecar has no usable key for a provider. Transient from the caller's side (an
    operator can fix it without a new bundle), and a fallback provider may still answer."""

    kind = "credential_unavailable"

    def __init__(self, provider: str, credential: Credential, problem: str) -> None:
        super().__init__(
            f"the sidecar has no key for provider {provider}: {credential} {problem}; the sidecar's operator "
            "provides it (the agent never holds provider keys)"
        )


class ProviderCredentials:
    def __init__(self, environ: Mapping[str, str], now: Callable[[], float]) -> None:
        self._environ = dict(environ)  # a snapshot taken at start-up, like every other setting
        self._now = now
        self._files: dict[str, tuple[float, str]] = {}  # path -> (read at, key)
        self._seen: set[str] = set()  # every key handed out: what `redact` removes

    async def key(self, provider: str, credential: Credential) -> str:
        if credential.env:
            value = self._environ.get(credential.env, "").strip()
            if not value:
                raise CredentialUnavailable(provider, credential, "is not set in the sidecar's environment")
            self._seen.add(value)
            return value
        cached = self._files.get(credential.file)
        if cached is not None and self._now() - cached[0] < FILE_TTL_S:
            return cached[1]
        value = await asyncio.to_thread(_read_key_file, Path(credential.file), provider, credential)
        self._files[credential.file] = (self._now(), value)
        self._seen.add(value)
        return value

    def known_keys(self) -> frozenset[str]:
        """Every key read so far: what `redact` removes."""
        return frozenset(self._seen)


def _read_key_file(path: Path, provider: str, credential: Credential) -> str:
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialUnavailable(
                provider,
                credential,
                f"is readable by others (mode {stat.S_IMODE(info.st_mode):04o}); make it 0600 (chmod 600 {path})",
            )
        if info.st_size > MAX_KEY_BYTES:
            raise CredentialUnavailable(provider, credential, f"is over {MAX_KEY_BYTES} bytes: not a key file")
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CredentialUnavailable(provider, credential, f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise CredentialUnavailable(provider, credential, "is not UTF-8 text") from None
    if not value:
        raise CredentialUnavailable(provider, credential, "is empty")
    return value


def redact(text: str, keys: Iterable[str]) -> str:
    """`text` with every key, and any run of 8 or more of a key's leading characters followed
    by more key-like characters, replaced."""
    for key in keys:
        if len(key) < 8:
            continue
        text = text.replace(key, _REDACTED)
        text = re.sub(re.escape(key[:8]) + r"[A-Za-z0-9_\-*.]*", _REDACTED, text)
    return text
