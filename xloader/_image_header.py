"""Image format and dimensions from the first bytes of a file, before any decoding.

Used for the pixel limit (NOTE [ Pixel limit ] in decoding.py): a decompression bomb, a small
file that declares a huge image, is refused before a decoder allocates its pixels.

# NOTE [ Every format OpenCV decodes has its size read here ]
OpenCV picks a decoder by the file's first bytes and allocates the whole image from the size in
its header before reading any pixel, with no limit of its own below 2^30 pixels. So the size is
read here, by the same signatures, for every format the OpenCV in use can decode: PNG, JPEG,
GIF, BMP, WebP (VP8, VP8L, VP8X), AVIF, TIFF and BigTIFF, JPEG 2000 (JP2 and J2K), PNM (P1-P6),
PAM (P7), PFM, Radiance HDR and Sun raster. A file with one of these signatures whose header
does not give a size is refused (`HeaderError`). Formats that some OpenCV builds decode but
whose size is not parsed here (`UNCHECKED_FORMATS`) are refused by their signature. Anything
else is Pillow's to decode, and Pillow's lazy `open` reads its size (`pillow_size`); under a
limit decoding.py never hands such a file to OpenCV, so an OpenCV decoder missing from this
list cannot bypass the check.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "Header",
    "HeaderError",
    "UNCHECKED_FORMATS",
    "check_pixel_limit",
    "declared_size",
    "jpeg_scan_offset",
    "pillow_size",
    "read_header",
]

# Signatures of formats some OpenCV builds decode whose size is not parsed here.
UNCHECKED_FORMATS: dict[bytes, str] = {
    b"\x76\x2f\x31\x01": "OpenEXR",
    b"\xff\x0a": "JPEG XL",
    b"\x00\x00\x00\x0cJXL \r\n\x87\n": "JPEG XL",
}

_UNLIMITED = "If the file is trusted, pass max_pixels=None to the dataset"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
# Start-of-frame markers that carry the frame size (all SOFn except DHT C4, JPG C8, DAC CC).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


@dataclass(frozen=True, slots=True)
class Header:
    """What a file's header declares: its format, size in pixels, and whether its samples are
    floating point (Radiance HDR, PFM, TIFF with SampleFormat 3)."""

    format: str
    width: int
    height: int
    floating: bool = False


class HeaderError(ValueError):
    """A header that does not give the image size, or a size over the pixel limit (`reason`
    says which, in the words of `BadImageError.reason`)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _jpeg_markers(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset) of each JPEG marker after SOI, walked by the segments' lengths (so an EXIF
    thumbnail's own markers are skipped), up to the first start of scan. Stray bytes between
    segments are skipped to the next 0xFF, as libjpeg does."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            position = data.find(b"\xff", position)
            if position < 0:
                return
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        yield marker, position
        if marker == 0xDA:
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")


def jpeg_scan_offset(data: bytes) -> int:
    """Offset of the first start-of-scan marker of a JPEG; -1 if none."""
    return next((position for marker, position in _jpeg_markers(data) if marker == 0xDA), -1)


def _jpeg(data: bytes) -> tuple[int, int] | None:
    for marker, position in _jpeg_markers(data):
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, position + 5)
            return width, height
    return None


def _png(data: bytes) -> tuple[int, int] | None:
    return struct.unpack_from(">II", data, 16) if data[12:16] == b"IHDR" else None


def _gif(data: bytes) -> tuple[int, int] | None:
    """The logical screen, or the first frame's extent if it reaches beyond it."""
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while position < len(data):
        block = data[position]
        if block == 0x2C:  # image descriptor
            if position + 9 > len(data):
                return None
            left, top, frame_width, frame_height = struct.unpack_from("<HHHH", data, position + 1)
            return max(width, left + frame_width), max(height, top + frame_height)
        if block != 0x21:  # only extensions may come before the first frame
            return None
        position += 2
        while position < len(data) and data[position]:  # sub-blocks, ended by a 0 length
            position += 1 + data[position]
        position += 1
    return None


