"""A TCP proxy between the workers and Kafka that can slow every byte down or stop them all.

The broker advertises the proxy's port, so every client connection (metadata, produce, fetch,
group coordination) goes through it. Each chunk read is delivered ``delay`` seconds after it
arrived, in order; while stalled, nothing is delivered in either direction.
"""

from __future__ import annotations

import asyncio
import threading
import time

from app.brokers.process import free_port

HOST = "127.0.0.1"


class SlowProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port(HOST)
        self.delay = 0.0
        self.stalled_until = 0.0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="slow-proxy", daemon=True)

    def start(self) -> SlowProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stall(self, seconds: float) -> None:
        self.stalled_until = time.monotonic() + seconds

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connect, HOST, self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _connect(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pump(client_reader, broker_writer), self._pump(broker_reader, client_writer),
                             return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await chunks.get()
                while (wait := max(due, self.stalled_until) - time.monotonic()) > 0:
                    await asyncio.sleep(min(wait, 0.05))
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
            writer.close()

        delivering = asyncio.create_task(deliver())
        try:
            while chunk := await reader.read(65536):
                chunks.put_nowait((time.monotonic() + self.delay, chunk))
        finally:
            chunks.put_nowait((time.monotonic() + self.delay, b""))
            await delivering
