# ACL policy for the token of the sidecars of agent "billing" (one policy per agent: a sidecar
# may register only its own agent's service). Create it and a token with:
#   consul acl policy create -name meshwarden-sidecar-billing -rules @sidecar-policy.hcl
#   consul acl token create -policy-name meshwarden-sidecar-billing -description "billing sidecars"

# Register, renew (TTL check) and deregister its own instances.
service "billing" {
  policy = "write"
}

# Discover every meshwarden agent: /v1/catalog/services and /v1/health/service/<name>.
service_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}

# Capability schemas, content-addressed by their sha256 (a reader checks the hash, so a writer
# can at worst make an instance unroutable, never change its contract).
key_prefix "meshwarden/schemas/" {
  policy = "write"
}
