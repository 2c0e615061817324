"""File bytes -> uint8 arrays: the one decode path every source and adapter shares.

# NOTE [ Decoder choice ]
Images are decoded with OpenCV (`cv2.imdecode`, libjpeg-turbo for JPEG) because it is the
fastest exact decoder available (about 0.53 ms per 400x350 JPEG against PIL's 0.79 here) and
because one decoder for everyone is what makes Keras and torch batches bit-identical. EXIF
orientation is *not* applied, as in Keras's `load_img` and torchvision's `ImageFolder` (both use
PIL without `exif_transpose`). Pixel values can differ in the lowest bits from PIL's decode of
the same JPEG. Masks are read with Pillow, which returns the palette *indices* of "P" images
(OpenCV would convert them to colours).
"""

from __future__ import annotations

import functools
import io
import os
import stat
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from xloader import storage
from xloader._geometry import aspect_crop_box
from xloader._image_header import Header, HeaderError, check_pixel_limit, jpeg_scan_offset
from xloader._reduced_decode import DownscaleTarget, reduced_flags
from xloader.errors import BadImageError

__all__ = [
    "COLOR_MODES",
    "INTERPOLATIONS",
    "aspect_crop_box",
    "check_interpolation",
    "decode_image",
    "decode_mask",
    "read_image",
    "read_mask",
    "resize_image",
    "resize_mask",
]

ColorMode = Literal["rgb", "rgba", "grayscale"]
COLOR_MODES: tuple[str, ...] = ("rgb", "rgba", "grayscale")

# "nearest" is not resized by OpenCV: see NOTE [ Nearest neighbour, as Pillow ]. Its entry names
# the OpenCV flag with the same pixel-centre rule, for users who pass these flags to their own code.
INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST_EXACT,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}

# Pillow filters that Keras's `load_img` accepts and OpenCV has no equivalent for.
_PILLOW_ONLY_FILTERS = {
    "box": "'area' averages the covered pixels as 'box' does when shrinking",
    "hamming": "'bilinear' or 'area' are the closest",
}

_IMREAD_FLAGS = {
    "rgb": cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION,
    "grayscale": cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION,
    "rgba": cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION,
}

# NOTE [ Pixel limit ]
# A decompression bomb is a small file that declares a huge image (a 50 KB PNG of 30,000 x
# 30,000 pixels takes 2.7 GB to decode; a 36-byte lossless WebP of 16383 x 16383, 1.8 GB). Before
# any decoder runs, the size the header declares is checked against a limit, the same default as
# Pillow's DecompressionBombError (2 x 89,478,485 pixels), so an image Keras's `load_img` would
# refuse is refused here too. The size comes from xloader's own header parsers for every format
# OpenCV decodes (NOTE [ Every format OpenCV decodes has its size read here ]), else from
# Pillow's lazy open. While a limit is set, a known format whose header does not give the size,
# and the formats in `_image_header.UNCHECKED_FORMATS`, are refused.
# Under a limit, OpenCV is given only the formats whose header xloader parsed, so a decoder a
# future OpenCV build adds cannot bypass the check; the others go to Pillow, which checked them.
# Sources take `max_pixels` (None: no limit) and pass it with every read, so worker processes
# apply the same limit as the main process.
DEFAULT_MAX_PIXELS = 2 * 89_478_485

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"


def _bad(path: str, reason: str) -> BadImageError:
    return BadImageError(f"cannot read {path}: {reason}.", path=path, reason=reason)


_FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def check_regular_file(path: str, mode: int | None = None) -> None:
    """Raise `BadImageError` unless `path` is a regular file, judged by `mode` (an `st_mode`) or
    else by `os.stat`, which follows links and raises `OSError` (`FileNotFoundError`). Never opens it."""
    mode = os.stat(path).st_mode if mode is None else mode
    if not stat.S_ISREG(mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise _bad(path, f"it is {kind}, not a regular file; only regular files are read")


def _open_nonblocking(path: str, flags: int) -> int:
    # A FIFO swapped in between the stat and the open must not block the open.
    return os.open(path, flags | os.O_NONBLOCK)


def read_bytes(path: str) -> bytes:
    """The file's bytes. Raises `BadImageError` if it is missing, unreadable, empty, or not a
    regular file (a directory, named pipe, device or socket, directly or through a symbolic
    link): its type is checked with `stat` before it is opened, so a FIFO never blocks a read
    and `/dev/zero` is never read.
    An fsspec URL is read through `xloader.storage` (NOTE [ Remote storage ])."""
    if storage.is_url(path):
        return storage.read_url(path)
    try:
        check_regular_file(path)
        with open(path, "rb", opener=_open_nonblocking) as file:
            check_regular_file(path, os.fstat(file.fileno()).st_mode)
            data = file.read()
    except FileNotFoundError:
        raise _bad(path, "file not found (was it moved or deleted after the dataset was indexed?)") from None
    except PermissionError:
        raise _bad(path, "permission denied") from None
    except OSError as error:
        raise _bad(path, f"{error.strerror or error}") from None
    if not data:
        raise _bad(path, "the file is empty (0 bytes)")
    return data


def _check_not_truncated(path: str, data: bytes) -> None:
    # libjpeg-turbo decodes a truncated JPEG "successfully" (grey bottom rows, a warning on
    # stderr); a missing end-of-image marker is how we notice. Inside entropy-coded data 0xFF is
    # always followed by 0x00 or a restart marker, so the first FF D9 after the first scan is the
    # image's end; anything after it (padding, a motion photo's video) is ignored.
    if not data.startswith(_JPEG_START):
        return
    scan = jpeg_scan_offset(data)
    if scan < 0 or data.rfind(_JPEG_END, scan) < 0:  # from the end: the marker is usually the last 2 bytes
        raise _bad(path, "truncated JPEG (no end-of-image marker); the file is incomplete")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)


# NOTE [ Floating-point images ]
# HDR, PFM and float TIFFs hold floats. OpenCV's 8-bit decode of them is black for PFM and fails
# for float TIFF (Pillow's convert then clipped to 0 or 1: black). So they are decoded as floats,
# and values in [0, 1] become rint(255 * v) in every colour mode (OpenCV's HDR reader's rule, and
# `tf.image.convert_image_dtype`'s). Other ranges (radiance above 1, NaN) are refused by name.
def _floats_to_uint8(path: str, array: np.ndarray) -> np.ndarray:
    values = array.astype(np.float32, copy=False)
    low, high = float(values.min()), float(values.max())
    if not (low >= 0.0 and high <= 1.0):  # NaN fails both
        raise _bad(
            path,
            f"a floating-point image with values from {low:g} to {high:g}; xloader maps floats in [0, 1] to "
            "0-255 and does not guess other ranges. Convert the file to 8 or 16 bits first (tone-map an HDR image)",
        )
    return np.rint(values * 255.0).astype(np.uint8)


def _to_rgba(array: np.ndarray) -> np.ndarray:
    array = _to_uint8(array)
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGBA)
    channels = array.shape[2]
    if channels == 1:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGBA)
    if channels == 2:  # grey + alpha
        rgba = cv2.cvtColor(np.ascontiguousarray(array[:, :, 0]), cv2.COLOR_GRAY2RGBA)
        rgba[:, :, 3] = array[:, :, 1]
        return rgba
    if channels == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGBA)
    return cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)


# (channels, colour mode) -> the conversion of a grey, BGR or BGRA decode; absent: none needed.
_CONVERSIONS = {
    (1, "rgb"): cv2.COLOR_GRAY2RGB,
    (3, "rgb"): cv2.COLOR_BGR2RGB,
    (4, "rgb"): cv2.COLOR_BGRA2RGB,
    (3, "grayscale"): cv2.COLOR_BGR2GRAY,
    (4, "grayscale"): cv2.COLOR_BGRA2GRAY,
}


