"""This sidecar's connection to the registry: mTLS with its current SVID, checking that the
server holds the registry's SPIFFE ID. After an SVID rotation the next caller gets a channel
with the new SVID; streams on the old one run on until they end.

With several replicas' addresses (`--registry-mtls a:7401,b:7401`), the link dials the first;
when its channel has failed to connect (TRANSIENT_FAILURE), the next caller gets a channel to
the next address, and the move is logged. Callers retry as before (watch, lease, shipping)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import grpc

from meshwarden.identity.svid import Svid
from meshwarden.registry_client import RegistryTrust, registry_channel
from meshwarden.sidecar.channel_retirement import ChannelRetirement
from meshwarden.v1 import (
    approvals_pb2_grpc,
    budgets_pb2_grpc,
    controls_pb2_grpc,
    receipts_pb2_grpc,
    registry_pb2_grpc,
    tasks_pb2_grpc,
)

log = logging.getLogger(__name__)

_OLD_CHANNEL_GRACE_S = 10.0


def _failing(channel: grpc.aio.Channel) -> bool:
    return channel.get_state(try_to_connect=False) is grpc.ChannelConnectivity.TRANSIENT_FAILURE


class RegistryLink:
    def __init__(
        self,
        address: str,
        trust_domain: str,
        current_svid: Callable[[], Svid],
        options: Sequence[tuple[str, int]] = (),
    ) -> None:
        self._addresses = [a.strip() for a in address.split(",") if a.strip()] or [address]
        self._at = 0
        self._trust_domain, self._current_svid = trust_domain, current_svid
        self._options = options
        self._svid: Svid | None = None
        self._stub: registry_pb2_grpc.RegistryStub | None = None
        self._controls: controls_pb2_grpc.ControlsStub | None = None
        self._channel: grpc.aio.Channel | None = None
        self._receipts: tuple[grpc.aio.Channel, receipts_pb2_grpc.ReceiptsStub] | None = None
        self._tasks: tuple[grpc.aio.Channel, tasks_pb2_grpc.TasksStub] | None = None
        self._approvals: tuple[grpc.aio.Channel, approvals_pb2_grpc.ApprovalsStub] | None = None
        self._budgets: tuple[grpc.aio.Channel, budgets_pb2_grpc.BudgetsStub] | None = None
        self._retirement = ChannelRetirement(_OLD_CHANNEL_GRACE_S)

    def connected(self) -> bool:
        """True while the channel to the registry is up (the watch stream keeps it so)."""
        if self._channel is None:
            return False
        return self._channel.get_state(try_to_connect=False) is grpc.ChannelConnectivity.READY

    @property
    def address(self) -> str:
        """The replica's mTLS address in use."""
        return self._addresses[self._at]

    def stub(self) -> registry_pb2_grpc.RegistryStub:
        svid = self._current_svid()
        failed = self._channel is not None and len(self._addresses) > 1 and _failing(self._channel)
        if failed:
            previous, self._at = self.address, (self._at + 1) % len(self._addresses)
            log.warning("registry replica %s is unreachable; moving to %s", previous, self.address)
        if self._stub is None or svid is not self._svid or failed:
            if self._channel is not None:  # a watch stream on it reconnects and resumes by revision
                self._retirement.retire(self._channel)
            self._channel = registry_channel(
                self.address, RegistryTrust(self._trust_domain, svid.trust_bundle_pem, svid), self._options
            )
            self._stub, self._svid = registry_pb2_grpc.RegistryStub(self._channel), svid
            self._controls = controls_pb2_grpc.ControlsStub(self._channel)
        return self._stub

    def receipts_stub(self) -> receipts_pb2_grpc.ReceiptsStub:
        """meshwarden.v1.Receipts on the same channel (so with the same, current SVID)."""
        self.stub()
        if self._channel is None:
            raise RuntimeError("stub() always makes a channel")
        if self._receipts is None or self._receipts[0] is not self._channel:
            self._receipts = (self._channel, receipts_pb2_grpc.ReceiptsStub(self._channel))
        return self._receipts[1]

    def approvals_stub(self) -> approvals_pb2_grpc.ApprovalsStub:
        """meshwarden.v1.Approvals on the same channel (asking for and awaiting approvals)."""
        self.stub()
        if self._channel is None:
            raise RuntimeError("stub() always makes a channel")
        if self._approvals is None or self._approvals[0] is not self._channel:
            self._approvals = (self._channel, approvals_pb2_grpc.ApprovalsStub(self._channel))
        return self._approvals[1]

    def controls(self) -> controls_pb2_grpc.ControlsStub:
        """The Controls service on the same channel (acknowledging the controls enforced)."""
        self.stub()
        if self._controls is None:
            raise RuntimeError("no registry channel")  # stub() always makes one
        return self._controls

    def tasks(self) -> tasks_pb2_grpc.TasksStub:
        """The Tasks service on the same channel (so with the same, current SVID)."""
        self.stub()
        if self._channel is None:
            raise RuntimeError("stub() always makes a channel")
        if self._tasks is None or self._tasks[0] is not self._channel:
            self._tasks = (self._channel, tasks_pb2_grpc.TasksStub(self._channel))
        return self._tasks[1]

    def budgets(self) -> budgets_pb2_grpc.BudgetsStub:
        """meshwarden.v1.Budgets on the same channel (following budgets, leasing slices)."""
        self.stub()
        if self._channel is None:
            raise RuntimeError("stub() always makes a channel")
        if self._budgets is None or self._budgets[0] is not self._channel:
            self._budgets = (self._channel, budgets_pb2_grpc.BudgetsStub(self._channel))
        return self._budgets[1]

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._retirement.cancel()
