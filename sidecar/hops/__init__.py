"""Where calls leave the sidecar: one module per kind of destination (model providers, MCP servers)."""

__all__: list[str] = []