def _to_color_mode(array: np.ndarray, color_mode: str) -> np.ndarray:
    """A uint8 grey, grey+alpha, BGR or BGRA image (OpenCV's IMREAD_UNCHANGED) in `color_mode`."""
    if color_mode == "rgba":
        return _to_rgba(array)
    if array.ndim == 3 and array.shape[2] == 2:  # grey + alpha: the alpha is dropped
        array = np.ascontiguousarray(array[:, :, 0])
    code = _CONVERSIONS.get((1 if array.ndim == 2 else array.shape[2], color_mode))
    return array if code is None else cv2.cvtColor(array, code)


def _imdecode(path: str, buffer: np.ndarray, flags: int) -> np.ndarray | None:
    try:
        return cv2.imdecode(buffer, flags)
    except cv2.error as error:  # e.g. OpenCV's own size limits; never a raw cv2.error
        where = f" in {error.func}" if getattr(error, "func", "") else ""
        raise _bad(path, f"OpenCV cannot decode it ({getattr(error, 'err', '') or error}{where})") from None


def _decode_with_pillow(data: bytes, path: str, color_mode: str) -> np.ndarray | None:
    """Fallback for files OpenCV cannot decode: None if Pillow cannot decode it either;
    `BadImageError` for a float image outside [0, 1] or one over Pillow's own pixel limit."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode == "F":  # 32-bit float samples: NOTE [ Floating-point images ]
                return _to_color_mode(_floats_to_uint8(path, np.asarray(image)), color_mode)
            pil_mode = {"rgb": "RGB", "rgba": "RGBA", "grayscale": "L"}[color_mode]
            return np.asarray(image.convert(pil_mode))
    except BadImageError:
        raise
    except Image.DecompressionBombError as error:  # with max_pixels=None: Pillow's own limit
        raise _bad(path, f"Pillow refuses to decode it ({error})") from None
    except Exception:  # noqa: BLE001 - Pillow raises many types for bad data: "not decodable"
        return None


def check_max_pixels(max_pixels: object) -> int | None:
    """Return `max_pixels` if it is a positive int or None (no limit), else raise."""
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise TypeError(f"max_pixels must be a positive int or None (no limit), got {max_pixels!r}.")
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be a positive int or None (no limit), got {max_pixels}.")
    return int(max_pixels)


def _check_pixel_limit(path: str, data: bytes, max_pixels: int | None) -> Header | None:
    """`_image_header.check_pixel_limit`, its refusal a `BadImageError` naming `path`."""
    try:
        return check_pixel_limit(data, max_pixels)
    except HeaderError as error:
        raise _bad(path, error.reason) from None


def read_image(path: str, color_mode: ColorMode = "rgb", *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file to uint8, shape (H, W, C) with C = 3 (rgb), 4 (rgba) or 1 (grayscale).

    The format is detected from the content, not the extension. 16-bit images are reduced to
    8 bits; floating-point images (HDR, PFM, float TIFF) with values in [0, 1] become
    rint(255 * v) (NOTE [ Floating-point images ]). Raises `BadImageError` (with `.path` and
    `.reason`) if the file is missing, not a regular file, empty, truncated, not an image, a
    float image outside [0, 1], or declares more than `max_pixels` pixels (NOTE [ Pixel limit ]).
    """
    return decode_image(read_bytes(path), path, color_mode, max_pixels=max_pixels)


