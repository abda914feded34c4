# Fragment of a Consul client agent's configuration on a host (or node) running sidecars.
# Sidecars register with the local agent (/v1/agent/service/register), so each host needs
# one; on Kubernetes that is a client agent per node reachable at the node's IP (the
# Deployment sets CONSUL_HTTP_ADDR=$(HOST_IP):8500). Agentless Consul dataplanes offer no agent
# API and are not supported.
addresses {
  http = "0.0.0.0"
}
ports {
  http = 8500
}
acl {
  enabled        = true
  default_policy = "deny"
  tokens {
    # the agent's own token; sidecars bring theirs (sidecar-policy.hcl)
    agent = "REPLACE-WITH-THE-AGENT-TOKEN"
  }
}
