import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pipelines.common.errors import InputTooLargeError, InvalidInputError
from pipelines.common.images import decode_image
from tests.images import encode, gradient_image


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` but carries almost no data: a bomb's shape."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_plain_rgb_round_trip():
    image = gradient_image(64, 48)
    decoded = decode_image(encode(image))
    assert decoded.mode == "RGB" and decoded.size == (64, 48)
    assert np.array_equal(np.asarray(decoded), np.asarray(image))


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (encode(gradient_image(64, 48))[:200], "truncated"),
        (encode(gradient_image(1, 1)), "at least"),
        (encode(gradient_image(200, 8)), "at least"),
    ],
    ids=["empty", "text", "truncated-png", "1x1", "thin"],
)
def test_bad_uploads_are_refused_with_a_reason(data, needle):
    with pytest.raises(InvalidInputError) as raised:
        decode_image(data)
    assert needle in raised.value.message
    assert raised.value.field == "image"


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(InputTooLargeError) as raised:
        decode_image(_png_header_only(9000, 9000))
    assert "81.0 megapixels" in raised.value.message


def test_upload_byte_limit():
    with pytest.raises(InputTooLargeError):
        decode_image(encode(gradient_image(64, 64)), max_bytes=100)


def test_exif_orientation_is_applied():
    image = gradient_image(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (40, 80)


def test_alpha_is_flattened_onto_white():
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (8, 8, 24, 24))
    decoded = np.asarray(decode_image(encode(rgba)))
    assert tuple(decoded[0, 0]) == (255, 255, 255)
    assert tuple(decoded[16, 16]) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["CMYK", "P", "L", "LA", "I;16"])
def test_other_modes_become_rgb(mode):
    source = gradient_image(48, 32)
    if mode == "I;16":
        grey = np.asarray(source.convert("L"), dtype=np.uint16) * 257
        image, fmt = Image.fromarray(grey.astype("<u2")), "PNG"
        assert image.mode.startswith("I;16")
    else:
        image, fmt = source.convert(mode), "TIFF" if mode == "CMYK" else "PNG"
    decoded = decode_image(encode(image, fmt))
    assert decoded.mode == "RGB" and decoded.size == (48, 32)
    if mode == "I;16":  # 16-bit scaled to 8-bit by range, not clipped to white
        expected = np.asarray(source.convert("L"))
        assert np.abs(np.asarray(decoded)[..., 0].astype(int) - expected).max() <= 1


def test_palette_with_transparency_is_flattened():
    image = Image.new("P", (20, 20), 0)
    image.putpalette([10, 20, 30] + [200, 100, 50] * 255)
    image.info["transparency"] = 0
    decoded = decode_image(encode(image, transparency=0))
    assert tuple(np.asarray(decoded)[0, 0]) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["EPS", "ICO", "PPM", "TGA", "PCX", "SGI"])
def test_decoders_outside_the_allow_list_never_run(fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format=fmt)
    with pytest.raises(InvalidInputError, match="PNG, JPEG, WebP, BMP, TIFF or GIF"):
        decode_image(buffer.getvalue())
