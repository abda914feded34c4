"""One long-lived mTLS channel per peer sidecar, reused by every call to it.

Each channel presents this sidecar's SVID and checks that the server holds the SPIFFE ID
the catalog lists for that instance. When the SVID rotates, later calls get new channels;
the old ones are closed after a grace period, so calls already on them finish. A channel to
an instance that left the catalog is closed the same way (`keep_only`), so a sidecar in a
mesh whose instances come and go holds channels only to those that are there.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from meshwarden.identity.credentials import channel_credentials, expect_peer
from meshwarden.identity.svid import Svid
from meshwarden.sidecar.channel_retirement import ChannelRetirement
from meshwarden.v1 import peer_pb2_grpc

_OLD_CHANNEL_GRACE_S = 30.0


class PeerChannels:
    def __init__(self, options: list[tuple[str, int]], current_svid: Callable[[], Svid]) -> None:
        self._options, self._current_svid = options, current_svid
        self._svid: Svid | None = None
        self._stubs: dict[tuple[str, str], peer_pb2_grpc.PeerStub] = {}
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}
        self._retirement = ChannelRetirement(_OLD_CHANNEL_GRACE_S)

    def stub(self, address: str, spiffe_id: str) -> peer_pb2_grpc.PeerStub:
        svid = self._current_svid()
        if svid is not self._svid:
            self._retire_all()
            self._svid = svid
        key = (address, spiffe_id)
        stub = self._stubs.get(key)
        if stub is None:
            channel = grpc.aio.secure_channel(
                address,
                channel_credentials(svid, svid.trust_bundle_pem),
                options=[*self._options, *expect_peer(spiffe_id)],
            )
            self._channels[key] = channel
            stub = self._stubs[key] = peer_pb2_grpc.PeerStub(channel)
        return stub

    @property
    def open(self) -> frozenset[tuple[str, str]]:
        """(address, SPIFFE ID) of the channels in use."""
        return frozenset(self._channels)

    def keep_only(self, live: frozenset[tuple[str, str]]) -> None:
        """Retires the channels to (address, SPIFFE ID) pairs not in `live` (the catalog's)."""
        for key in [key for key in self._channels if key not in live]:
            self._stubs.pop(key, None)
            self._retirement.retire(self._channels.pop(key))

    def trust_bundle_pem(self) -> bytes:
        """The trust bundle the channels check peers against."""
        return self._current_svid().trust_bundle_pem

    def connection_state(self, address: str, spiffe_id: str) -> grpc.ChannelConnectivity:
        """The state of the channel to that peer (SHUTDOWN when there is none): a call that
        fails while its channel never held a connection certainly never left (peer.Send)."""
        channel = self._channels.get((address, spiffe_id))
        return channel.get_state() if channel is not None else grpc.ChannelConnectivity.SHUTDOWN

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()
        self._retirement.cancel()

    def _retire_all(self) -> None:
        old, self._channels, self._stubs = self._channels, {}, {}
        for channel in old.values():
            self._retirement.retire(channel)
