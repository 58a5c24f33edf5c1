"""channels' consumer loop, copied where its hooks cannot say what Switchboard needs.

Checked against channels 4.3 (`channels.consumer.AsyncConsumer.__call__` and `dispatch` of
4.3.2); `versions_uncovered()` names an installed channels this copy was not checked
against, and a unit test fails on it, so an upgrade is read before it ships. Three changes:

- `dispatch` does not run `close_old_connections` on Django's one sync thread before every
  event: these consumers reach the database only through `database_sync_to_async` (which
  does that itself), and while that thread is busy (a locked database, a login hashing a
  password) the hop would stall every socket of the worker;
- `__call__` receives channel-layer events through `layer_receive()`, a hook a consumer
  overrides; a consumer without a layer channel (`uses_channel_layer = False`: every
  Switchboard consumer, whose events come through the worker channel) awaits its one
  source directly, instead of channels' `await_many_dispatch`, which makes a task and a
  wait set per event;
- `websocket_disconnect` (channels' own, `channels.generic.websocket`) leaves out its
  `aclose_old_connections()`, the same hop to the sync thread on every close, for the same
  reason: an echo socket, which never touches the database, paid for it on each close.
"""

from importlib.metadata import version
from typing import Any

from asgiref.typing import WebSocketDisconnectEvent
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch

COVERED_VERSIONS = ("4.3.",)


def versions_uncovered() -> list[str]:
    """The installed channels, when this module was not checked against it."""
    installed = version("channels")
    return [] if installed.startswith(COVERED_VERSIONS) else [f"channels {installed}"]


class EventLoopConsumer(AsyncWebsocketConsumer):
    """An async WebSocket consumer whose events never wait for Django's sync thread."""

    uses_channel_layer = True  # False: no layer, no channel, no Redis connection

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        self.base_send = send
        sources = [receive]
        layer = get_channel_layer(self.channel_layer_alias) if self.uses_channel_layer else None
        self.channel_layer = layer  # type: ignore[assignment]  # None, as channels sets it
        if layer is not None:
            self.channel_name = await layer.new_channel()
            sources.append(self.layer_receive)
        try:
            if len(sources) == 1:
                while True:  # one source: no task and no wait set per event
                    await self.dispatch(await receive())
            await await_many_dispatch(sources, self.dispatch)
        except StopConsumer:
            pass

    async def layer_receive(self) -> dict[str, Any]:
        """The next channel-layer event for this consumer."""
        event: dict[str, Any] = await self.channel_layer.receive(self.channel_name)
        return event

    async def websocket_disconnect(self, message: WebSocketDisconnectEvent) -> None:
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
