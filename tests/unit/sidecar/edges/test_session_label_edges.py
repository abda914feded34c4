"""Session labels refused at each sidecar edge in that edge's own shape: the local API's
INVALID_ARGUMENT (BadPayload), the model gateway's provider-shaped 400 (BadModelRequest), the
MCP gateway's JSON-RPC invalid-params error; each message names the label."""

from __future__ import annotations

import grpc
import pytest
from multidict import CIMultiDict

from meshwarden.errors import BadPayload
from meshwarden.session_labels import HEADER
from meshwarden.sidecar.call import Caller
from meshwarden.sidecar.edges import mcp_http, model_http
from meshwarden.sidecar.edges.mcp_protocol import INVALID_PARAMS, RpcError
from meshwarden.sidecar.model_wire.measured import BadModelRequest
from meshwarden.sidecar.wire import invoke
from meshwarden.v1 import sidecar_pb2


def _invoke(labels: dict[str, str]) -> sidecar_pb2.InvokeRequest:
    return sidecar_pb2.InvokeRequest(capability="plan.work", payload_json=b"{}", session_labels=labels)


def test_the_local_api_takes_good_labels_and_refuses_bad_ones_as_invalid_argument() -> None:
    caller = Caller("frontdesk", "i-1", "spiffe://mesh/agent/frontdesk")
    made = invoke.to_call(
        _invoke({"resource": "db-prod", "repository": "acme/api"}),
        call_id="c-1",
        caller=caller,
        deadline=1.0,
        traceparent="",
        tracestate="",
    )
    assert made.session_labels == (("repository", "acme/api"), ("resource", "db-prod"))
    with pytest.raises(BadPayload) as info:
        invoke.to_call(
            _invoke({"Repo": "x"}), call_id="c-2", caller=caller, deadline=1.0, traceparent="", tracestate=""
        )
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "'Repo' is not a label key" in info.value.message


def test_the_model_gateway_answers_a_bad_header_with_its_400() -> None:
    good = model_http._session_labels(CIMultiDict({HEADER: "repository=acme/api"}))
    assert good == (("repository", "acme/api"),)
    with pytest.raises(BadModelRequest, match="label 'repo' has a value of 129 characters"):
        model_http._session_labels(CIMultiDict({HEADER: "repo=" + "x" * 129}))


def test_the_mcp_gateway_answers_a_bad_header_with_invalid_params() -> None:
    assert mcp_http._session_labels(CIMultiDict()) == ()
    with pytest.raises(RpcError) as info:
        mcp_http._session_labels(CIMultiDict({HEADER: ",".join(f"k{n}=v" for n in range(9))}))
    assert info.value.code == INVALID_PARAMS and "9 labels; at most 8" in info.value.message
    assert info.value.data["kind"] == "bad_session_labels"
