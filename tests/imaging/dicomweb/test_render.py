"""WADO-RS rendered: pictures of single-frame instances, negotiated by Accept."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file

from hygeia.fhir.outcome import BadRequest, NotAcceptable
from hygeia.imaging.dicomweb.render import render, rendered_type


def sample(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    assert found is not None, name
    return Path(str(found))


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm",
                                  "JPEG2000.dcm"])
@pytest.mark.parametrize(("media_type", "format_"), [("image/png", "PNG"),
                                                      ("image/jpeg", "JPEG")])
def test_pictures_decode_at_the_instance_size(name: str, media_type: str, format_: str) -> None:
    path = sample(name)
    dataset = dcmread(path, stop_before_pixels=True)
    picture = Image.open(io.BytesIO(render(path, media_type)))
    assert picture.format == format_
    assert picture.size == (dataset.Columns, dataset.Rows)
    low, high = picture.convert("L").getextrema()
    assert high > low  # a picture, not a blank


def test_monochrome_pixels_keep_their_order() -> None:
    path = sample("CT_small.dcm")
    pixels = dcmread(path).pixel_array
    picture = Image.open(io.BytesIO(render(path, "image/png")))
    bright = divmod(int(pixels.argmax()), pixels.shape[1])
    dark = divmod(int(pixels.argmin()), pixels.shape[1])
    assert picture.getpixel((bright[1], bright[0])) > picture.getpixel((dark[1], dark[0]))


def test_multi_frame_instances_are_refused_with_the_reason() -> None:
    with pytest.raises(BadRequest, match="frames"):
        render(sample("emri_small.dcm"), "image/png")


def test_instances_without_pixels_are_refused() -> None:
    with pytest.raises(BadRequest, match="no pixel data"):
        render(sample("rtplan.dcm"), "image/png")


@pytest.mark.parametrize(("accept", "chosen"), [
    (None, "image/jpeg"), ("image/png", "image/png"), ("image/jpeg", "image/jpeg"),
    ("*/*", "image/jpeg"), ("image/*", "image/jpeg"),
    ("image/jpeg;q=0.5, image/png", "image/png"), ("text/html, image/png;q=0.1", "image/png"),
])
def test_accept_negotiation(accept: str | None, chosen: str) -> None:
    assert rendered_type(accept) == chosen


def test_an_accept_of_neither_is_406() -> None:
    with pytest.raises(NotAcceptable, match="image/jpeg or image/png"):
        rendered_type("image/gif, image/png;q=0")