def decode_image(
    data: bytes, path: str, color_mode: ColorMode = "rgb", *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
    downscale_for: DownscaleTarget | None = None,
) -> np.ndarray:
    """`read_image` for bytes already read (from any storage); `path` names them in errors. With
    `downscale_for`, a JPEG may decode at 1/2, 1/4 or 1/8 size (NOTE [ Reduced-size decode ])."""
    header = _check_pixel_limit(path, data, max_pixels)
    _check_not_truncated(path, data)
    floating = header is not None and header.floating
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION if floating else _IMREAD_FLAGS[color_mode]
    if downscale_for is not None and not floating:
        flags = reduced_flags(data, color_mode, downscale_for, flags)
    # Under a limit, OpenCV decodes only formats whose header xloader read (NOTE [ Pixel limit ]).
    opencv = header is not None or max_pixels is None
    image = _imdecode(path, np.frombuffer(data, dtype=np.uint8), flags) if opencv else None
    if image is None:
        image = _decode_with_pillow(data, path, color_mode)
        if image is None and floating and header.format == "TIFF":  # type: ignore[union-attr]
            raise _bad(
                path,
                "a TIFF image with floating-point samples that neither OpenCV nor Pillow decodes "
                "(16-bit floats, for one); convert it to 8 or 16-bit integers or 32-bit floats",
            )
        if image is None:
            raise _bad(path, "not a decodable image (unknown format or corrupt data)")
    elif np.issubdtype(image.dtype, np.floating):
        image = _to_color_mode(_floats_to_uint8(path, image), color_mode)
    elif floating or color_mode == "rgba":
        image = _to_color_mode(_to_uint8(image), color_mode)
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    return np.ascontiguousarray(image)


