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

Both transports share what :func:`run_stdio` adds on top of the SDK: a line that is not JSON,
or not a JSON-RPC message, is answered with a JSON-RPC error (-32700 parse error, -32600
invalid request, ``id: null``) instead of being dropped unanswered, and the session goes on;
SIGTERM and SIGINT end the session as end of input does (running tool calls stop at their
next batch boundary, the index is closed), then the process exits, within 2 s even when a
tool call is stuck in a read that never returns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import signal
import stat
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, JSONRPCNotification
from pydantic import ValidationError

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


class PipeLines:
    """Async iterator of decoded lines from a non-blocking pipe (what ``stdio_server`` reads).

    Lines keep their newline, as a text file's do; bytes that are not UTF-8 are replaced, as
    the SDK's reader does. No limit on line length (the SDK has none); the tools bound what a
    request may carry."""

    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.ReadTransport | None = None) -> None:
        self._reader = reader
        self._transport = transport
        self._buf = bytearray()
        self._scanned = 0  # self._buf[:_scanned] holds no newline
        self._eof = False

    def close(self) -> None:
        """Stop reading the pipe: the lines end, as at end of input, once what was read is used."""
        if self._transport is not None:
            self._transport.close()  # the protocol then feeds EOF to the reader

    def __aiter__(self) -> PipeLines:
        return self

    async def __anext__(self) -> str:
        while True:
            # only the bytes not yet searched: a line arriving in many chunks is scanned once
            nl = self._buf.find(b"\n", self._scanned)
            if nl >= 0:
                line = bytes(self._buf[: nl + 1])
                del self._buf[: nl + 1]
                self._scanned = 0
                return line.decode("utf-8", errors="replace")
            self._scanned = len(self._buf)
            if self._eof:
                if self._buf:
                    line = bytes(self._buf)
                    self._buf.clear()
                    self._scanned = 0
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
            yield PipeLines(reader, r_transport), PipeWriter(writer)
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


def malformed_line_error(exc: Exception) -> ErrorData | None:
    """The JSON-RPC error answering a line the SDK's reader could not parse (it hands the
    server the validation error instead of a message), or ``None`` for a blank line."""
    errors = exc.errors() if isinstance(exc, ValidationError) else []
    bad_json = [e for e in errors if e.get("type") == "json_invalid"]
    if bad_json:
        raw = bad_json[0].get("input")
        if isinstance(raw, str) and not raw.strip():
            return None  # an empty line carries no message: nothing to answer
        return ErrorData(code=PARSE_ERROR, message=f"Parse error: {bad_json[0].get('msg', 'invalid JSON')}")
    return ErrorData(code=INVALID_REQUEST, message="Invalid request: not a JSON-RPC 2.0 message (an object with "
                     '"jsonrpc": "2.0" and a method, or a result or error for a request of ours)')


# Replies (and notifications) the server may hold waiting for stdout before it stops reading
# stdin: a client that stops reading its replies stops the server reading its requests, instead
# of the server running them all and holding every reply in memory.
MAX_PENDING_WRITES = 64


class PendingWrites:
    """The write stream the server writes to, counting the messages waiting to be written."""

    def __init__(self, inner: Any, limit: int = MAX_PENDING_WRITES) -> None:
        self._inner = inner
        self.limit = limit
        self.pending = 0
        self._drained = anyio.Event()

    async def send(self, item: Any) -> None:
        self.pending += 1
        try:
            await self._inner.send(item)
        finally:
            self.pending -= 1
            if self.pending < self.limit:
                self._drained.set()

    async def room(self) -> None:
        """Return once fewer than ``limit`` messages wait to be written."""
        while self.pending >= self.limit:
            self._drained = anyio.Event()
            await self._drained.wait()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> PendingWrites:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


ID_ERROR = ('Invalid request: a request needs an "id" that is a string or an integer (this one has none, '
            "or null, a fraction, a boolean, an object or an array); it was not executed")


def _request_without_id(item: Any) -> bool:
    """A message the SDK parsed as a notification although its method is not one: a request
    whose ``id`` is missing or not a string or integer (``1.5``, ``true``, ``null``, ``{}``...).
    Left alone, the SDK drops it unanswered; every MCP notification is ``notifications/...``."""
    message = getattr(item, "message", None)
    return isinstance(message, JSONRPCNotification) and not message.method.startswith("notifications/")


