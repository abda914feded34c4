"""Where calls enter the sidecar besides its gRPC ports: the agent's HTTP gateway, which model
clients (OpenAI, Anthropic) and MCP clients reach with the local API token."""

__all__: list[str] = []
