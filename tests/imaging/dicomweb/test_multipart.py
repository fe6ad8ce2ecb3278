"""multipart/related: reading a spooled STOW-RS body, writing WADO-RS answers."""

from __future__ import annotations

import tempfile
from typing import BinaryIO

import pytest

from hygeia.fhir.outcome import BadRequest, UnsupportedMediaType
from hygeia.imaging.dicomweb.multipart import (
    MAX_PARTS,
    parse_media_type,
    related_boundary,
    related_parts,
    split_parts,
)


def spooled(data: bytes) -> BinaryIO:
    handle = tempfile.TemporaryFile()  # noqa: SIM115 (the test closes it)
    handle.write(data)
    handle.seek(0)
    return handle


def body(*parts: bytes, boundary: str = "b0und", close: bool = True) -> bytes:
    chunks = [b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + part
              + b"\r\n" for part in parts]
    return b"".join(chunks) + (b"--" + boundary.encode() + b"--\r\n" if close else b"")


def read(handle: BinaryIO, offset: int, length: int) -> bytes:
    handle.seek(offset)
    return handle.read(length)


def test_parts_are_windows_on_the_file_with_their_bytes_exact() -> None:
    first, second = b"DICM\r\n--b0unda\x00\xff" * 100, b"\r\n\r\n"  # boundary-like bytes inside
    data = body(first, second)
    with spooled(data) as handle:
        parts = split_parts(handle, len(data), "b0und")
        assert [part.number for part in parts] == [1, 2]
        assert [part.content_type for part in parts] == ["application/dicom"] * 2
        assert read(handle, parts[0].offset, parts[0].length) == first
        assert read(handle, parts[1].offset, parts[1].length) == second


def test_a_preamble_before_the_first_boundary_is_skipped() -> None:
    data = b"ignored preamble\r\n" + body(b"abc")
    with spooled(data) as handle:
        (part,) = split_parts(handle, len(data), "b0und")
        assert read(handle, part.offset, part.length) == b"abc"


@pytest.mark.parametrize(("data", "words"), [
    (body(b"abc", close=False), "closing boundary"),
    (b"no boundary here at all", "does not contain the boundary"),
    (b"--b0und--\r\n", "no parts"),
    (b"--b0und\r\nContent-Type: application/dicom\r\nabc\r\n--b0und--", "blank line"),
    (b"--b0und\r\nno colon\r\n\r\nabc\r\n--b0und--", "without a colon"),
])
def test_broken_framing_is_a_400_with_the_reason(data: bytes, words: str) -> None:
    with spooled(data) as handle, pytest.raises(BadRequest) as raised:
        split_parts(handle, len(data), "b0und")
    assert words in str(raised.value)


def test_an_empty_body_is_refused() -> None:
    with spooled(b"") as handle, pytest.raises(BadRequest, match="empty"):
        split_parts(handle, 0, "b0und")


def test_too_many_parts_are_refused() -> None:
    data = body(*([b"x"] * (MAX_PARTS + 1)))
    with spooled(data) as handle, pytest.raises(BadRequest, match=str(MAX_PARTS)):
        split_parts(handle, len(data), "b0und")


def test_content_type_must_be_multipart_related_of_dicom_with_a_boundary() -> None:
    ok = 'multipart/related; type="application/dicom"; boundary="abc"'
    assert related_boundary(ok, "application/dicom") == "abc"
    assert related_boundary("multipart/related; boundary=xyz", "application/dicom") == "xyz"
    with pytest.raises(UnsupportedMediaType, match="application/json"):
        related_boundary("application/json", "application/dicom")
    with pytest.raises(UnsupportedMediaType, match="application/dicom\\+xml"):
        related_boundary('multipart/related; type="application/dicom+xml"; boundary=a',
                         "application/dicom")
    with pytest.raises(BadRequest, match="boundary"):
        related_boundary('multipart/related; type="application/dicom"', "application/dicom")
    with pytest.raises(UnsupportedMediaType, match="no Content-Type"):
        related_boundary(None, "application/dicom")


def test_answers_round_trip_through_the_reader() -> None:
    payloads = [b"one", b"\r\n--xy\r\n", b""]  # a near-miss of the delimiter
    data = b"".join(related_parts((("application/dicom", [p]) for p in payloads), "x"))
    with spooled(data) as handle:
        parts = split_parts(handle, len(data), "x")
        assert [read(handle, p.offset, p.length) for p in parts] == payloads


def test_media_type_parameters_are_read_with_quotes_removed() -> None:
    media = parse_media_type('Multipart/Related; Type="application/dicom"; boundary=a')
    assert media.type == "multipart/related"
    assert media.inner == "application/dicom"


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_boundaries_across_read_chunks_are_found(chunk: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The body is scanned a chunk at a time: a delimiter split between two reads is
    found all the same."""
    monkeypatch.setattr("hygeia.imaging.dicomweb.multipart.SCAN_CHUNK", chunk)
    payloads = [b"a" * 50, b"\r\n--b0un", b"z" * 13]
    data = body(*payloads)
    with spooled(data) as handle:
        parts = split_parts(handle, len(data), "b0und")
        assert [read(handle, p.offset, p.length) for p in parts] == payloads
