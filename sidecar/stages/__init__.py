"""One module per concern on the call path; sidecar/pipeline.py sets their order."""
