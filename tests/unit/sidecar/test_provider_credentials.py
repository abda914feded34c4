"""Provider keys: read from the sidecar's environment or an owner-only file, errors that name
where the key should be but never the key, and redaction of keys a provider echoes."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshwarden.policy_bundle.model_catalog import Credential
from meshwarden.sidecar.provider_credentials import CredentialUnavailable, ProviderCredentials, redact

KEY = "sk-proj-abcdefghijklmnop1234"


async def test_keys_come_from_the_environment_or_an_owner_only_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    credentials = ProviderCredentials({"OPENAI_API_KEY": KEY}, lambda: 0.0)
    assert await credentials.key("openai", Credential(env="OPENAI_API_KEY")) == KEY
    assert await credentials.key("anthropic", Credential(file=str(key_file))) == KEY
    assert credentials.known_keys() == {KEY}


async def test_a_missing_or_shared_key_is_refused_naming_where_it_should_be(tmp_path: Path) -> None:
    credentials = ProviderCredentials({}, lambda: 0.0)
    with pytest.raises(CredentialUnavailable) as missing:
        await credentials.key("openai", Credential(env="OPENAI_API_KEY"))
    assert "OPENAI_API_KEY" in missing.value.message and "openai" in missing.value.message
    shared = tmp_path / "shared"
    shared.write_text(KEY)
    shared.chmod(0o644)
    with pytest.raises(CredentialUnavailable) as refused:
        await credentials.key("anthropic", Credential(file=str(shared)))
    assert "chmod 600" in refused.value.message and KEY not in refused.value.message


def test_redaction_removes_keys_and_their_echoed_prefixes() -> None:
    text = f"Incorrect API key provided: {KEY}. Also sk-proj-abcdefgh***1234."
    cleaned = redact(text, {KEY})
    assert KEY not in cleaned and "sk-proj-a" not in cleaned and cleaned.count("[redacted]") == 2
