"""The sidecar's codecs between its wire messages and the Call/Reply model, one module per
message (InvokeRequest/InvokeResponse, PeerCall/PeerReply, Delivery/Outcome), plus the one rule
for deadlines across hops: adding a field to a call touches one place per message. The SDK
has its own codecs for the messages it speaks (meshwarden/client.py, meshwarden/agent.py)."""

__all__: list[str] = []
