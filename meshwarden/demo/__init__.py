"""`meshwarden demo`: a support desk of agents on a local mesh, each agent a real process
with its own sidecar, run by meshwarden.demo.scenario."""
