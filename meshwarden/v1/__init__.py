"""Generated protobuf and gRPC stubs (python proto/generate.py)."""
