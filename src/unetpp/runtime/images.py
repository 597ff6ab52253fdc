"""Reading images and masks of any common kind into numpy as the instrument wrote them (dtype, every
channel), with errors that name the file. Display alone stretches them to 8 bits (`display_rgb8`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from unetpp.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class ImageReadError(UserError):
    """A file that is not a readable image: corrupt, truncated, or of an unsupported mode."""


def read_array(path: Path) -> np.ndarray:
    """The pixels of `path` as (H, W, C) in the file's own dtype (`decode_image`)."""
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    return decode_image(path.read_bytes(), str(path))


MAX_CHANNELS = 16  # more than this on the smallest axis is a volume or a time series, not a 2-D image
DTYPES = (np.uint8, np.uint16, np.int16, np.uint32, np.int32, np.float32)


def decode_image(data: bytes, name: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """Image bytes (files and HTTP bodies share it) to (H, W, C) with the values and channels as stored.

    Nothing is quantized or dropped but what the file declares as transparency: an alpha channel
    (PNG's RGBA/LA, TIFF's ExtraSamples 1 or 2) is removed; every other channel is data (a 4-channel
    microscopy TIFF keeps 4). TIFFs stored channel-first (C, H, W), as microscopes write them, are
    moved to channels-last. `name` goes into errors; `max_pixels` refuses larger images from their
    header, before their pixels are decoded.
    """
    try:
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            arr = _tiff(data, name, max_pixels)
        else:
            with Image.open(io.BytesIO(data)) as img:
                _check_pixels(name, img.size[::-1], max_pixels)
                img.load()
                arr = _without_alpha(np.asarray(_plain(img)), img.mode)
    except ImageReadError:
        raise
    except Exception as err:  # Pillow and tifffile raise many types for bad bytes
        raise ImageReadError(f"{name}: not a readable image ({type(err).__name__}: {err})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] > MAX_CHANNELS:
        raise UnsupportedImage(
            f"{name}: expected a 2-D image with 1 to {MAX_CHANNELS} channels; got an array of shape {arr.shape}"
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype not in DTYPES or (arr.dtype.kind == "f" and not np.isfinite(arr).all()):
        raise UnsupportedImage(f"{name}: expected 8-, 16- or 32-bit integer or finite float pixels; got {arr.dtype}")
    return arr


def _tiff(data: bytes, name: str, max_pixels: int | None) -> np.ndarray:
    """A TIFF's first image as (H, W) or (H, W, C), declared alpha dropped; its size checked from the header."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        series = tif.series[0]
        first = len(series.shape) == 3 and series.shape[0] <= MAX_CHANNELS and series.shape[0] < min(series.shape[1:])
        _check_pixels(name, series.shape[1:] if first else series.shape[:2], max_pixels)
        arr = series.asarray()
        alpha = any(int(s) in (1, 2) for s in (tif.pages[0].extrasamples or ()))
    if first:
        arr = np.moveaxis(arr, 0, -1)  # stored channel-first (C, H, W)
    return arr[..., :-1] if alpha and arr.ndim == 3 else arr


def _without_alpha(arr: np.ndarray, mode: str) -> np.ndarray:
    """Pillow's RGBA/LA/PA: the colour channels alone (alpha in these formats is transparency, not data)."""
    return arr[..., :-1] if mode in ("RGBA", "LA", "PA", "La", "RGBa") and arr.ndim == 3 else arr


class ImageTooLarge(ImageReadError):
    """An image over the configured pixel limit."""


class UnsupportedImage(ImageReadError):
    """A readable image of a kind the model cannot take (volumes, complex or non-finite pixels)."""


def _plain(img: Image.Image) -> Image.Image:
    """Palette and CMYK images as RGB(A); 32-bit integer gray as 16-bit; other modes as stored."""
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "CMYK":
        return img.convert("RGB")
    if img.mode in ("I", "I;16B"):
        return img.convert("I;16")
    return img


def _check_pixels(name: str, shape: tuple[int, ...], max_pixels: int | None) -> None:
    h, w = int(shape[0]), int(shape[1])
    if max_pixels is not None and h * w > max_pixels:
        raise ImageTooLarge(f"{name}: {w}x{h} = {h * w} pixels is over the limit of {max_pixels}")


BIT_DEPTHS = (8, 10, 12, 14, 16)


def bit_depth(arr: np.ndarray) -> int:
    """The smallest common bit depth that holds the image's maximum (a 12-bit camera's 0..4095 is 12)."""
    if arr.dtype.kind == "f":
        return 32
    top = int(arr.max()) if arr.size else 0
    return next((bits for bits in BIT_DEPTHS if top < 2**bits), int(np.iinfo(arr.dtype).bits))


def display_rgb8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 for overlays and plots only, never fed to a model: the first three channels (one or
    two: the first as gray); 8-bit as stored, any other dtype stretched per channel between its own 0.5th
    and 99.5th percentiles."""
    shown = image[..., :3] if image.shape[-1] >= 3 else image[..., :1]
    if shown.dtype != np.uint8:
        lo, hi = np.percentile(shown.reshape(-1, shown.shape[-1]), (0.5, 99.5), axis=0)
        scaled = (shown.astype(np.float32) - lo) / np.maximum(hi - lo, 1e-6)
        shown = np.clip(scaled * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(shown, 3, axis=-1) if shown.shape[-1] == 1 else shown)
