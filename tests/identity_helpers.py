"""What tests need to act as a sidecar towards the registry: enrol for an SVID, call over mTLS.

Shared by the in-process registry tests (tests/unit/registry) and the real-process ones
(tests/integration), so both exercise exactly the calls a sidecar makes.
"""

from __future__ import annotations

from meshwarden.identity.csr import new_key_and_csr
from meshwarden.identity.svid import Svid, svid_from_pem
from meshwarden.registry_client import RegistryTrust, registry_channel
from meshwarden.v1 import identity_pb2, identity_pb2_grpc


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now


async def enrol(address: str, trust: RegistryTrust, agent: str, token: str = "") -> Svid:
    """Enrolls as `agent` on the registry's TLS port (with a join token, or open enrolment)."""
    key_and_csr = new_key_and_csr()
    async with registry_channel(address, trust) as channel:
        reply: identity_pb2.SvidResponse = await identity_pb2_grpc.IdentityStub(channel).Enroll(
            identity_pb2.EnrollRequest(agent=agent, csr_pem=key_and_csr.csr_pem.decode(), join_token=token), timeout=5
        )
    return svid_from_pem(reply.cert_chain_pem.encode(), key_and_csr.private_key_pem, reply.trust_bundle_pem.encode())
