"""Sans-I/O framing of SIP messages on a byte stream (RFC 3261 section 18.3).

Theory of operation
-------------------

On TCP (and TLS) a SIP message ends where its Content-Length says, so the framer needs only
the header block and that one header; it never parses the message (``callmeter.sip.message``
does that). :meth:`StreamFramer.feed` appends a read to the buffer and returns every message
completed by it, header and body as one ``bytes`` each, ready for
``SansIOCore.receive_datagram``.

Between messages the framer skips CRLF keep-alives (RFC 5626 section 4.4.1): every two
blank lines are one ``CRLFCRLF`` ping, which the shell answers with the single ``CRLF``
pong from :meth:`StreamFramer.take_pongs`. A lone ``CRLF`` (a pong) is skipped silently.

Work per byte is bounded: the header is scanned line by line from where the previous read
stopped, and consumed bytes are dropped once per :meth:`~StreamFramer.feed`. Lines may end
in CRLF or a bare LF; ``obs-fold`` continuation lines are honoured for Content-Length.

A stream that cannot be framed (no Content-Length, a bad or conflicting one, a header or
body over its limit) raises :class:`FramingError`, a ``ParseError``. Nothing is lost: the
error carries the messages completed before the bad one and the raw bytes of the bad one,
so the shell can hand both to the core (which counts and traces them) and then close the
connection, the only safe thing to do with a stream that has lost its framing.
"""

from __future__ import annotations

