"""Reading images and masks of any common kind into numpy, with errors that name the file."""

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
    """The pixels of `path` as (H, W) or (H, W, C), in the file's own dtype (uint8 or uint16).

    PNG/JPEG go through Pillow with truncated files refused; TIFF through tifffile, which keeps
    16-bit and multi-channel data as stored.
    """
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    return decode_image(path.read_bytes(), str(path))


def decode_image(data: bytes, name: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """`read_array` for bytes in memory (files and HTTP bodies share it); `name` goes into errors.

    `max_pixels` refuses larger images from their header, before their pixels are decoded.
    """
    try:
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                _check_pixels(name, tif.pages[0].shape[:2], max_pixels)
                arr = tif.asarray()
            if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
                arr = np.moveaxis(arr, 0, -1)  # TIFF stored channels-first
        else:
            with Image.open(io.BytesIO(data)) as img:
                _check_pixels(name, img.size[::-1], max_pixels)
                img.load()
                arr = np.asarray(_plain(img))
    except ImageReadError:
        raise
    except Exception as err:  # Pillow and tifffile raise many types for bad bytes
        raise ImageReadError(f"{name}: not a readable image ({type(err).__name__}: {err})") from None
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        raise UnsupportedImage(f"{name}: expected a 2-D gray, RGB or RGBA image; got an array of shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16, np.bool_, np.int32, np.uint32):
        raise UnsupportedImage(f"{name}: expected 8- or 16-bit pixels; got {arr.dtype}")
    return arr


class ImageTooLarge(ImageReadError):
    """An image over the configured pixel limit."""


class UnsupportedImage(ImageReadError):
    """A readable image of a kind the model cannot take (gray+alpha, float pixels, volumes)."""


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
    top = int(arr.max()) if arr.size else 0
    return next((bits for bits in BIT_DEPTHS if top < 2**bits), int(np.iinfo(arr.dtype).bits))


def to_rgb8(arr: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 image from gray/RGB/RGBA at 8 to 16 bits (alpha dropped).

    Deeper images are scaled by their own bit depth (`bit_depth`), not by the container's 65535:
    12-bit data keep 256 grey levels instead of 16, and an 8-bit image stored as 16 bits (x257) comes
    back exactly. The per-image standardisation that follows does not see the linear scale.
    """
    if arr.ndim == 3:
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        top = 2 ** bit_depth(arr) - 1
        arr = (arr.astype(np.float32) * (255.0 / top)).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])
