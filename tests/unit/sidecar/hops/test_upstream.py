"""The provider client's proxy choice: the standard variables, NO_PROXY honoured."""

from __future__ import annotations

from meshwarden.sidecar.hops.upstream import Upstream


def test_proxies_follow_the_standard_variables() -> None:
    upstream = Upstream({"HTTPS_PROXY": "http://proxy.corp:3128", "no_proxy": "internal.corp,.local"})
    assert upstream.proxy_for("https://api.openai.com/v1/chat/completions") == "http://proxy.corp:3128"
    assert upstream.proxy_for("https://llm.internal.corp/v1/chat/completions") is None
    assert upstream.proxy_for("https://gpu.lab.local/v1") is None
    assert upstream.proxy_for("http://127.0.0.1:8080/v1") is None  # no HTTP_PROXY set
    assert Upstream({"https_proxy": "http://p:1", "NO_PROXY": "*"}).proxy_for("https://x.ai/v1") is None
