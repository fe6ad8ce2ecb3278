"""The request thread's side: a whole request in, PEP 3333 environ, the app, the answer out.

The app is called on a thread of the pool with the body already in memory
(``wsgi.input`` is a BytesIO), or in a temporary file for a mount that spools its
bodies, so no thread ever waits for a client's bytes.
An answer held in memory is handed to the loop in one piece; a streamed one
(bulk export files) chunk by chunk, each waiting until the connection has
room, so a slow reader holds neither memory nor, past the body timeout, the
thread.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import orjson

from hygeia.fhir.outcome import Issue, operation_outcome

if TYPE_CHECKING:
    from hygeia.api.http.front import Connection, FrontEnd
    from hygeia.api.http.request import Request

log = logging.getLogger("hygeia.api.http")
access_log = logging.getLogger("hygeia.access")
# a child that does not propagate: ``--log-format json`` lines carry no text prefix
json_access_log = logging.getLogger("hygeia.access.json")
_access_log_as_json = False
_NO_BODY_STATUSES = frozenset({204, 304})
_date_cache: tuple[int, str] = (0, "")


class _Answer:
    """What the app said through start_response."""

    __slots__ = ("headers", "status")

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        self.status, self.headers = status, headers
        return _no_write


def _no_write(data: bytes) -> None:
    raise RuntimeError("the write() callable of start_response is not supported")


def respond(front: FrontEnd, connection: Connection, request: Request) -> None:
    """Run the app for ``request`` and send its answer (on a request thread)."""
    started = time.perf_counter()
    answer = _Answer()
    keep_alive, sent, status = request.keep_alive, 0, 500
    try:
        result = front.app(environ(front, connection, request), answer.start_response)
        status = int(answer.status[:3])
        if isinstance(result, list):
            pieces, keep_alive = _whole(answer, result, request)
            sent = len(pieces[1]) if len(pieces) > 1 else 0
            rest = _after(pieces, connection.send_now(pieces))
            if rest or request.reserved or not connection.finish_here(keep_alive):
                front.loop.call_soon_threadsafe(connection.finished, rest, keep_alive,
                                                request.reserved)
        else:
            sent, keep_alive = _streamed(front, connection, answer, result, request)
            front.loop.call_soon_threadsafe(connection.finished, [], keep_alive,
                                            request.reserved)
    except Exception:
        log.exception("unexpected error answering %s %r", request.method, request.target[:200])
        front.loop.call_soon_threadsafe(connection.finished, _failure(sent), False,
                                        request.reserved)
    finally:
        if request.body_file is not None:
            request.body_file.close()
    if front.access_log:
        _log_access(connection, request, status, sent, (time.perf_counter() - started) * 1000)


def log_access_as_json() -> None:
    """``--log-format json``: each access log line is one JSON object on standard output
    (time, client, method, path, status, bytes, ms), for log shippers to parse."""
    global _access_log_as_json
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    json_access_log.addHandler(handler)
    json_access_log.setLevel(logging.INFO)
    json_access_log.propagate = False
    _access_log_as_json = True


def _log_access(connection: Connection, request: Request, status: int, sent: int,
                ms: float) -> None:
    """One access log line.  The path only: queries carry search values (names,
    identifiers) that are patient data, and no header is logged (tokens, cookies)."""
    path = request.target.partition(b"?")[0].decode("latin-1")
    if _access_log_as_json:
        json_access_log.info("%s", orjson.dumps({
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "client": connection.client, "method": request.method, "path": path,
            "status": status, "bytes": sent, "ms": round(ms, 1)}).decode())
        return
    access_log.info('%s - "%s %s HTTP/%s" %d %d %.1fms', connection.client, request.method,
                    path, request.version, status, sent, ms)


def environ(front: FrontEnd, connection: Connection, request: Request) -> dict[str, Any]:
    """The PEP 3333 environ of a request: native strings are latin-1 decoded bytes."""
    path, _, query = _origin_form(request.target).partition(b"?")
    if b"%" in path:
        path = unquote_to_bytes(path)
    env: dict[str, Any] = {
        **front.environ_base,
        "REQUEST_METHOD": request.method,
        "PATH_INFO": path.decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{request.version}",
        "REMOTE_ADDR": connection.client,
        "REMOTE_PORT": str(connection.client_port),
        "wsgi.input": request.body_file or io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
    }
    for name, value in request.headers:
        key = name.decode("latin-1").upper()
        if "_" in key:  # would be indistinguishable from a dash once in the environ
            continue
        key = key.replace("-", "_")
        if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is whole: its length is stated below
        text = value.decode("latin-1")
        if key != "CONTENT_TYPE":
            key = "HTTP_" + key
        env[key] = f"{env[key]},{text}" if key in env else text
    if request.has_body:
        env["CONTENT_LENGTH"] = str(request.body_size if request.body_file is not None
                                    else len(request.body))
    return env


def _origin_form(target: bytes) -> bytes:
    """``/path?query`` from an origin-form or absolute-form request target (RFC 9112 3.2)."""
    if target.startswith(b"/"):
        return target
    if b"://" in target:
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        return rest[slash:] if slash >= 0 else b"/"
    return target  # "*" (OPTIONS) and the like: the app answers 404


def _whole(answer: _Answer, result: list[bytes], request: Request
           ) -> tuple[list[bytes], bool]:
    """The head and body of an answer held in memory (not joined: a large body is not
    copied again); and whether to keep the connection alive."""
    body = result[0] if len(result) == 1 else b"".join(result)
    status = int(answer.status[:3])
    keep_alive = request.keep_alive
    no_body = request.method == "HEAD" or status in _NO_BODY_STATUSES or status < 200
    head = _head(answer, request, keep_alive,
                 length=None if no_body else len(body))
    return ([head] if no_body or not body else [head, body]), keep_alive


def _after(pieces: list[bytes], written: int) -> list[bytes | memoryview]:
    """What is left of ``pieces`` once ``written`` bytes of them have gone out."""
    rest: list[bytes | memoryview] = []
    for piece in pieces:
        if written >= len(piece):
            written -= len(piece)
            continue
        rest.append(memoryview(piece)[written:] if written else piece)
        written = 0
    return rest


def _streamed(front: FrontEnd, connection: Connection, answer: _Answer,
              result: Iterable[bytes], request: Request) -> tuple[int, bool]:
    """Send a streamed body, chunked when its length is not known; (bytes sent, keep-alive)."""
    try:
        if request.method == "HEAD":
            head = _head(answer, request, request.keep_alive, length=None)
            if not _send(front, connection, head):
                return 0, False
            return 0, request.keep_alive
        declared = any(name.lower() == "content-length" for name, _ in answer.headers)
        chunked = not declared and request.version == "1.1"
        keep_alive = request.keep_alive and (declared or chunked)
        head = _head(answer, request, keep_alive, length=None, chunked=chunked)
        sent = 0
        if not _send(front, connection, head):
            return 0, False
        try:
            for chunk in result:
                if not chunk:
                    continue
                data = b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk
                if not _send(front, connection, data):
                    return sent, False
                sent += len(chunk)
        except Exception:  # the head is out: all that is left is to cut the connection
            log.exception("streamed answer to %s %r failed", request.method, request.target)
            front.loop.call_soon_threadsafe(connection.abort)
            return sent, False
        if chunked and not _send(front, connection, b"0\r\n\r\n"):
            return sent, False
        return sent, keep_alive
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


def _send(front: FrontEnd, connection: Connection, data: bytes) -> bool:
    """Hand one piece to the loop once the connection has room; False: it is gone or
    the client has not taken anything for the body timeout."""
    if not connection.writable.wait(front.limits.body_timeout) or connection.closed:
        front.loop.call_soon_threadsafe(connection.abort)
        return False
    connection.writable.clear()
    front.loop.call_soon_threadsafe(connection.write_chunk, data)
    return True


def _head(answer: _Answer, request: Request, keep_alive: bool, *, length: int | None,
          chunked: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {answer.status}\r\n"]
    has_length = False
    for name, value in answer.headers:
        if "\n" in value or "\r" in value:
            raise ValueError(f"header {name} holds a line break")
        lowered = name.lower()
        if lowered == "content-length":
            if length is not None:
                continue  # restated below from the body actually sent
            has_length = True
        lines.append(f"{name}: {value}\r\n")
    if length is not None and not has_length:
        lines.append(f"Content-Length: {length}\r\n")
    if chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    lines.append(_date_line())
    if not keep_alive:
        lines.append("Connection: close\r\n\r\n")
    elif request.version == "1.0":
        lines.append("Connection: keep-alive\r\n\r\n")
    else:
        lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def _date_line() -> str:
    """The Date header, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, f"Date: {formatdate(now, usegmt=True)}\r\n")
    return _date_cache[1]


def _failure(sent: int) -> list[bytes | memoryview]:
    """A 500 OperationOutcome, unless part of an answer already left (then only a close)."""
    if sent:
        return []
    body = orjson.dumps(operation_outcome([Issue(
        "exception", "The server failed unexpectedly; the error was logged.",
        severity="fatal")]))
    return [b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/fhir+json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)]
