"""MLLP blocks cut out of a byte stream however TCP splits or merges it."""

from __future__ import annotations

from hygeia.devices.mllp.framing import FrameReader, Oversize, frame

MESSAGE = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||X"


def test_a_block_split_into_single_bytes_comes_out_whole() -> None:
    reader = FrameReader(1024)
    found = [block for byte in frame(MESSAGE) for block in reader.feed(bytes([byte]))]
    assert found == [MESSAGE]


def test_merged_blocks_come_out_in_order_and_noise_between_them_is_ignored() -> None:
    reader = FrameReader(1024)
    stream = b"noise" + frame(b"MSH|one") + b"\r\n" + frame(b"MSH|two") + frame(b"MSH|th")
    assert reader.feed(stream[:-4]) == [b"MSH|one", b"MSH|two"]
    assert reader.inside
    assert reader.feed(stream[-4:]) == [b"MSH|th"]
    assert not reader.inside


def test_a_new_start_block_abandons_the_unfinished_message() -> None:
    reader = FrameReader(1024)
    assert reader.feed(b"\x0bMSH|half" + frame(b"MSH|whole")) == [b"MSH|whole"]


def test_a_message_over_the_limit_is_reported_with_its_head_only() -> None:
    reader = FrameReader(100)
    found = reader.feed(b"\x0b" + MESSAGE + b"x" * 200)
    assert len(found) == 1 and isinstance(found[0], Oversize)
    assert found[0].head.startswith(b"MSH|")
    assert reader.feed(frame(b"MSH|small")) == [b"MSH|small"]  # the reader starts afresh
