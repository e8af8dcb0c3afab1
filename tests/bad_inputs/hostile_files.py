"""The corpus's files and hostile text, made in code at test time (nothing binary is committed).

``FILES`` maps the names ``cases.yaml`` uses to functions returning ``(bytes, filename, content type)``;
``TEXTS`` maps names to the raw bytes of a text part or header (which may be invalid UTF-8 on purpose).
Every builder is deterministic and cheap (milliseconds); results are cached for the session.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from tests.images import encode, gradient_image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
File = tuple[bytes, str, str]


def _picture(width: int = 64, height: int = 48, mode: str = "RGB") -> Image.Image:
    return gradient_image(width, height, mode)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming ``width`` x ``height`` pixels, followed by one tiny compressed row:
    the classic decompression bomb shape (a few hundred bytes that would decode to gigabytes)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = zlib.compress(b"\x00" * 4096, 9)
    return PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is rewritten to claim ``width`` x ``height``."""
    data = bytearray(encode(_picture(16, 16), "JPEG"))
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def _gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(_picture(16, 16), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)  # the logical screen size
    at = data.index(b"\x2c")  # the image descriptor
    struct.pack_into("<HH", data, at + 5, width, height)
    return bytes(data)


def _png_with_text_bomb() -> bytes:
    """A valid PNG carrying a zTXt chunk that inflates to 8 MB of zeros (Pillow caps text chunks at 1 MB)."""
    png = encode(_picture(), "PNG")
    bomb = zlib.compress(b"\x00" * (8 * 1024 * 1024), 9)
    chunk = _png_chunk(b"zTXt", b"Comment\x00\x00" + bomb)
    return png[:33] + chunk + png[33:]  # right after IHDR (8 signature + 25 IHDR bytes)


def _png_bad_crc() -> bytes:
    data = bytearray(encode(_picture(), "PNG"))
    at = data.index(b"IDAT")
    data[at + 6] ^= 0xFF  # a byte of compressed pixels: the chunk's CRC no longer matches
    return bytes(data)


def _zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.sh", "#!/bin/sh\necho owned\n")
    return buffer.getvalue()


def _jpeg_with_exif(exif: bytes) -> bytes:
    """A small JPEG with an APP1 segment holding ``exif`` (already prefixed with ``Exif\\0\\0``)."""
    data = encode(_picture(), "JPEG")
    segment = b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
    return data[:2] + segment + data[2:]  # right after SOI


def _huge_exif() -> bytes:
    """EXIF near the 64 KB a JPEG segment can hold: an ImageDescription of 60,000 characters."""
    image = _picture()
    exif = image.getexif()
    exif[0x010E] = "x" * 60_000  # ImageDescription
    exif[0x0112] = 6  # Orientation: rotate 90°
    return encode(image, "JPEG", exif=exif.tobytes())


def _animated(fmt: str) -> bytes:
    frames = [_picture(64, 48).rotate(angle) for angle in (0, 90, 180)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def _png_16bit() -> bytes:
    ramp = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")  # uint16 -> mode I;16


def _noise_png(megabytes: float) -> bytes:
    """Random pixels do not compress: a PNG of about ``megabytes``, to pass the upload limit."""
    side = int((megabytes * 1_000_000 / 3) ** 0.5) + 1
    pixels = np.random.default_rng(7).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG", compress_level=1)


def _eps() -> bytes:
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 48\n%%EndComments\n"
        b"newpath 0 0 moveto 64 48 lineto stroke\n(%pipe%id) (r) file\nshowpage\n%%EOF\n"
    )


def _svg() -> bytes:
    return (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48">'
        b'<image href="file:///etc/passwd"/><script>alert(1)</script><rect width="64" height="48"/></svg>\n'
    )


def _tiny_mp4(**options) -> bytes:
    import tempfile
    from pathlib import Path

    from tests.edit_videos import encode_video

    with tempfile.TemporaryDirectory() as folder:
        path = encode_video(Path(folder) / "clip.mp4", **options)
        return path.read_bytes()


