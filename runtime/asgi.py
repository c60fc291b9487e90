"""What the plain ASGI middlewares of :mod:`runtime.service` and :mod:`runtime.tracing` share."""

from __future__ import annotations

from starlette.types import Message, Send


class StatusOf:
    """An ASGI ``send`` that remembers the status its response started with (``None`` until then), for a
    middleware that counts or traces the request once the app has answered."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)
