#!/bin/sh
# SPIRE registration entries for meshwarden sidecars, made by hand with spire-server (when the
# SPIRE Controller Manager and cluster-spiffe-id.yaml are not used). Run on a SPIRE server.
# For each agent: the SPIFFE ID spiffe://$TRUST_DOMAIN/agent/$AGENT and the DNS SAN
# $AGENT.agent.$TRUST_DOMAIN, which sidecars expect when they dial each other (docs/DESIGN.md).
set -eu

TRUST_DOMAIN=${TRUST_DOMAIN:-meshwarden.local}
CLUSTER=${CLUSTER:-prod}   # the k8s_psat node attestor's cluster name

# Kubernetes: the "sidecar" container of pods running as service account $AGENT in namespace
# meshwarden, on any node attested by k8s_psat in $CLUSTER.
for AGENT in billing support kb; do
    spire-server entry create \
        -parentID "spiffe://$TRUST_DOMAIN/spire/agent/k8s_psat/$CLUSTER" \
        -spiffeID "spiffe://$TRUST_DOMAIN/agent/$AGENT" \
        -dns "$AGENT.agent.$TRUST_DOMAIN" \
        -selector k8s:ns:meshwarden \
        -selector "k8s:sa:$AGENT" \
        -selector k8s:container-name:sidecar \
        -x509SVIDTTL 3600
done

# systemd hosts (deploy/systemd): meshwarden-sidecar@billing.service runs as user billing.
# $NODE_ID is the host's SPIRE agent ID (spire-server agent list).
NODE_ID=${NODE_ID:-spiffe://$TRUST_DOMAIN/spire/agent/join_token/REPLACE-ME}
spire-server entry create \
    -parentID "$NODE_ID" \
    -spiffeID "spiffe://$TRUST_DOMAIN/agent/billing" \
    -dns "billing.agent.$TRUST_DOMAIN" \
    -selector unix:user:billing \
    -x509SVIDTTL 3600