def _png(image: Image.Image) -> bytes:
    return encode(image, "PNG")


# name -> () -> (bytes, filename, content type)
FILE_BUILDERS: dict[str, Callable[[], File]] = {
    # well-formed, for the cases whose fault is elsewhere
    "valid_png": lambda: (_png(_picture()), "photo.png", "image/png"),
    "valid_jpeg": lambda: (encode(_picture(), "JPEG"), "photo.jpg", "image/jpeg"),
    "valid_mp4": lambda: (_tiny_mp4(width=64, height=48, frames=8, fps=8), "clip.mp4", "video/mp4"),
    # broken
    "zero_bytes": lambda: (b"", "photo.png", "image/png"),
    "text_as_file": lambda: (b"this is a note, not a picture\n", "photo.png", "image/png"),
    "truncated_png": lambda: (_png(_picture())[:200], "photo.png", "image/png"),
    "truncated_jpeg": lambda: (encode(_picture(), "JPEG")[:300], "photo.jpg", "image/jpeg"),
    "png_signature_only": lambda: (PNG_SIGNATURE, "photo.png", "image/png"),
    "png_bad_crc": lambda: (_png_bad_crc(), "photo.png", "image/png"),
    "tiny_png_8x8": lambda: (_png(_picture(8, 8)), "photo.png", "image/png"),
    "one_pixel_wide_png": lambda: (_png(_picture(1, 400)), "photo.png", "image/png"),
    "exif_garbage_jpeg": lambda: (
        _jpeg_with_exif(b"Exif\x00\x00" + b"\xde\xad\xbe\xef" * 64),
        "photo.jpg",
        "image/jpeg",
    ),
    "exif_loop_jpeg": lambda: (
        # a TIFF header whose first IFD offset points back at the header itself
        _jpeg_with_exif(b"Exif\x00\x00" + b"II*\x00\x00\x00\x00\x00" + b"\x00" * 32),
        "photo.jpg",
        "image/jpeg",
    ),
    # decompression bombs: tiny files declaring a huge picture
    "bomb_png": lambda: (_png_declaring(100_000, 100_000), "bomb.png", "image/png"),
    "bomb_png_just_over": lambda: (_png_declaring(8000, 5001), "bomb.png", "image/png"),  # 40.008 MP
    "bomb_jpeg": lambda: (_jpeg_declaring(65_000, 65_000), "bomb.jpg", "image/jpeg"),
    "bomb_gif": lambda: (_gif_declaring(65_535, 65_535), "bomb.gif", "image/gif"),
    "png_text_bomb": lambda: (_png_with_text_bomb(), "photo.png", "image/png"),
    # polyglots: a valid picture that is also something else (the input is re-encoded, so the rest is dropped)
    "png_zip_polyglot": lambda: (_png(_picture()) + _zip_archive(), "photo.png", "image/png"),
    "jpeg_html_polyglot": lambda: (
        encode(_picture(), "JPEG") + b"<html><script>alert(document.cookie)</script></html>",
        "photo.jpg",
        "image/jpeg",
    ),
    "html_with_png_name": lambda: (b"<html><body><img src=x onerror=alert(1)></body></html>", "photo.png", "image/png"),
    # formats outside the decoder allow-list
    "eps": lambda: (_eps(), "photo.eps", "application/postscript"),
    "postscript_named_png": lambda: (_eps(), "photo.png", "image/png"),
    "svg": lambda: (_svg(), "photo.svg", "image/svg+xml"),
    "ico": lambda: (encode(_picture(32, 32), "ICO"), "photo.ico", "image/x-icon"),
    "ppm": lambda: (encode(_picture(), "PPM"), "photo.ppm", "image/x-portable-pixmap"),
    "tga": lambda: (encode(_picture(), "TGA"), "photo.tga", "image/x-tga"),
    "pcx": lambda: (encode(_picture(), "PCX"), "photo.pcx", "image/x-pcx"),
    # allowed, unusual: accepted and normalised
    "animated_gif": lambda: (_animated("GIF"), "moving.gif", "image/gif"),
    "animated_webp": lambda: (_animated("WEBP"), "moving.webp", "image/webp"),
    "png_16bit": lambda: (_png_16bit(), "deep.png", "image/png"),
    "cmyk_jpeg": lambda: (encode(_picture(mode="CMYK"), "JPEG"), "print.jpg", "image/jpeg"),
    "huge_exif_jpeg": lambda: (_huge_exif(), "phone.jpg", "image/jpeg"),
    "bmp": lambda: (encode(_picture(), "BMP"), "photo.bmp", "image/bmp"),
    "tiff": lambda: (encode(_picture(), "TIFF"), "photo.tiff", "image/tiff"),
    "palette_png_transparent": lambda: (
        encode(_picture().convert("P"), "PNG", transparency=0),
        "photo.png",
        "image/png",
    ),
    "wrong_extension_jpeg": lambda: (encode(_picture(), "JPEG"), "photo.exe", "application/octet-stream"),
    # too large: over the harness's 1 MB upload limit, within the body limit
    "noise_png_1_5mb": lambda: (_noise_png(1.5), "noise.png", "image/png"),
    # videos
    "truncated_mp4": lambda: (_tiny_mp4(width=64, height=48, frames=8, fps=8)[:600], "clip.mp4", "video/mp4"),
    "png_as_video": lambda: (_png(_picture()), "clip.mp4", "video/mp4"),
    "long_mp4": lambda: (_tiny_mp4(width=32, height=32, frames=24, fps=2), "long.mp4", "video/mp4"),  # 12 s
}


