"""Policy bundles: Cedar policies, schema and entities with a manifest, signed with Ed25519.

Shared by the CLI (build, sign, push), the registry (store, distribute) and the sidecar
(verify, activate). The bundle format and its tooling arrive with the policy-bundle issue;
until then sidecars carry no policy stage.
"""

__all__: list[str] = []
