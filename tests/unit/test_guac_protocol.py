"""Guacamole codec: lengths in code points, values holding , ; . and any text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labxblock.gateway.protocol import (
    ByteParser,
    Parser,
    ProtocolError,
    bmp_only,
    encode,
    encode_all,
    for_browser,
    parse_all,
)

# Any text, with the protocol's own punctuation made likely.
values = st.text(
    alphabet=st.one_of(st.sampled_from(",;.0123456789é€😀"), st.characters(exclude_categories=["Cs"])),
    max_size=40,
)
instructions = st.lists(values, min_size=1, max_size=8).map(tuple)


def test_lengths_count_code_points_not_bytes_or_utf16_units():
    assert encode("name", "é😀") == "4.name,2.é😀;"
    assert encode("size", 0, 1024, 768) == "4.size,1.0,4.1024,3.768;"


def test_value_with_separators_is_one_value():
    text = encode("clipboard", "a,b;c.d", "3.x;")
    assert parse_all(text) == [("clipboard", "a,b;c.d", "3.x;")]


def test_empty_opcode_is_internal_instruction():
    assert parse_all("0.,4.ping,13.1700000000000;") == [("", "ping", "1700000000000")]


@given(st.lists(instructions, min_size=1, max_size=5))
def test_round_trip(batch):
    assert parse_all(encode_all(batch)) == batch


@given(st.lists(instructions, min_size=1, max_size=5), st.data())
def test_bytes_split_anywhere_even_inside_a_character(batch, data):
    raw = encode_all(batch).encode("utf-8")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    parser, got, last = ByteParser(), [], 0
    for cut in [*cuts, len(raw)]:
        got += [ins for ins, _ in parser.feed(raw[last:cut])]
        last = cut
    assert got == batch
    assert not parser.pending


@given(st.lists(instructions, min_size=1, max_size=5))
def test_raw_text_is_exactly_the_instruction(batch):
    text = encode_all(batch)
    assert "".join(raw for _, raw in Parser().feed(text)) == text


@given(instructions)
def test_browser_text_is_bmp_only_and_still_parses(ins):
    out = for_browser(encode(*ins))
    assert all(ord(c) <= 0xFFFF for c in out)
    # In the BMP, code points and UTF-16 units agree: the 1.5.0 JS counts right.
    assert parse_all(out) == [tuple(bmp_only(v) for v in ins)]


@pytest.mark.parametrize(
    "bad",
    [
        "4.size,1.0",  # incomplete
        "x.size;",  # non-numeric length
        "4.size:1.0;",  # bad terminator
        "2.size;",  # length too short: terminator lands inside the value
        "\u0661.a;",  # non-ASCII digit (ARABIC-INDIC ONE)
        "9999999.a;",  # absurd length prefix
        ",".join(["1.a"] * 200) + ";",  # too many elements
    ],
)
def test_malformed_input_is_refused(bad):
    with pytest.raises(ProtocolError):
        parse_all(bad)


def test_invalid_utf8_is_refused():
    with pytest.raises(ProtocolError):
        list(ByteParser().feed(b"3.\xff\xfe\xfd;"))


def test_parser_does_not_buffer_without_bound():
    parser = Parser()
    with pytest.raises(ProtocolError):
        list(parser.feed("20000." + "a" * 100))
