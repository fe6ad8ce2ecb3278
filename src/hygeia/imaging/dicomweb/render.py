"""WADO-RS ``/rendered``: one single-frame instance as a PNG or JPEG picture.

The pixel data is decoded by pydicom (numpy), the modality LUT (rescale slope and
intercept) and the instance's own window (VOI LUT) are applied, MONOCHROME1 is
inverted, and the result is scaled to 8 bits for Pillow. Multi-frame instances are
refused (406 would hide the reason; 400 says it): ``/frames`` is not offered.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from hygeia.fhir.outcome import BadRequest, NotAcceptable

RENDERED_TYPES = ("image/jpeg", "image/png")
JPEG_QUALITY = 90


def rendered_type(accept: str | None) -> str:
    """The picture type to answer from an Accept header (JPEG unless PNG is preferred)."""
    if not accept:
        return "image/jpeg"
    ranked: list[tuple[float, int, str]] = []
    for position, entry in enumerate(accept.split(",")):
        media, *params = [piece.strip() for piece in entry.split(";")]
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranked.append((-quality, position, media.lower()))
    for negative, _, media in sorted(ranked):
        if negative >= 0:
            continue
        if media in RENDERED_TYPES:
            return media
        if media in ("*/*", "image/*"):
            return "image/jpeg"
    raise NotAcceptable("Rendered instances are served as image/jpeg or image/png; the Accept "
                        f"header asks for neither ({accept[:100]}).", expression="Accept")


def render(path: Path, media_type: str) -> bytes:
    """The picture of the instance stored at ``path``, as ``media_type`` bytes."""
    from pydicom import dcmread

    dataset = dcmread(path)
    if "PixelData" not in dataset:
        raise BadRequest("This instance has no pixel data to render.", expression="instance")
    frames = str(dataset.get("NumberOfFrames") or "1").strip()
    if frames != "1":
        raise BadRequest("Only single-frame instances are rendered; this one has "
                         f"{frames[:20]} frames.", expression="instance")
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # an encoding pydicom cannot decode here
        raise BadRequest(f"The pixel data cannot be decoded for rendering ({error}).",
                         expression="instance") from None
    try:
        image = _picture(dataset, pixels)
    except Exception as error:  # stored data the LUTs or Pillow cannot make a picture of
        raise BadRequest(f"This instance cannot be rendered ({error}).",
                         expression="instance") from None
    out = io.BytesIO()
    if media_type == "image/png":
        image.save(out, format="PNG")
    else:
        image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(
            out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _picture(dataset: Any, pixels: Any) -> Any:
    import numpy as np
    from PIL import Image
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("MONOCHROME"):
        values = apply_voi_lut(apply_modality_lut(pixels, dataset), dataset).astype(np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else values * 0.0
        if photometric == "MONOCHROME1":
            scaled = 255.0 - scaled
        return Image.fromarray(scaled.astype(np.uint8), mode="L")
    return _colour(dataset, pixels, photometric)


def _colour(dataset: Any, pixels: Any, photometric: str) -> Any:
    import numpy as np
    from PIL import Image
    from pydicom.pixels import convert_color_space

    array = np.asarray(pixels)
    if photometric.startswith("YBR"):
        array = convert_color_space(array, photometric, "RGB")
    elif photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut
        array = apply_color_lut(array, dataset)
    if array.dtype != np.uint8:
        peak = float(array.max()) or 1.0
        array = (array.astype(np.float64) / peak * 255.0).astype(np.uint8)
    return Image.fromarray(array, mode="RGB")
