"""Decoding uploaded images into clean RGB pictures.

Everything a phone, a scanner or an editor can hand us is normalised here once: EXIF rotation,
transparency, CMYK, 16-bit and palette images. Limits are checked before pixels are decoded so a
decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipelines.common.errors import InputTooLargeError, InvalidInputError

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 16
# Transparent pixels become white: a neutral backdrop the video model treats as empty studio space.
FLATTEN_COLOUR = (255, 255, 255)
# The only decoders Pillow may run on an upload. Everything else (EPS and PostScript, which hand the file to
# Ghostscript; PSD, ICO, SGI, PCX, the scientific and legacy formats) is refused before any decoder runs.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
ALLOWED_FORMAT_NAMES = "PNG, JPEG, WebP, BMP, TIFF or GIF (its first frame)"


def decode_image(
    data: bytes,
    *,
    field: str = "image",
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Return the upload as an upright 8-bit RGB image, or raise an error that says what is wrong."""
    if not data:
        raise InvalidInputError("the uploaded image is empty (0 bytes)", field=field)
    if len(data) > max_bytes:
        raise InputTooLargeError(
            f"the upload is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB", field=field
        )
    try:
        with warnings.catch_warnings():
            # PIL warns (rather than raises) between 1x and 2x its own limit; ours is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise InputTooLargeError(
                    f"the image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
                    f"the limit is {max_pixels / 1e6:.0f} megapixels",
                    field=field,
                )
            image.load()
    except InputTooLargeError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(
            f"the image declares too many pixels; the limit is {max_pixels / 1e6:.0f} megapixels", field=field
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidInputError(
            f"the upload is not an image in an accepted format; send {ALLOWED_FORMAT_NAMES}", field=field
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(
            "the image could not be decoded: the file is truncated or corrupt", field=field
        ) from exc
    if min(width, height) < MIN_SIDE:
        raise InvalidInputError(
            f"the image is {width}x{height} pixels; each side must be at least {MIN_SIDE} pixels", field=field
        )
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode to 8-bit RGB, flattening transparency onto white."""
    if getattr(image, "is_animated", False):
        image.seek(0)
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _high_depth_to_8bit(image)
        mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA") or mode == "RGBa":
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, FLATTEN_COLOUR)
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _high_depth_to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit or float greyscale to 0-255 by the mode's nominal range, not the image's own range."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scaled = np.clip(values, 0.0, 1.0) * 255.0 if values.max(initial=0.0) <= 1.0 else np.clip(values, 0, 255)
    else:
        scaled = np.clip(values, 0, 65535) / 257.0
    return Image.fromarray(np.round(scaled).astype(np.uint8))


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