class SessionReader:
    """The read stream the server reads, over the transport's.

    A line the transport could not parse arrives as an exception: it is answered on the write
    stream with a JSON-RPC error (``id: null``: a malformed line has no id to answer) and skipped;
    so is a request whose ``id`` is not a string or integer (:func:`_request_without_id`).
    :meth:`stop` ends the stream as end of input does, even while the transport is blocked in a
    read (the SDK's reader thread cannot be interrupted)."""

    def __init__(self, inner: Any, write: Any) -> None:
        self._inner = inner
        self._write = write  # a PendingWrites: reading waits while too many replies are unwritten
        self._stopped = False
        self._waiting: anyio.CancelScope | None = None

    @property
    def last_context(self) -> Any:  # the sender's context of the last message (the SDK reads it)
        return getattr(self._inner, "last_context", None)

    def stop(self) -> None:
        self._stopped = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def receive(self) -> Any:
        while True:
            if self._stopped:
                raise anyio.EndOfStream
            with anyio.CancelScope() as scope:
                self._waiting = scope
                try:
                    room = getattr(self._write, "room", None)
                    if room is not None:
                        await room()  # backpressure: the client is not reading what we wrote
                    item = await self._inner.receive()
                finally:
                    self._waiting = None
            if scope.cancelled_caught:
                raise anyio.EndOfStream
            if not isinstance(item, Exception):
                if not _request_without_id(item):
                    return item
                error: ErrorData | None = ErrorData(code=INVALID_REQUEST, message=ID_ERROR)
                log.debug("answering a request without a valid id with -32600 (not executed)")
            else:
                error = malformed_line_error(item)
            if error is None:
                continue
            log.debug("answering a malformed line with %d", error.code)
            try:
                await self._write.send(SessionMessage(JSONRPCError(jsonrpc="2.0", id=None, error=error)))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the session is closing: nobody to answer

    def __aiter__(self) -> SessionReader:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> SessionReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _exit_soon(delay_s: float) -> None:
    """Once the session has ended and the index is closed: if the process is still alive ``delay_s`` later
    (the SDK's stdin reader thread blocks in a read nothing interrupts; a tool call ignored its
    stop), exit anyway. A daemon timer: a process that exits first takes it along."""

    def go() -> None:
        log.warning("still running %.0f s after the session ended: exiting", delay_s)
        for stream in (sys.stderr, sys.stdout):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(0)

    timer = threading.Timer(delay_s, go)
    timer.daemon = True
    timer.start()


async def _on_signals(stop) -> None:
    """Call ``stop(signal)`` on SIGTERM or SIGINT (main thread, POSIX; elsewhere nothing)."""
    try:
        receiver = anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT)
        with receiver as signals:
            async for signum in signals:
                stop(signum)
    except (NotImplementedError, ValueError, RuntimeError) as exc:  # Windows, or not the main thread
        log.debug("no signal handling on stdio: %s", exc)


async def run_stdio(server, transport: str = "asyncio") -> None:
    """Run an ``MCPServer`` over stdio: through :func:`stdio_streams` with ``transport="asyncio"``
    (the SDK's threaded transport where the descriptors are not pipes), or the SDK's own
    transport with ``transport="sdk"``; malformed lines are answered (:class:`SessionReader`),
    SIGTERM and SIGINT end the session cleanly."""
    from mcp.server.stdio import stdio_server

    lowlevel = getattr(server, "_lowlevel_server", None)  # MCPServer keeps its protocol server here
    if lowlevel is None:
        await server.run_stdio_async()
        return
    async with AsyncExitStack() as stack:
        pipes = await stack.enter_async_context(stdio_streams()) if transport != "sdk" else None
        if pipes is None:
            if transport != "sdk":
                log.debug("stdin/stdout are not pipes asyncio can watch: using the SDK's threaded stdio transport")
            read_stream, write_stream = await stack.enter_async_context(stdio_server())
        else:
            lines, writer = pipes
            read_stream, write_stream = await stack.enter_async_context(stdio_server(stdin=lines, stdout=writer))
        write_stream = PendingWrites(write_stream)
        reader = SessionReader(read_stream, write_stream)
        signalled: list[int] = []

        def stop(signum: int) -> None:
            if not signalled:
                log.info("%s: stopping the running tool calls, closing the index, exiting",
                         signal.Signals(signum).name)
            signalled.append(signum)
            reader.stop()
            if pipes is not None:
                pipes[0].close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(_on_signals, stop)
            await lowlevel.run(reader, write_stream, lowlevel.create_initialization_options())
            tg.cancel_scope.cancel()
        # The session ended (a signal, or stdin closed) and the index is closed. A worker stuck in
        # a call that never returns (a read from a hung mount) must not keep the process alive.
        _exit_soon(2.0)
