"""Decompression bombs and float images for the decoder tests, written by hand: each is a few
bytes to a few hundred KB that declares a huge image (no test ever decodes one)."""

from __future__ import annotations

import struct
import zlib


def webp_lossless(width: int, height: int) -> bytes:
    """A real lossless WebP of one colour: every prefix code has one symbol, so each pixel takes
    0 bits and a 16383 x 16383 image is 36 bytes (libwebp decodes it to 1 GB)."""
    value = count = 0
    for field, bits in [(0x2F, 8), (width - 1, 14), (height - 1, 14), (0, 1), (0, 3), (0, 1), (0, 1), (0, 1)]:
        value, count = (
            value | field << count,
            count + bits,
        )  # signature, size, no alpha, version 0, no transform/cache/meta codes
    for _ in range(5):  # green, red, blue, alpha, distance: "simple" codes of one 1-bit symbol, 0
        value, count = value | 0b0001 << count, count + 4
    payload = value.to_bytes((count + 7) // 8, "little")
    payload += bytes(16 - len(payload))  # OpenCV reads WebP files of 32 bytes or more
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def tiff(
    width: int, height: int, *, strip: bytes = b"", compression: int = 1, sample_format: int = 1, bits: int = 8
) -> bytes:
    """A little-endian grey TIFF of one strip holding `strip`."""
    entries = [
        (256, 4, width),  # ImageWidth, LONG
        (257, 4, height),  # ImageLength
        (258, 3, bits),  # BitsPerSample, SHORT
        (259, 3, compression),
        (262, 3, 1),  # PhotometricInterpretation: black is zero
        (273, 4, 0),  # StripOffsets: patched below
        (277, 3, 1),  # SamplesPerPixel
        (278, 4, height),  # RowsPerStrip
        (279, 4, len(strip)),  # StripByteCounts
        (339, 3, sample_format),  # SampleFormat: 1 unsigned, 3 float
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    strip_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = strip_offset if tag == 273 else value
        ifd += struct.pack("<HHI", tag, kind, 1) + (
            struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        )
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + strip


def tiff_deflate_bomb(width: int, height: int) -> bytes:
    """A real grey TIFF of zeros, Deflate-compressed (15000 x 15000: 219 KB that decode to 225 MB)."""
    compressor = zlib.compressobj(9)
    row_block = bytes(width * 100)
    strip = b"".join(compressor.compress(row_block) for _ in range(height // 100))
    strip += compressor.compress(bytes(width * (height % 100))) + compressor.flush()
    return tiff(width, height, strip=strip, compression=8)


def bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP header (BITMAPINFOHEADER) with no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def hdr_header(width: int, height: int) -> bytes:
    """A Radiance HDR header with a few bytes of pixels."""
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {height} +X {width}\n".encode() + bytes(64)