def _bmp(data: bytes) -> tuple[int, int] | None:
    (info_size,) = struct.unpack_from("<I", data, 14)
    if info_size == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack_from("<HH", data, 18)
    if info_size < 16:
        return None
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)  # a negative height is a top-down image


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, payload end) of each ISO base media box in data[start:end]."""
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1 and start + 16 <= end:
            size, header = struct.unpack_from(">Q", data, start + 8)[0], 16
        elif size == 0:
            size = end - start
        if size < header:
            return
        yield kind, start + header, min(start + size, end)
        start += size


def _avif(data: bytes) -> tuple[int, int] | None:
    """The largest `ispe` (image spatial extents) property: every image item, grid or tile, has one."""
    largest = None
    for kind, meta_start, meta_end in _boxes(data, 0, len(data)):
        if kind != b"meta":
            continue
        for kind, start, end in _children(data, meta_start + 4, meta_end, b"iprp", b"ipco"):  # meta: 4 bytes of flags
            if kind == b"ispe" and start + 12 <= end:
                size = struct.unpack_from(">II", data, start + 4)
                largest = size if largest is None or size[0] * size[1] > largest[0] * largest[1] else largest
    return largest


def _children(data: bytes, start: int, end: int, *path: bytes) -> Iterator[tuple[bytes, int, int]]:
    """The boxes inside the box reached from data[start:end] through the box types of `path`."""
    if not path:
        yield from _boxes(data, start, end)
        return
    for kind, child_start, child_end in _boxes(data, start, end):
        if kind == path[0]:
            yield from _children(data, child_start, child_end, *path[1:])


def _is_avif(data: bytes) -> bool:
    if data[4:8] != b"ftyp":
        return False
    end = min(int.from_bytes(data[:4], "big"), len(data))
    brands = [data[8:12]] + [data[i : i + 4] for i in range(16, end - 3, 4)]
    return any(brand in (b"avif", b"avis", b"avio") for brand in brands)


def _jp2(data: bytes) -> tuple[int, int] | None:
    for kind, start, end in _children(data, 0, len(data), b"jp2h"):
        if kind == b"ihdr" and start + 8 <= end:
            height, width = struct.unpack_from(">II", data, start)
            return width, height
    return None


def _j2k(data: bytes) -> tuple[int, int] | None:
    x_size, y_size, x_offset, y_offset = struct.unpack_from(">IIII", data, 8)  # SIZ right after SOC
    return x_size - x_offset, y_size - y_offset


_TIFF_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8: the types a size or format can have


def _tiff(data: bytes) -> tuple[int, int, bool] | None:
    """(width, height, floating) of the first image (the one OpenCV decodes), classic or BigTIFF."""
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", data, 2)[0] == 43
    offset_format = "Q" if big else "I"
    (offset,) = struct.unpack_from(order + offset_format, data, 8 if big else 4)
    count_format, entry_size = ("Q", 20) if big else ("H", 12)
    (count,) = struct.unpack_from(order + count_format, data, offset)
    fields: dict[int, int] = {}
    position = offset + (8 if big else 2)
    for _ in range(min(count, 4096)):
        tag, kind = struct.unpack_from(order + "HH", data, position)
        if tag in (256, 257, 339) and kind in _TIFF_TYPES:  # ImageWidth, ImageLength, SampleFormat
            # The first value: inline for sizes; for SampleFormat with many samples, at an offset.
            value_at = position + (12 if big else 8)
            (values,) = struct.unpack_from(order + offset_format, data, position + 4)
            if struct.calcsize(_TIFF_TYPES[kind]) * values > (8 if big else 4):
                (value_at,) = struct.unpack_from(order + offset_format, data, value_at)
            fields[tag] = struct.unpack_from(order + _TIFF_TYPES[kind], data, value_at)[0]
        position += entry_size
    if 256 not in fields or 257 not in fields:
        return None
    return fields[256], fields[257], fields.get(339) == 3


_PNM_TOKENS = re.compile(rb"(?:\s|#[^\n]*\n)*(\d+)")


def _pnm(data: bytes) -> tuple[int, int] | None:
    """P1-P6 and PF/Pf: width and height are the first two numbers, after comments."""
    match = _PNM_TOKENS.match(data, 2)
    second = match and _PNM_TOKENS.match(data, match.end())
    return (int(match.group(1)), int(second.group(1))) if match and second else None


def _pam(data: bytes) -> tuple[int, int] | None:
    header = data[: data.find(b"ENDHDR")] if b"ENDHDR" in data[:4096] else b""
    width = re.search(rb"^WIDTH\s+(\d+)", header, re.MULTILINE)
    height = re.search(rb"^HEIGHT\s+(\d+)", header, re.MULTILINE)
    return (int(width.group(1)), int(height.group(1))) if width and height else None


_HDR_RESOLUTION = re.compile(rb"\n\n([-+])([XY]) (\d+) ([-+])([XY]) (\d+)\n")


def _hdr(data: bytes) -> tuple[int, int] | None:
    """The resolution line after the header's empty line: "-Y H +X W" (or X first: a rotated image)."""
    match = _HDR_RESOLUTION.search(data, 0, 65536)
    if match is None or match.group(2) == match.group(5):
        return None
    first, second = int(match.group(3)), int(match.group(6))
    return (second, first) if match.group(2) == b"Y" else (first, second)


