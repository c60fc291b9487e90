"""A loopback TCP proxy a test cuts and restores: a database or broker outage that only the test's own
clients see (the shared PostgreSQL and Kafka keep serving every other test and helper)."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


def via(dsn: str, port: int) -> str:
    """The same database URL through a proxy listening on ``port`` on loopback (user and path kept)."""
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to an upstream address. :meth:`cut` drops every open connection
    and refuses new ones (as a stopped server would); :meth:`blackhole` silences them instead (a
    partition: no byte, no reset, no FIN, and new connections accepted but never answered);
    :meth:`restore` forwards new connections again (black-holed ones stay silent, as in real life)."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self._held: list[asyncio.StreamWriter] = []
        self._silent = False
        self.connections = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def cut(self) -> None:
        self._silent = False
        for writer in self._held:
            writer.transport.abort()
        self._held.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._clients.clear()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def blackhole(self) -> None:
        self._silent = True
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for writer in list(self._writers):
            if writer in self._clients:
                self._held.append(writer)  # never written to, never closed
            else:
                writer.transport.abort()
        self._writers.clear()
        self._clients.clear()

    async def restore(self) -> None:
        self._silent = False
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._silent:
            self._held.append(client_writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self.connections += 1
        self._writers |= {client_writer, upstream_writer}
        self._clients.add(client_writer)
        for reader, writer in ((client_reader, upstream_writer), (upstream_reader, client_writer)):
            pipe = asyncio.create_task(self._pipe(reader, writer))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not self._silent:
                with contextlib.suppress(Exception):
                    writer.close()
                self._writers.discard(writer)
