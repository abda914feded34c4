"""The providers' wire formats, as their public API references describe them: what the model
gateway reads from a client's request, sends upstream, measures in an answer (whole or
streamed) and answers errors with. One module per API style, plus the SSE framing they share.
"""

from meshwarden.sidecar.model_wire.measured import BadModelRequest, Measured, RequestFacts, StreamMeter
from meshwarden.sidecar.model_wire.sse import SseSplitter, event_data

__all__ = ["BadModelRequest", "Measured", "RequestFacts", "SseSplitter", "StreamMeter", "event_data"]
