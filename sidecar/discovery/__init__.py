"""Where routing's catalog comes from: the registry's watch stream (the default) or Consul.

Routing and the rest of the pipeline read only `Runtime.catalog`; a `Discovery` keeps it
current and puts this sidecar's own instance where the others look. Policy bundles, routes,
identity and the operator view go through the registry whichever discovery runs (see
sidecar/app.py), so the registry link stays up in both modes.
"""
