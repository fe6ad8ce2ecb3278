"""MLLP framing: ``<VT> message <FS><CR>`` blocks cut out of a TCP byte stream.

TCP delivers bytes, not messages: one ``recv`` may hold half a message, or the
end of one and two more. :class:`FrameReader` is fed whatever arrived and
hands back the complete messages, in order, so the listener never cares how
the stream was cut. Bytes outside a block are ignored (the MLLP release 2
framing rules: a receiver resynchronises on the next start block); a start
block inside an unfinished message abandons the partial one, which the sender
evidently gave up on. A message longer than ``max_bytes`` is not collected:
the reader reports it as :class:`Oversize` with its first bytes (enough to
read its MSH and answer it) and keeps nothing else, so memory stays bounded
whatever a peer sends.
"""

from __future__ import annotations

from dataclasses import dataclass

START = b"\x0b"  # <VT>, start block
END = b"\x1c"  # <FS>, end block (followed by <CR>)
CARRIAGE_RETURN = b"\r"
HEAD_BYTES = 4096  # what an oversize message keeps of itself: its MSH segment


@dataclass(frozen=True, slots=True)
class Oversize:
    """A message longer than the limit; ``head`` is its first :data:`HEAD_BYTES`."""

    head: bytes


def frame(message: bytes) -> bytes:
    """``message`` in an MLLP block, ready to send."""
    return START + message + END + CARRIAGE_RETURN


class FrameReader:
    """Collects MLLP blocks from a byte stream; one reader per connection.

    >>> reader = FrameReader(1024)
    >>> reader.feed(b"\\x0bMSH|a\\x1c\\r\\x0bMS") + reader.feed(b"H|b\\x1c\\r")
    [b'MSH|a', b'MSH|b']
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._inside = False  # a start block was seen and its end was not

    @property
    def inside(self) -> bool:
        """True while a message has begun and not ended (its deadline is running)."""
        return self._inside

    def feed(self, data: bytes) -> list[bytes | Oversize]:
        """The messages ``data`` completes, oldest first; an :class:`Oversize` is last
        (the connection is to be answered and closed after it)."""
        found: list[bytes | Oversize] = []
        position = 0
        while position < len(data):
            if not self._inside:
                start = data.find(START, position)
                if start < 0:
                    break  # noise between blocks
                self._inside = True
                self._buffer.clear()
                position = start + 1
                continue
            position, done = self._collect(data, position)
            if isinstance(done, Oversize):
                return [*found, done]
            if done is not None:
                found.append(done)
        return found

    def _collect(self, data: bytes, position: int) -> tuple[int, bytes | Oversize | None]:
        """Add bytes of the current message up to its end block: where reading goes on,
        and the message if it finished here."""
        end = data.find(END, position)
        restart = data.find(START, position, len(data) if end < 0 else end)
        if restart >= 0:
            self._buffer.clear()  # the sender abandoned the message and began another
            return restart + 1, None
        stop = len(data) if end < 0 else end
        self._buffer += data[position:stop]
        if len(self._buffer) > self.max_bytes:
            self._inside = False
            head = bytes(self._buffer[:HEAD_BYTES])
            self._buffer = bytearray()
            return len(data), Oversize(head)
        if end < 0:
            return len(data), None
        self._inside = False
        message = bytes(self._buffer)
        self._buffer.clear()
        return end + 1, message
