"""Building what the stages share (sidecar.runtime.Runtime) from the configuration and the
sidecar's identity, and what is told about it at start-up."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from meshwarden.addresses import UnixSocket
from meshwarden.clock import Clock
from meshwarden.identity.svid import Svid
from meshwarden.sidecar.agent_app import AgentApp
from meshwarden.sidecar.approval_desk import ApprovalDesk
from meshwarden.sidecar.budget_ledger import BudgetLedger
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call_metrics import SidecarMetrics, SidecarState
from meshwarden.sidecar.catalog import Catalog
from meshwarden.sidecar.config import SidecarConfig
from meshwarden.sidecar.controls import Controls
from meshwarden.sidecar.hops.mcp_credentials import CredentialSource
from meshwarden.sidecar.hops.mcp_upstreams import McpUpstreams
from meshwarden.sidecar.hops.upstream import Upstream
from meshwarden.sidecar.latency import LatencyBoard
from meshwarden.sidecar.local_agent import LocalAgent
from meshwarden.sidecar.local_auth import TokenError, read_token
from meshwarden.sidecar.own_health import OwnHealth
from meshwarden.sidecar.peer_channels import PeerChannels
from meshwarden.sidecar.provider_credentials import ProviderCredentials
from meshwarden.sidecar.receipt_spool import ReceiptSpool, SpoolError
from meshwarden.sidecar.runtime import Runtime
from meshwarden.sidecar.schemas import SchemaCache
from meshwarden.sidecar.stages.breaker import BreakerBoard
from meshwarden.sidecar.start_errors import StartError

if TYPE_CHECKING:
    from meshwarden.sidecar.tracing_setup import SidecarTracing

log = logging.getLogger(__name__)


def build_runtime(
    config: SidecarConfig,
    clock: Clock,
    local: LocalAgent,
    current_svid: Callable[[], Svid],
    agent_app: AgentApp,
    spool: ReceiptSpool | None,
    channel_options: list[tuple[str, Any]],
    *,
    approvals: ApprovalDesk | None = None,
    budgets: BudgetLedger | None = None,
) -> Runtime:
    rt = Runtime(
        config=config,
        clock=clock,
        rng=random.Random(),
        catalog=Catalog(),
        schemas=SchemaCache(),
        local=local,
        peer_channels=PeerChannels(channel_options, current_svid),
        agent_app=agent_app,
        policy=PolicyHolder(),
        breakers=BreakerBoard(
            config.breaker_failures,
            config.breaker_reset_s,
            failure_rate=config.breaker_failure_rate,
            window_s=config.breaker_window_s,
            min_calls=config.breaker_min_calls,
            now=clock.monotonic,
        ),
        own_health=OwnHealth(
            local.instance_id, config.breaker_window_s, config.breaker_min_calls, config.breaker_failure_rate
        ),
        latency=LatencyBoard(clock.monotonic),
        receipts=spool,
        tracing=build_tracing(config),
        metrics=SidecarMetrics(),
        controls=Controls(config.data_dir, clock.wall),
        # the model gateway's: provider keys, the client to providers, a breaker per provider endpoint
        credentials=ProviderCredentials(config.provider_env, clock.monotonic),
        upstream=Upstream(config.provider_env),
        provider_breakers=BreakerBoard(config.breaker_failures, config.breaker_reset_s, now=clock.monotonic),
        approvals=approvals,
        mcp_upstreams=McpUpstreams(CredentialSource(config.tool_credentials_dir, config.tool_credentials_env)),
        tool_breakers=BreakerBoard(  # one per MCP server, with the same settings as the instances'
            config.breaker_failures,
            config.breaker_reset_s,
            failure_rate=config.breaker_failure_rate,
            window_s=config.breaker_window_s,
            min_calls=config.breaker_min_calls,
            now=clock.monotonic,
        ),
        budgets=budgets if budgets is not None else BudgetLedger(clock),
    )
    if rt.tracing is not None:
        log.info(
            "tracing: spans to %s over OTLP %s, sampler %s (ratio %g); failed calls are always exported",
            config.tracing.endpoint,
            config.tracing.protocol,
            config.tracing.sampler,
            config.tracing.sampler_ratio,
        )
    rt.metrics.watch(
        SidecarState(
            breaker_states=lambda: _live_breaker_states(rt),
            bundle_revision=lambda: rt.policy.active.revision if rt.policy.active is not None else 0,
            catalog_revision=lambda: rt.catalog.revision,
        )
    )
    # A departed instance's channel is closed (after a grace period), not kept for ever.
    rt.catalog.on_change(lambda: rt.peer_channels.keep_only(rt.catalog.peer_endpoints()))
    return rt


def build_tracing(config: SidecarConfig) -> SidecarTracing | None:
    """The OpenTelemetry SDK (about 1.2 MB of an idle sidecar) is imported here, at start-up,
    only when tracing is on; the tracing stage needs only the API."""
    if not config.tracing.enabled:
        return None
    from meshwarden.sidecar import tracing_setup

    return tracing_setup.build(config.tracing, agent=config.agent, instance_id=config.instance_id)


def open_spool(config: SidecarConfig, spiffe_id: str) -> ReceiptSpool | None:
    if not config.receipts:
        log.warning("--receipts false: calls through this sidecar leave NO receipts (for measuring their cost only)")
        return None
    try:
        return ReceiptSpool.open(
            config.data_dir, instance_id=config.instance_id, spiffe_id=spiffe_id, sync=config.receipt_sync
        )
    except SpoolError as exc:
        raise StartError(str(exc)) from exc


def read_api_token(config: SidecarConfig) -> bytes | None:
    if config.api_token_file is None:
        return None
    try:
        return read_token(config.api_token_file)
    except TokenError as exc:
        raise StartError(str(exc)) from exc


def not_ready_because(rt: Runtime) -> str:
    """Empty when ready: once a policy revision is active (until then every call would be denied)."""
    if rt.policy.active is not None or rt.config.allow_without_policy:
        return ""
    return "no policy bundle is active yet (every call would be denied)"


def _live_breaker_states(rt: Runtime) -> dict[str, str]:
    """Breaker states of the instances in the catalog now: instance ids change at every restart
    (by default), and a departed instance's breaker would otherwise stay a series for ever."""
    live = {instance.instance_id for instance in rt.catalog.instances()}
    return {instance_id: state for instance_id, state in rt.breakers.states().items() if instance_id in live}


def warn_about_policy(config: SidecarConfig, holder: PolicyHolder, keys: Mapping[str, object]) -> None:
    if not keys:
        log.warning("no trusted bundle keys (--bundle-keys): every policy bundle will be refused")
    if config.allow_without_policy:
        log.warning(
            "DEVELOPMENT MODE: --allow-without-policy lets every call through while no policy bundle is "
            "active. Never run this in production."
        )
    elif holder.active is None:
        log.warning("no policy bundle active yet: every call is denied until one arrives (default deny)")


def warn_about_local_api(config: SidecarConfig, listen: str, has_token: bool) -> None:
    if isinstance(config.listen, UnixSocket):
        log.info("local API on %s (mode 0600)%s", listen, " with an API token" if has_token else "")
    elif not config.listen.is_loopback:
        log.warning(
            "local API on %s is reachable beyond loopback: any host that reaches it speaks as %s%s",
            listen,
            config.agent,
            "" if has_token else ", and it has NO API token",
        )
    elif not has_token:
        log.warning(
            "local API on %s is loopback TCP without an API token: any local process can speak as %s. "
            "Fine for development; in production use --listen unix:PATH and --api-token-file",
            listen,
            config.agent,
        )
