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


MAX_CHANNELS = 16  # more channels than this in a 2-D image are refused (a stack mislabelled, most likely)
DTYPES = (np.uint8, np.uint16, np.int16, np.uint32, np.int32, np.float32)


def decode_image(data: bytes, name: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """Image bytes (files and HTTP bodies share it) to (H, W, C) with the values and channels as stored.

    Nothing is quantized or dropped but what the file declares as transparency: an alpha channel
    (PNG's RGBA/LA, a palette's transparency, TIFF ExtraSamples 1 or 2) is removed; every other channel
    is data (a 4-channel microscopy TIFF keeps 4). TIFF axes are read from the file (`_tiff`). `name`
    goes into errors; `max_pixels` refuses larger images from their header, before their pixels are
    decoded.
    """
    try:
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            arr = _tiff(data, name, max_pixels)
        else:
            _refuse_deep_colour_png(data, name)
            with Image.open(io.BytesIO(data)) as img:
                _check_pixels(name, img.size[::-1], max_pixels)
                img.load()
                plain = _plain(img)
                arr = _without_alpha(np.asarray(plain), plain.mode)
    except ImageReadError:
        raise
    except Exception as err:  # Pillow and tifffile raise many types for bad bytes
        raise ImageReadError(f"{name}: not a readable image ({type(err).__name__}: {err})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype not in DTYPES or (arr.dtype.kind == "f" and not np.isfinite(arr).all()):
        raise UnsupportedImage(f"{name}: expected 8-, 16- or 32-bit integer or finite float pixels; got {arr.dtype}")
    return arr


def _tiff(data: bytes, name: str, max_pixels: int | None) -> np.ndarray:
    """A TIFF's first series as (H, W, C), by the axes the file declares (tifffile's `series.axes`).

    `YX` is gray, `YXS` channels-last; `SYX` (planar samples) and `CYX` (channels, as ImageJ and
    microscopes write them) are moved to channels-last; a leading `Q`/`I` (pages with no declared
    meaning, as a plain multi-page TIFF) is read as channels when there are at most `MAX_CHANNELS`; `Z`
    or `T` (a volume, a time series) and anything else are refused. Size and channels are checked from
    the header, before decoding; declared alpha samples are dropped.
    """
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        series = tif.series[0]
        axes, shape = series.axes, tuple(int(n) for n in series.shape)
        if axes not in ("YX", "YXS") and not (len(axes) == 3 and axes[0] in "SCQI" and axes.endswith("YX")):
            raise UnsupportedImage(
                f"{name}: a TIFF with axes {axes} {shape}; expected a 2-D image (YX, YXS, or channels first: CYX)"
            )
        channels = shape[axes.index("S")] if "S" in axes else (shape[0] if len(axes) == 3 else 1)
        _check_pixels(name, (shape[axes.index("Y")], shape[axes.index("X")]), max_pixels)
        if channels > MAX_CHANNELS:
            raise UnsupportedImage(
                f"{name}: {channels} channels ({axes} {shape}); expected a 2-D image with 1 to {MAX_CHANNELS} channels"
            )
        arr = series.asarray()
        declared = [int(s) for s in (tif.pages[0].extrasamples or ())]
    if len(axes) == 3 and axes[0] != "Y":
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and declared:  # ExtraSamples describe the last len(declared) samples
        first = arr.shape[-1] - len(declared)
        arr = arr[..., [c for c in range(arr.shape[-1]) if c < first or declared[c - first] not in (1, 2)]]
    return arr


def _refuse_deep_colour_png(data: bytes, name: str) -> None:
    """Pillow reads a 16-bit PNG with colour or alpha (IHDR colour types 2, 4, 6) at 8 bits: refuse it rather
    than lose its values silently (16-bit gray, type 0, is read in full)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data[24] == 16 and data[25] in (2, 4, 6):
        raise UnsupportedImage(
            f"{name}: a 16-bit PNG with colour or alpha (Pillow would read it at 8 bits); expected it as a 16-bit "
            "TIFF (e.g. tifffile.imwrite), which keeps every value"
        )


def _without_alpha(arr: np.ndarray, mode: str) -> np.ndarray:
    """RGBA / LA (as Pillow reads them): the colour channels alone (alpha in these formats is transparency)."""
    return arr[..., :-1] if mode in ("RGBA", "LA", "La", "RGBa") and arr.ndim == 3 else arr


class ImageTooLarge(ImageReadError):
    """An image over the configured pixel limit."""


class UnsupportedImage(ImageReadError):
    """A readable image of a kind the model cannot take (volumes, complex or non-finite pixels)."""


def _plain(img: Image.Image) -> Image.Image:
    """Palette and CMYK images as RGB(A); 32-bit integer gray as 16-bit; other modes as stored."""
    if img.mode in ("P", "PA"):
        return img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
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
    """(H, W, 3) uint8 for overlays and plots only, never fed to a model: the first three channels (one:
    gray; two: red and green); 8-bit as stored, any other dtype stretched per channel between its own
    0.5th and 99.5th percentiles."""
    shown = image[..., :3]
    if shown.dtype != np.uint8:
        lo, hi = np.percentile(shown.reshape(-1, shown.shape[-1]), (0.5, 99.5), axis=0)
        scaled = (shown.astype(np.float32) - lo) / np.maximum(hi - lo, 1e-6)
        shown = np.clip(scaled * 255 + 0.5, 0, 255).astype(np.uint8)
    if shown.shape[-1] == 1:
        return np.ascontiguousarray(np.repeat(shown, 3, axis=-1))
    return np.dstack([shown, np.zeros((*shown.shape[:2], 3 - shown.shape[-1]), np.uint8)])
