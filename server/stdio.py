"""The stdio transport without worker threads.

The SDK's ``stdio_server()`` wraps stdin and stdout in ``anyio.wrap_file``: every line read,
every write and every flush is a round trip to a worker thread. On a 2-core machine those
hand-offs are most of what a stdio session adds to a tool call (docs/performance.md). Here
the same ``stdio_server()`` is given stream objects backed by asyncio's non-blocking pipe
transports instead: reading a line and writing a reply happen on the event loop, with no
thread hop. Framing, parsing and error handling stay the SDK's.

Like the SDK, the real stdin/stdout are claimed for the session: fd 0 is pointed at the null
device and fd 1 at stderr, so a stray ``print`` (ours or a library's) or a child process
cannot corrupt the JSON-RPC stream; both are restored on exit.

Where asyncio cannot watch the descriptors (stdin redirected from a regular file, Windows),
:func:`stdio_streams` yields ``None`` and the caller uses the SDK's threaded transport.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import stat
import sys
from contextlib import asynccontextmanager
from typing import AsyncIterator

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


class PipeLines:
    """Async iterator of decoded lines from a non-blocking pipe (what ``stdio_server`` reads).

    Lines keep their newline, as a text file's do; bytes that are not UTF-8 are replaced, as
    the SDK's reader does. No limit on line length (the SDK has none); the tools bound what a
    request may carry."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buf = bytearray()
        self._eof = False

    def __aiter__(self) -> "PipeLines":
        return self

    async def __anext__(self) -> str:
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[: nl + 1])
                del self._buf[: nl + 1]
                return line.decode("utf-8", errors="replace")
            if self._eof:
                if self._buf:
                    line = bytes(self._buf)
                    self._buf.clear()
                    return line.decode("utf-8", errors="replace")
                raise StopAsyncIteration
            data = await self._reader.read(_CHUNK)
            if not data:
                self._eof = True
            else:
                self._buf += data


class PipeWriter:
    """``write`` / ``flush`` over asyncio's write-pipe transport (what ``stdio_server`` writes).

    ``write`` hands the bytes to the transport (which sends what the pipe takes at once and
    buffers the rest); ``flush`` waits for the buffer to drain below the high-water mark, so a
    client that stops reading slows the server down instead of growing its memory."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()


def _watchable(fd: int, events: int) -> bool:
    """A pipe, socket or terminal that the event loop's selector accepts (epoll refuses
    ``/dev/null`` and regular files)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        return False
    sel = selectors.DefaultSelector()
    try:
        sel.register(fd, events)
        return True
    except (OSError, ValueError):
        return False
    finally:
        sel.close()


@asynccontextmanager
async def stdio_streams() -> AsyncIterator[tuple[PipeLines, PipeWriter] | None]:
    """Claim fds 0 and 1 and serve them through asyncio pipe transports.

    Yields ``(lines, writer)`` for ``mcp.server.stdio.stdio_server(stdin=..., stdout=...)``,
    or ``None`` when asyncio cannot watch the descriptors (regular files, ``/dev/null``,
    Windows); then nothing was claimed and the caller falls back to the SDK's transport."""
    if sys.platform == "win32" or not (_watchable(0, selectors.EVENT_READ) and _watchable(1, selectors.EVENT_WRITE)):
        yield None
        return
    import fcntl

    loop = asyncio.get_running_loop()
    # asyncio makes the pipes non-blocking; that flag lives on the open file, which a terminal
    # shares with the shell, so it is put back on exit.
    flags = {fd: fcntl.fcntl(fd, fcntl.F_GETFL) for fd in (0, 1)}

    def restore_flags() -> None:
        for fd, fl in flags.items():
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, fl)
            except OSError:
                pass

    in_file = os.fdopen(os.dup(0), "rb", buffering=0)
    out_file = os.fdopen(os.dup(1), "wb", buffering=0)
    reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
    r_transport = w_transport = None
    try:
        r_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), in_file)
        w_transport, w_protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out_file)
    except (OSError, ValueError) as exc:  # e.g. epoll refuses /dev/null
        log.debug("asyncio cannot watch stdin/stdout (%s)", exc)
        for transport, file in ((r_transport, in_file), (w_transport, out_file)):
            if transport is not None:
                transport.close()
            else:
                file.close()
        await asyncio.sleep(0)  # let the transports' close callbacks run
        restore_flags()
        yield None
        return
    writer = asyncio.StreamWriter(w_transport, w_protocol, None, loop)
    saved_in, saved_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        # Divert the standard descriptors: stray output goes to stderr, stray reads get EOF.
        os.dup2(null, 0)
        os.dup2(2, 1)
        sys.stdout.flush()
        try:
            yield PipeLines(reader), PipeWriter(writer)
        finally:
            r_transport.close()
            try:
                await asyncio.wait_for(writer.drain(), timeout=5)
            except Exception:  # the client is gone: nothing left to deliver to
                pass
            w_transport.close()
    finally:
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        restore_flags()
        for fd in (saved_in, saved_out, null):
            os.close(fd)


async def run_stdio(server, transport: str = "asyncio") -> None:
    """Run an ``MCPServer`` over stdio: through :func:`stdio_streams` with ``transport="asyncio"``
    (the SDK's threaded transport where the descriptors are not pipes), or the SDK's own
    transport with ``transport="sdk"``."""
    from mcp.server.stdio import stdio_server

    lowlevel = getattr(server, "_lowlevel_server", None)  # MCPServer keeps its protocol server here
    if transport == "sdk" or lowlevel is None:
        await server.run_stdio_async()
        return
    async with stdio_streams() as streams:
        if streams is None:
            log.debug("stdin/stdout are not pipes asyncio can watch: using the SDK's threaded stdio transport")
            await server.run_stdio_async()
            return
        lines, writer = streams
        async with stdio_server(stdin=lines, stdout=writer) as (read_stream, write_stream):
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
