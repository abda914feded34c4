"""Signed policy bundles for the integration tests, made the way a platform team makes them:
`bundle init`'s starting bundle, with the policies (and revision) the test wants, built and
signed with a test key. Sidecars trust the public half only (--bundle-keys)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from meshwarden.policy_bundle.artifact import encode
from meshwarden.policy_bundle.build import build
from meshwarden.policy_bundle.init import init as write_starting_bundle
from meshwarden.policy_bundle.keys import keygen, load_private_key
from meshwarden.policy_bundle.sign import sign

ALLOW_ALL = '@id("allow-all")\n@reason("the test mesh allows every call")\npermit (principal, action, resource);\n'
KEY_ID = "test-platform"
TOOL_SCHEMA = """
entity Tool { server: String, name: String, risk: String };
action "CallTool" appliesTo {
  principal: [Agent],
  resource: [Tool],
  context: { args: { ticket_id?: Long, reason?: String }, session_id: String, workflow_id: String, team: String },
};
"""


class BundleMaker:
    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        keys = keygen(workdir / "bundle-signing", KEY_ID)
        self._key = load_private_key(keys.private_key)
        self.trusted_keys_dir = workdir / "trusted-bundle-keys"
        self.trusted_keys_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(keys.public_key, self.trusted_keys_dir / keys.public_key.name)
        self._made = 0

    def make(
        self,
        revision: int,
        policies: dict[str, str] | None = None,
        *,
        entities: str | None = None,
        store_raw_arguments: bool = False,
        models: str | None = None,
        mcp_servers: str | None = None,
    ) -> bytes:
        """A signed artifact: the starting bundle with `policies` (file name -> Cedar text)
        instead of its own when given, at `revision`, keeping raw arguments in receipts when
        `store_raw_arguments`, with `models` as its models.json (the model gateway's catalog);
        with `mcp_servers` (mcp_servers.toml text), the schema also declares the Tool entity
        and the CallTool action."""
        self._made += 1
        directory = self._workdir / "bundles" / f"{self._made:02d}"
        write_starting_bundle(directory)
        if policies is not None:
            for old in (directory / "policies").glob("*.cedar"):
                old.unlink()
            for name, text in policies.items():
                (directory / "policies" / name).write_text(text)
        if entities is not None:
            (directory / "entities.json").write_text(entities)
        if models is not None:
            (directory / "models.json").write_text(models)
        if mcp_servers is not None:
            (directory / "mcp_servers.toml").write_text(mcp_servers)
            schema = directory / "schema.cedarschema"
            schema.write_text(schema.read_text() + TOOL_SCHEMA)
        manifest = directory / "manifest.toml"
        text = re.sub(r"(?m)^revision = \d+$", f"revision = {revision}", manifest.read_text())
        if store_raw_arguments:
            text = text.replace("store_raw_arguments = false", "store_raw_arguments = true")
        manifest.write_text(text)
        return sign(encode(build(directory).artifact), self._key, KEY_ID)
