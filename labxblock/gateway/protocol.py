"""Guacamole protocol codec: ``LEN.VALUE,LEN.VALUE;`` with LEN in code points.

Only the length prefix says where a value ends: values may hold ``,`` ``;``
``.``. Python's ``len(str)`` counts code points, which is what guacd counts.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator, Sequence

Instruction = tuple[str, ...]

# guacd caps an instruction at 8 KiB and 128 elements; a little headroom, and
# a bound on what a peer can make us buffer.
MAX_INSTRUCTION_LENGTH = 16 * 1024
MAX_ELEMENTS = 128
_MAX_LENGTH_DIGITS = 6
_NON_BMP = re.compile("[\U00010000-\U0010ffff]")


class ProtocolError(ValueError):
    """Malformed Guacamole data from a peer."""


def encode(*elements: object) -> str:
    """One instruction; the first element is the opcode."""
    if not elements:
        raise ValueError("an instruction needs an opcode")
    parts = []
    for element in elements:
        text = element if isinstance(element, str) else str(element)
        parts.append(f"{len(text)}.{text}")
    return ",".join(parts) + ";"


def bmp_only(text: str) -> str:
    """Replace characters outside the BMP with U+FFFD.

    The vendored guacamole-common-js 1.5.0 counts lengths in UTF-16 units, so
    a character above U+FFFF would desync it; in the BMP both counts agree.
    """
    return _NON_BMP.sub("\ufffd", text)


def for_browser(raw: str) -> str:
    """Re-encode complete instructions so the 1.5.0 browser client can parse them."""
    if not _NON_BMP.search(raw):
        return raw
    return "".join(encode(*(bmp_only(e) for e in ins)) for ins in parse_all(raw))


class Parser:
    """Incremental parser: feed text in any pieces, get complete instructions.

    ``feed`` yields ``(instruction, raw_text)`` so a relay can forward the
    exact text without re-encoding it.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._elements: list[str] = []
        self._pos = 0  # next unparsed index in _buf
        self._start = 0  # index where the current instruction starts

    @property
    def pending(self) -> bool:
        """True while part of an instruction is buffered."""
        return self._start < len(self._buf)

    def feed(self, text: str) -> Iterator[tuple[Instruction, str]]:
        self._buf += text
        try:
            while True:
                dot = self._buf.find(".", self._pos)
                if dot < 0:
                    self._check_digits(len(self._buf) - self._pos)
                    break
                self._check_digits(dot - self._pos)
                digits = self._buf[self._pos : dot]
                if not digits.isascii() or not digits.isdigit():
                    raise ProtocolError("element length is not a decimal number")
                length = int(digits)
                end = dot + 1 + length
                if end - self._start > MAX_INSTRUCTION_LENGTH:
                    raise ProtocolError("instruction too long")
                if end >= len(self._buf):
                    break  # value or terminator not here yet
                self._elements.append(self._buf[dot + 1 : end])
                terminator = self._buf[end]
                self._pos = end + 1
                if terminator == ";":
                    raw = self._buf[self._start : self._pos]
                    instruction = tuple(self._elements)
                    self._elements = []
                    self._start = self._pos
                    yield instruction, raw
                elif terminator != ",":
                    raise ProtocolError("element not followed by ',' or ';'")
                elif len(self._elements) >= MAX_ELEMENTS:
                    raise ProtocolError("too many elements")
        finally:
            # Drop what has been handed out; keep the partial instruction.
            if self._start:
                self._buf = self._buf[self._start :]
                self._pos -= self._start
                self._start = 0

    def _check_digits(self, count: int) -> None:
        if count > _MAX_LENGTH_DIGITS:
            raise ProtocolError("element length too long")


class ByteParser:
    """A ``Parser`` over UTF-8 bytes that may be split anywhere, even inside a character."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._parser = Parser()

    @property
    def pending(self) -> bool:
        return self._parser.pending

    def feed(self, data: bytes) -> Iterator[tuple[Instruction, str]]:
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise ProtocolError("invalid UTF-8") from exc
        return self._parser.feed(text)


def parse_all(text: str) -> list[Instruction]:
    """Parse text that must hold only complete instructions (one websocket message)."""
    parser = Parser()
    instructions = [ins for ins, _ in parser.feed(text)]
    if parser.pending:
        raise ProtocolError("incomplete instruction")
    return instructions


def encode_all(instructions: Sequence[Sequence[object]]) -> str:
    return "".join(encode(*ins) for ins in instructions)