# name -> the raw bytes of a text value
TEXTS: dict[str, bytes] = {
    "nul": b"a calm\x00 lake",
    "lone_surrogate": b"a calm \xed\xa0\x80 lake",  # U+D800 as CESU/WTF-8: not valid UTF-8
    "invalid_utf8": b"caf\xe9 au lait \xff\xfe",  # latin-1 bytes
    "overlong_utf8": b"\xc0\xaf etc",  # an over-long '/'
    "chars_10001": ("a" * 10_001).encode(),
    "chars_2001": ("a" * 2_001).encode(),
    "control_chars": b"a calm\x07\x1b[31m lake\x08\x7f",
    "rtl_override": "a calm lake \u202egnp.exe\u202c".encode(),
    "zero_width": "\u200b\u200b\u200b".encode(),
    "whitespace_only": b"   \t  ",
    "emoji_4byte": ("\U0001f30a" * 2_000).encode(),  # 2,000 characters, 8,000 bytes: within every limit
    "non_ascii_header": "schl\u00fcssel-\u00e9t\u00e9".encode(),
    "key_256": ("k" * 256).encode(),
    "key_255": ("k" * 255).encode(),
    "bearer_garbage": b"Bearer \x00\x01garbage;;==",
    "nested_json_4000": b"[" * 4000 + b"]" * 4000,  # 8,000 characters: within the `prompts` limit
    # whole bodies
    "json_latin1": b'{"prompt": "caf\xe9"}',
    "multipart_latin1_name": b'--b\r\nContent-Disposition: form-data; name="pr\xffompt"\r\n\r\nx\r\n--b--\r\n',
}


@functools.cache
def build_file(name: str) -> File:
    if name not in FILE_BUILDERS:
        raise KeyError(f"cases.yaml names an unknown hostile file {name!r}; define it in FILE_BUILDERS")
    return FILE_BUILDERS[name]()


def text_bytes(name: str) -> bytes:
    if name not in TEXTS:
        raise KeyError(f"cases.yaml names an unknown hostile text {name!r}; define it in TEXTS")
    return TEXTS[name]
