"""SPIFFE identity shared by the registry, the sidecars and the CLI: SPIFFE IDs and the DNS
names derived from them, SVIDs, gRPC TLS credentials, and reading the peer's identity."""
