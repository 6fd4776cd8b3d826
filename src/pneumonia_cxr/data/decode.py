"""One image decoder for the whole project: any X-ray file -> an 8-bit grayscale array of a fixed size.

Invariant: every image that enters training, evaluation, `predict` or the review app passes through `decode_gray`,
so the same X-ray gives the same pixels whether it arrives as an 8-bit JPEG, a 16-bit PNG (as DICOM exports do),
RGB(A), palette, or rotated by its EXIF orientation. A file that is not a regular file (a FIFO, a device, a folder),
not an image, or not one of a usable size raises `ImageDecodeError` naming the file and the rule it breaks, before
anything is read from it; the data layer counts it as a logged skip, `predict` prints an error line for it and goes on
with the rest. Memory is bounded: the size rule and the decode budget are checked on the header, before any pixel is
decoded (Pillow's `Image.open` reads only the header).
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

RESIZE_MODES = ("squash", "letterbox")
MIN_SIDE = 64  # px: below this no chest can be read (icons, tracking pixels, thumbnails)
MAX_PIXELS = 100_000_000  # 10,000 x 10,000: larger than any radiograph of the release (at most ~3,000 px a side)
HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # more than 8 bits per pixel
# The most memory one decode may take: the decoded image, the copies made on the way to 8-bit gray, and the result.
# 1 GiB holds the largest 8-bit gray or RGB image the pixel rule admits (10,000 x 10,000: 286 and 858 MiB), and a
# 16-bit one up to about 8,000 x 8,000 (DICOM exports are ~3,000 px a side); a 10,000 x 10,000 16-bit one needs 1.4 GiB.
MAX_DECODE_BYTES = 2**30
# Bytes a pixel takes in Pillow's memory by mode (RGB is stored in 4 bytes); modes not listed take 4.
STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


class ImageDecodeError(ValueError):
    """An image file could not be decoded, or breaks the size rule; the message names the file."""


def check_size(width: int, height: int, what) -> None:
    """The size rule: at least `MIN_SIDE` px a side and at most `MAX_PIXELS` pixels."""
    if min(width, height) < MIN_SIDE:
        raise ImageDecodeError(f"{what}: image too small ({width}x{height}; at least {MIN_SIDE} px a side)")
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(f"{what}: image too large ({width}x{height}; at most {MAX_PIXELS:,} pixels)")


def decode_bytes(width: int, height: int, mode: str) -> int:
    """The memory `decode_gray` needs for an image of this header: the decoded pixels, a rotated copy (EXIF
    orientation), and the 8-bit result; for more than 8 bits a pixel also the array handed over by Pillow and the
    float64 working copy `high_bit_to_8bit` scales in place."""
    stored = STORED_BYTES.get(mode, 4)
    per_pixel = 2 * stored + 1 + (stored + 8 if mode in HIGH_BIT_MODES else 0)
    return width * height * per_pixel


def check_decode_budget(width: int, height: int, mode: str, what) -> None:
    """The decode budget: `decode_bytes` at most `MAX_DECODE_BYTES` (a small file can claim a huge 16-bit image)."""
    need = decode_bytes(width, height, mode)
    if need > MAX_DECODE_BYTES:
        raise ImageDecodeError(
            f"{what}: image too large to decode ({width}x{height} {mode} needs {need / 2**20:,.0f} MiB; "
            f"at most {MAX_DECODE_BYTES / 2**20:,.0f} MiB)"
        )


def _regular_file(path) -> None:
    """Only a regular file is opened: reading a FIFO named x.jpeg would wait for a writer for ever."""
    if isinstance(path, str | os.PathLike):
        mode = os.stat(path).st_mode  # FileNotFoundError for a missing file, as before
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise ImageDecodeError(f"{path}: not a regular file ({kind}); not opened")


def _open(path):
    """Image.open of a regular file, with Pillow's decompression-bomb guard turned into the project's error."""
    _regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size rule decides instead
            return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{path}: image too large ({exc})") from exc
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{path}: cannot decode image ({exc})") from exc


def read_header(path) -> tuple[int, int, str]:
    """Width, height and mode from the header, without decoding; ImageDecodeError for a file the decoder refuses."""
    with _open(path) as img:
        check_size(img.width, img.height, path)
        check_decode_budget(img.width, img.height, img.mode, path)
        return img.width, img.height, img.mode


def high_bit_to_8bit(values: np.ndarray) -> np.ndarray:
    """A grayscale image of more than 8 bits -> uint8, scaled by its bit depth: the smallest of 8, 10, 12, 14 or 16
    bits (or more) that holds its largest value. A 16-bit copy of an 8-bit image (value x 257) comes back exactly;
    12-bit data stored in 16-bit words fill the range instead of coming out black."""
    values = np.array(values, dtype=np.float64)  # one working copy, scaled in place (the decode budget counts it)
    np.clip(values, 0, None, out=values)
    top = float(values.max()) if values.size else 0.0
    bits = next((b for b in (8, 10, 12, 14, 16) if top < 2**b), int(np.ceil(np.log2(top + 1))))
    values *= 255.0 / (2**bits - 1)
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def decode_gray(path, size: int | None = None) -> Image.Image:
    """Decode one file to an 8-bit grayscale PIL image, upright (EXIF orientation applied).

    Args:
        path: the image file.
        size: the side it will be resized to; a large JPEG is then decoded at a reduced scale (DCT scaling).

    Returns:
        A mode "L" image.

    Raises:
        ImageDecodeError: not a regular file, not an image, truncated, breaking the size rule (`check_size`) or the
            decode budget (`check_decode_budget`); the message names `path`.
        FileNotFoundError: `path` does not exist.
    """
    with _open(path) as img:
        check_size(img.width, img.height, path)
        check_decode_budget(img.width, img.height, img.mode, path)
        try:
            if size and img.format == "JPEG":
                img.draft("L", (size, size))  # JPEG DCT scaling: big originals decode at reduced size
            img = ImageOps.exif_transpose(img)
            if img.mode in HIGH_BIT_MODES:
                return Image.fromarray(high_bit_to_8bit(np.asarray(img)), mode="L")
            return img.convert("L")  # RGB(A), palette, 1-bit, LA: luminance, alpha dropped
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageDecodeError(f"{path}: cannot decode image ({exc})") from exc


def to_square(gray: Image.Image, size: int, resize: str = "squash") -> np.ndarray:
    """A grayscale image -> (size, size) uint8: squash stretches it, letterbox keeps its aspect and pads black."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, not {resize!r}")
    if resize == "letterbox":
        gray = ImageOps.pad(gray, (size, size), method=Image.Resampling.BILINEAR, color=0)
    else:
        gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def load_image(path: str | Path, size: int, resize: str = "squash") -> np.ndarray:
    """Decode one X-ray to a (size, size) uint8 grayscale array: the one preprocessing used everywhere.

    squash (default) stretches the whole image to a square, as the public 224 px release already is; letterbox keeps
    the aspect ratio and pads with black.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, not {resize!r}")
    return to_square(decode_gray(path, size), size, resize)