from callmeter.sip.errors import ParseError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "PING",
    "PONG",
    "FramingError",
    "StreamFramer",
]

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
"""Start line and headers, through the empty line, must fit in this many bytes."""
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""The largest Content-Length accepted; SIP bodies (SDP, PIDF, MESSAGE) are far smaller."""

PING = b"\r\n\r\n"
"""RFC 5626 section 3.5.1 keep-alive ping on a stream (double CRLF)."""
PONG = b"\r\n"
"""RFC 5626 section 3.5.1 keep-alive pong (single CRLF)."""

_LENGTH_NAMES = (b"content-length", b"l")  # RFC 3261 section 7.3.3 compact form "l"
_FOLD_START = (b" ", b"\t")  # obs-fold continuation line (RFC 3261 section 7.3.1)
_KEEPALIVE_BYTES = b"\r\n"
_LF = ord("\n")
_SHOWN_CHARS = 40


class FramingError(ParseError):
    """The stream lost its framing; the connection must be closed.

    ``messages`` are the whole messages completed by the same ``feed`` before the bad one;
    ``offending`` is the raw bytes of the bad message as received so far.
    """

    def __init__(self, message: str, *, messages: list[bytes], offending: bytes) -> None:
        super().__init__(message)
        self.messages = messages
        self.offending = offending


def _fail(problem: str) -> ParseError:
    return ParseError(f"stream framing: {problem}")


def _show(value: bytes) -> str:
    text = value[:_SHOWN_CHARS].decode("ascii", "backslashreplace")
    return text + "..." if len(value) > _SHOWN_CHARS else text


class StreamFramer:
    """Cuts one connection's byte stream into SIP messages."""

    __slots__ = (
        "_body_start",
        "_buffer",
        "_error",
        "_first_line",
        "_folding_length",
        "_keepalive_lines",
        "_length",
        "_length_values",
        "_line_start",
        "_max_body",
        "_max_header",
        "_pongs_due",
        "_scan",
        "_start",
        "pings_received",
    )

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._max_header = max_header_bytes
        self._max_body = max_body_bytes
        self._buffer = bytearray()
        self._start = 0  # first byte of the current message, or of the keep-alives before it
        self._error: str | None = None
        self._keepalive_lines = 0  # blank lines since the last ping
        self._pongs_due = 0
        self.pings_received = 0
        """CRLFCRLF keep-alive pings seen on this stream so far."""
        self._reset_message()

    def _reset_message(self) -> None:
        self._line_start = -1  # -1: between messages, skipping keep-alives
        self._scan = 0  # where the search for the next LF resumes (never rescan a long line)
        self._body_start = -1  # -1: header not complete yet
        self._length = 0
        self._length_values: list[bytes] = []
        self._folding_length = False
        self._first_line = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message (a partial message)."""
        return len(self._buffer) - self._start

    def take_pongs(self) -> bytes:
        """The bytes answering every ping since the last call (one CRLF each), or ``b""``."""
        pongs, self._pongs_due = PONG * self._pongs_due, 0
        return pongs

    def feed(self, data: bytes) -> list[bytes]:
        """Add one read; return the messages it completed, in order.

        Raises :class:`FramingError` when the stream cannot be framed, and again on every
        later call: a stream that lost its framing cannot find it again.
        """
        if self._error is not None:
            raise FramingError(self._error, messages=[], offending=data)
        self._buffer += data
        messages: list[bytes] = []
        try:
            while (message := self._next_message()) is not None:
                messages.append(message)
        except ParseError as exc:
            self._error = str(exc)
            offending = bytes(self._buffer[self._start :])
            self._buffer.clear()
            raise FramingError(self._error, messages=messages, offending=offending) from None
        self._compact()
        return messages

    def _next_message(self) -> bytes | None:
        if self._body_start < 0:
            if self._line_start < 0 and not self._skip_keepalives():
                return None
            if not self._scan_header():
                return None
        end = self._body_start + self._length
        if len(self._buffer) < end:
            return None
        message = bytes(self._buffer[self._start : end])
        self._start = end
        self._reset_message()
        return message

    def _skip_keepalives(self) -> bool:
        """Skip CR/LF before a message, counting pings; True once a message has started."""
        buffer, pos = self._buffer, self._start
        while pos < len(buffer) and buffer[pos] in _KEEPALIVE_BYTES:
            if buffer[pos] == _LF:
                self._keepalive_lines += 1
                if self._keepalive_lines == 2:
                    self._keepalive_lines = 0
                    self.pings_received += 1
                    self._pongs_due += 1
            pos += 1
        self._start = pos
        if pos == len(buffer):
            return False
        self._keepalive_lines = 0
        self._line_start = self._scan = pos
        return True

    def _scan_header(self) -> bool:
        """Scan whole header lines from where the last read stopped; True at the empty line."""
        buffer = self._buffer
        limit = self._start + self._max_header
        while (newline := buffer.find(b"\n", self._scan, limit)) >= 0:
            line = bytes(buffer[self._line_start : newline]).removesuffix(b"\r")
            self._line_start = self._scan = newline + 1
            if not line:
                self._body_start = newline + 1
                self._length = self._content_length()
                return True
            self._header_line(line)
        if len(buffer) >= limit:
            raise _fail(f"header exceeds {self._max_header} bytes without an empty line")
        self._scan = len(buffer)
        return False

    def _header_line(self, line: bytes) -> None:
        if self._first_line:  # the start line, whatever it says
            self._first_line = False
        elif line.startswith(_FOLD_START):
            if self._folding_length:
                self._length_values[-1] += b" " + line
        else:
            name, colon, value = line.partition(b":")
            self._folding_length = bool(colon) and name.strip().lower() in _LENGTH_NAMES
            if self._folding_length:
                self._length_values.append(value)

    def _content_length(self) -> int:
        """The one body length all Content-Length headers agree on (RFC 3261 section 18.3)."""
        if not self._length_values:
            raise _fail("message has no Content-Length header, required on a stream")
        first = b""
        length = -1
        for raw in self._length_values:
            value = raw.strip()
            if not value.isdigit():
                raise _fail(f'Content-Length "{_show(value)}" is not a non-negative integer')
            digits = value.lstrip(b"0") or b"0"  # bound int() work: huge values never parse
            number = int(digits) if len(digits) <= len(str(self._max_body)) else -1
            if not 0 <= number <= self._max_body:
                raise _fail(
                    f"Content-Length {_show(value)} exceeds the limit of {self._max_body} bytes"
                )
            if length < 0:
                first, length = value, number
            elif number != length:
                raise _fail(
                    f'conflicting Content-Length values "{_show(first)}" and "{_show(value)}"'
                )
        return length

    def _compact(self) -> None:
        """Drop consumed bytes once per read (amortised O(1) per byte in CPython)."""
        consumed = self._start
        if consumed == 0:
            return
        del self._buffer[:consumed]
        self._start = 0
        if self._line_start >= 0:
            self._line_start -= consumed
            self._scan -= consumed
        if self._body_start >= 0:
            self._body_start -= consumed