def read_mask(path: str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a class-index mask: shape (H, W), dtype uint8 or int64.

    Palette ("P") PNGs give their palette indices, "L" and "1" images their values; 16/32-bit
    integer images give int64. An RGB mask is accepted only if its three channels are equal
    (a grey image saved as RGB); colour-coded masks raise `BadImageError`.
    """
    return decode_mask(read_bytes(path), path, max_pixels=max_pixels)


def decode_mask(data: bytes, path: str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """`read_mask` of a file's bytes already in memory; `path` names it in errors."""
    _check_pixel_limit(path, data, max_pixels)
    _check_not_truncated(path, data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            mode = image.mode
            if mode in ("P", "L", "1"):
                return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
            if mode in ("I", "I;16", "I;16B", "I;16L"):
                return np.asarray(image).astype(np.int64)
            if mode in ("RGB", "RGBA"):
                array = np.asarray(image)
                if (array[:, :, 0] == array[:, :, 1]).all() and (array[:, :, 0] == array[:, :, 2]).all():
                    return np.ascontiguousarray(array[:, :, 0])
                raise _bad(
                    path,
                    f"the mask is a colour ({mode}) image; xloader expects class-index masks "
                    "(mode L or P, one class index per pixel). Convert colours to indices first",
                )
            raise _bad(path, f"unsupported mask mode {mode!r}; use 8-bit L or P (palette) PNGs")
    except BadImageError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for bad data
        raise _bad(path, f"not a decodable image ({error})") from None


def check_interpolation(interpolation: object) -> str:
    """Return `interpolation` if it is a key of `INTERPOLATIONS`, else raise `ValueError`
    naming the supported filters (and, for Keras's Pillow-only "box" and "hamming", the nearest one)."""
    if interpolation in INTERPOLATIONS:
        return str(interpolation)
    supported = ", ".join(repr(name) for name in INTERPOLATIONS)
    hint = _PILLOW_ONLY_FILTERS.get(interpolation) if isinstance(interpolation, str) else None
    if hint is not None:
        raise ValueError(
            f"interpolation={interpolation!r} is a Pillow filter that OpenCV, which xloader resizes with, "
            f"does not have. Use one of {supported}; {hint}."
        )
    raise ValueError(f"interpolation must be one of {supported}; got {interpolation!r}.")


# NOTE [ Nearest neighbour, as Pillow ]
# `interpolation="nearest"` must mean what it meant in Keras's `load_img`: Pillow's NEAREST,
# which takes, for output pixel i, the source pixel under its centre, start + (i + 0.5) * scale,
# with the positions summed in doubles, one scale step per pixel, from the crop box's corner.
# `cv2.INTER_NEAREST` takes floor(i * scale) instead (a half-pixel shift). `cv2.INTER_NEAREST_EXACT`
# agrees with Pillow on whole images, but not on Keras's `keep_aspect_ratio` crop box: resizing
# the cropped view adds the offset after the sum, and some positions then round the other way.
# So "nearest" is a gather through index tables that repeat Pillow's sums, and a lossless image
# resized (and cropped) here equals Keras's bit for bit. Masks use the same tables, which keeps
# them aligned with images resized with "nearest".
@functools.lru_cache(maxsize=512)
def _nearest_indices(start: int, length: int, count: int, depth: int = 1) -> np.ndarray:
    """Source indices of `count` output pixels sampling `length` source pixels from `start`;
    with `depth` > 1, the indices of each pixel's `depth` values in a row of `depth`-value pixels."""
    step = length / count
    position = start + step * 0.5
    indices = np.empty(count, dtype=np.intp)
    for i in range(count):
        indices[i] = int(position)
        position += step
    np.clip(indices, start, start + length - 1, out=indices)  # never needed in exact arithmetic
    if depth > 1:
        indices = (indices[:, np.newaxis] * depth + np.arange(depth)).ravel()
    indices.flags.writeable = False
    return indices


def _nearest(array: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    top, left, crop_height, crop_width = box
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    depth = int(np.prod(array.shape[2:], dtype=np.int64))  # values per pixel
    rows = array.reshape(height, width * depth).take(_nearest_indices(top, crop_height, size[0]), axis=0)
    picked = rows.take(_nearest_indices(left, crop_width, size[1], depth), axis=1)  # one gather per row
    return picked.reshape(size[0], size[1], *array.shape[2:])


def _crop_box(array: np.ndarray, size: tuple[int, int], keep_aspect_ratio: bool) -> tuple[int, int, int, int]:
    height, width = array.shape[:2]
    return aspect_crop_box(height, width, size) if keep_aspect_ratio else (0, 0, height, width)


def resize_image(
    image: np.ndarray,
    size: tuple[int, int] | None,
    interpolation: str = "bilinear",
    *,
    keep_aspect_ratio: bool = False,
) -> np.ndarray:
    """Resize an (H, W, C) image to `size` = (height, width); returns (height, width, C), same dtype.

    With `keep_aspect_ratio`, the image is first cropped to the target aspect ratio, centred
    (`aspect_crop_box`), so nothing is stretched. "nearest" follows Pillow exactly
    (NOTE [ Nearest neighbour, as Pillow ]); the other filters are OpenCV's `cv2.resize`.
    An image already of `size` is returned as it is (not cropped), as in Keras.
    """
    if size is None or image.shape[:2] == tuple(size):
        return image
    top, left, height, width = _crop_box(image, size, keep_aspect_ratio)
    if interpolation == "nearest":
        return _nearest(image, (top, left, height, width), size)
    crop = image[top : top + height, left : left + width]
    resized = cv2.resize(crop, (int(size[1]), int(size[0])), interpolation=INTERPOLATIONS[interpolation])
    if resized.ndim == 2:
        resized = resized[:, :, np.newaxis]
    return resized


def resize_mask(mask: np.ndarray, size: tuple[int, int] | None, *, keep_aspect_ratio: bool = False) -> np.ndarray:
    """Resize an (H, W) or (H, W, K) class-index mask with nearest neighbour, so no new class
    values appear; any dtype. Same pixel grid as `resize_image(..., "nearest")`, and the same
    crop with `keep_aspect_ratio`."""
    if size is None or mask.shape[:2] == tuple(size):
        return mask
    return _nearest(mask, _crop_box(mask, size, keep_aspect_ratio), size)


def is_image_file(name: str, extensions: frozenset[str]) -> bool:
    """True if `name` ends with one of `extensions` (lower-case, without dot), case-insensitively."""
    dot = name.rfind(".")  # os.path.splitext's rule for names that do not start with a dot
    return dot > 0 and name[dot + 1 :].lower() in extensions
