"""Where calls leave the sidecar: one module per kind of destination (model providers, ...)."""

__all__: list[str] = []