def _is_pnm(data: bytes, kinds: bytes) -> bool:
    return len(data) > 2 and data[0:1] == b"P" and data[1] in kinds and data[2:3].isspace()


def _sun_raster(data: bytes) -> tuple[int, int]:
    return struct.unpack_from(">II", data, 4)


# (format, signature test, size parser) in OpenCV's order of decoders; the common formats first.
_PARSERS: tuple[tuple[str, Callable[[bytes], bool], Callable[[bytes], tuple[int, ...] | None]], ...] = (
    ("JPEG", lambda data: data.startswith(b"\xff\xd8\xff"), _jpeg),
    ("PNG", lambda data: data.startswith(_PNG_SIGNATURE), _png),
    ("GIF", lambda data: data[:6] in (b"GIF87a", b"GIF89a"), _gif),
    ("BMP", lambda data: data.startswith(b"BM"), _bmp),
    ("WebP", lambda data: data[:4] == b"RIFF" and data[8:12] == b"WEBP", _webp),
    ("AVIF", _is_avif, _avif),
    ("JPEG 2000", lambda data: data.startswith(_JP2_SIGNATURE), _jp2),
    ("JPEG 2000", lambda data: data.startswith(b"\xff\x4f\xff\x51"), _j2k),
    ("Sun raster", lambda data: data.startswith(b"\x59\xa6\x6a\x95"), _sun_raster),
    ("PNM", lambda data: _is_pnm(data, b"123456"), _pnm),
    ("PAM", lambda data: _is_pnm(data, b"7"), _pam),
    ("PFM", lambda data: _is_pnm(data, b"Ff"), _pnm),
    ("Radiance HDR", lambda data: data.startswith((b"#?RGBE", b"#?RADIANCE")), _hdr),
    ("TIFF", lambda data: data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"), _tiff),
)


def read_header(data: bytes) -> Header | None:
    """The format, size and sample kind `data` declares; None if OpenCV has no decoder for its
    signature (Pillow may still read it). Costs microseconds: only header bytes are parsed.

    Raises:
        HeaderError: a format OpenCV decodes whose header does not give a size (truncated or
            corrupt), or a format in `UNCHECKED_FORMATS`.
    """
    for name, matches, parse in _PARSERS:
        if not matches(data):
            continue
        try:
            size = parse(data)
        except (struct.error, IndexError):  # the header is cut short
            size = None
        if size is None:
            raise HeaderError(
                f"the {name} header is truncated or corrupt: it does not say the image size. {_UNLIMITED}"
            )
        floating = name in ("PFM", "Radiance HDR") or (len(size) == 3 and bool(size[2]))
        return Header(name, int(size[0]), int(size[1]), floating)
    for signature, name in UNCHECKED_FORMATS.items():
        if data.startswith(signature):
            raise HeaderError(
                f"{name} files are refused under a pixel limit: xloader cannot read their size before decoding. "
                f"{_UNLIMITED}"
            )
    return None


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) the header declares, for the formats `read_header` parses; None otherwise
    (an unknown format, or a header that does not give a size)."""
    try:
        header = read_header(data)
    except HeaderError:
        return None
    return None if header is None else (header.width, header.height)


def pillow_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from Pillow's lazy open (no pixel decoded); None if Pillow does not know
    the format. Raises `HeaderError` when Pillow's own bomb check refuses the size."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Image.DecompressionBombError as error:
        raise HeaderError(
            f"Pillow refuses to open it ({error}). If the file is trusted, raise PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except Exception:  # noqa: BLE001 - not an image Pillow can open: the decoders report it
        return None


def check_pixel_limit(data: bytes, max_pixels: int | None) -> Header | None:
    """The header `data` declares (None for a format OpenCV does not decode), after checking its
    size against `max_pixels` (NOTE [ Pixel limit ] in decoding.py): from `read_header`, else
    from `pillow_size`. Without a limit, a header that cannot be read is left to the decoders.

    Raises:
        HeaderError: over the limit, or (under a limit) a size that cannot be read.
    """
    try:
        header = read_header(data)
        if max_pixels is None:
            return header
        size = (header.width, header.height) if header is not None else pillow_size(data)
    except HeaderError:
        if max_pixels is None:
            return None
        raise
    if size is not None and size[0] * size[1] > max_pixels:
        width, height = size
        raise HeaderError(
            f"the image declares {width} x {height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (a decompression bomb, or a very large image). If the file is trusted, "
            "pass a larger max_pixels (or None) to the dataset"
        )
    return header
