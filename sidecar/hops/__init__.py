"""Where calls leave the sidecar besides a peer sidecar: MCP servers (tool calls)."""

__all__: list[str] = []
