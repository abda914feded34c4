"""Model calls: which catalog entries to try, in order: the model asked for, then its
fallbacks from models.json, less those an operator's kill switch stops (by model or by
provider). The provider hop tries them in that order.

A client must call a model with the API its provider speaks (an OpenAI-style client for an
OpenAI-style provider): the gateway passes bodies through and does not translate between
APIs, so a mismatch is refused with what to do instead.
"""

from __future__ import annotations

from dataclasses import replace

from meshwarden.errors import KillSwitchEngaged, UnknownModel
from meshwarden.sidecar.bundle_loader import PolicyHolder
from meshwarden.sidecar.call import Call, Handler, Layer, Reply
from meshwarden.sidecar.controls import MODEL, PROVIDER, Controls
from meshwarden.sidecar.model_wire.measured import BadModelRequest


class ModelRouting:
    def __init__(self, next: Handler, holder: PolicyHolder, controls: Controls) -> None:
        self._next, self._holder, self._controls = next, holder, controls

    async def __call__(self, call: Call) -> Reply:
        active = self._holder.active
        request = call.model
        catalog = active.models if active is not None else None
        chain = catalog.chain(call.capability) if catalog is not None else ()
        if request is None or catalog is None or not chain:
            raise UnknownModel(call.capability, list(catalog.models) if catalog is not None else [])
        api = catalog.api_of(chain[0])
        if api != request.api.family:
            raise BadModelRequest(
                f"model {call.capability} is served with the {api} API, and this request came with the "
                f"{request.api.family} API; call it with an {api.capitalize()}-style client "
                f"({'POST /v1/messages' if api == 'anthropic' else 'POST /v1/chat/completions'})",
                "model",
            )
        if not self._controls.empty:
            first = chain[0]
            allowed = tuple(
                e for e in chain if self._controls.matching(((MODEL, e.name), (PROVIDER, e.provider))) is None
            )
            if not allowed:  # the kill switch stage refused the model asked for; this is a fallback's
                switch = self._controls.matching(((MODEL, first.name), (PROVIDER, first.provider)))
                if switch is not None:
                    call.record.kill_switch_id = switch.id
                    raise KillSwitchEngaged(switch.id, switch.scope, switch.reason, call.capability)
            chain = allowed
        return await self._next(replace(call, model=replace(request, chain=chain)))


def layer(holder: PolicyHolder, controls: Controls) -> Layer:
    return lambda next: ModelRouting(next, holder, controls)
