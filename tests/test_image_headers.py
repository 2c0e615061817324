"""The pixel limit for every format OpenCV or Pillow decodes, the decompression bombs of issue 19
(refused before decoding, in bounded memory), decoder errors as `BadImageError`, and float images.

NOTE [ Every format OpenCV decodes has its size read here ] (xloader/_image_header.py) is the rule.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import warnings

import cv2
import numpy as np
import pytest
from bomb_files import bmp_header, hdr_header, tiff, tiff_deflate_bomb, webp_lossless
from PIL import Image

import xloader as xl
from xloader._image_header import Header, HeaderError, read_header
from xloader.decoding import read_image

IMAGE = (np.arange(5 * 7 * 3) * 7 % 256).astype(np.uint8).reshape(5, 7, 3)
GREY = IMAGE[:, :, 0].copy()
LIMIT_HINT = "If the file is trusted, pass max_pixels=None to the dataset"


def cv2_bytes(extension: str, image: np.ndarray = IMAGE) -> bytes:
    ok, encoded = cv2.imencode(extension, image)
    assert ok, extension
    return encoded.tobytes()


def pillow_bytes(format: str, image: np.ndarray = IMAGE, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=format, **options)
    return buffer.getvalue()


def big_endian_bigtiff(width: int, height: int) -> bytes:
    """A BigTIFF's first IFD, big-endian: ImageWidth as SHORT, ImageLength as LONG8."""
    entries = struct.pack(">HHQHxxxxxx", 256, 3, 1, width) + struct.pack(">HHQQ", 257, 16, 1, height)
    return b"MM\0+" + struct.pack(">HHQ", 8, 0, 16) + struct.pack(">Q", 2) + entries + bytes(8)


FLOATS = np.linspace(0, 1, 35 * 3, dtype=np.float32).reshape(5, 7, 3)

# format, bytes, floating: every file declares 7 x 5 pixels
FORMATS = [
    ("PNG", lambda: cv2_bytes(".png"), False),
    ("JPEG", lambda: cv2_bytes(".jpg"), False),
    ("GIF", lambda: pillow_bytes("GIF"), False),
    ("BMP", lambda: cv2_bytes(".bmp"), False),
    ("WebP", lambda: cv2_bytes(".webp", IMAGE), False),  # VP8 (lossy)
    ("WebP", lambda: pillow_bytes("WEBP", lossless=True), False),  # VP8L
    ("WebP", lambda: pillow_bytes("WEBP", np.dstack([IMAGE, GREY]), exif=b"Exif\0\0II*\0"), False),  # VP8X
    ("AVIF", lambda: cv2_bytes(".avif"), False),
    ("JPEG 2000", lambda: pillow_bytes("JPEG2000"), False),  # JP2 boxes
    ("JPEG 2000", lambda: pillow_bytes("JPEG2000", no_jp2=True), False),  # J2K codestream
    ("Sun raster", lambda: cv2_bytes(".sr"), False),
    ("PNM", lambda: cv2_bytes(".ppm"), False),
    ("PNM", lambda: cv2_bytes(".pgm", GREY), False),
    ("PNM", lambda: b"P1\n# a comment\n7 5\n" + b"0 1 " * 35, False),
    ("PAM", lambda: cv2_bytes(".pam"), False),
    ("PFM", lambda: cv2_bytes(".pfm", FLOATS), True),
    ("Radiance HDR", lambda: cv2_bytes(".hdr", FLOATS), True),
    ("TIFF", lambda: cv2_bytes(".tiff"), False),
    ("TIFF", lambda: cv2_bytes(".tiff", FLOATS[:, :, 0]), True),
]


@pytest.mark.parametrize(("format", "make", "floating"), FORMATS, ids=[f"{f[0]}-{i}" for i, f in enumerate(FORMATS)])
def test_every_format_opencv_decodes_has_its_size_read_from_the_header(format, make, floating, tmp_path):
    data = make()
    assert read_header(data) == Header(format, 7, 5, floating)
    path = tmp_path / "image"
    path.write_bytes(data)
    assert read_image(str(path), max_pixels=35).shape == (5, 7, 3)  # exactly at the limit: decoded
    with pytest.raises(xl.BadImageError, match=re.escape("declares 7 x 5 = 35 pixels, over the limit of 34")):
        read_image(str(path), max_pixels=34)


def test_tiff_first_ifd_big_endian_bigtiff_and_gif_frames_beyond_the_screen():
    assert read_header(big_endian_bigtiff(3, 70000)) == Header("TIFF", 3, 70000)
    gif = bytearray(pillow_bytes("GIF"))
    descriptor = gif.index(b"\x2c", 13)  # the first frame, after the palette and extensions
    gif[descriptor + 5 : descriptor + 9] = struct.pack("<HH", 60000, 50000)  # a frame larger than the screen
    assert read_header(bytes(gif)) == Header("GIF", 60000, 50000)
    os2_bmp = b"BM" + bytes(12) + struct.pack("<IHHHH", 12, 9, 4, 1, 24)
    assert read_header(os2_bmp) == Header("BMP", 9, 4)
    assert read_header(bmp_header(6, -3)) == Header("BMP", 6, 3)  # top-down
    assert read_header(b"not an image") is None


def test_jpeg_stray_bytes_between_segments_are_skipped_as_libjpeg_does(tmp_path):
    clean = cv2_bytes(".jpg")
    second_marker = 2 + 2 + int.from_bytes(clean[4:6], "big")  # after SOI and APP0
    stray = clean[:second_marker] + b"\x00\x17" + clean[second_marker:]
    assert read_header(stray) == Header("JPEG", 7, 5)
    (tmp_path / "stray.jpg").write_bytes(stray)
    (tmp_path / "clean.jpg").write_bytes(clean)
    np.testing.assert_array_equal(read_image(str(tmp_path / "stray.jpg")), read_image(str(tmp_path / "clean.jpg")))


# format, bytes cut short after the signature
TRUNCATED = [
    ("PNG", cv2_bytes(".png")[:12]),
    ("JPEG", cv2_bytes(".jpg")[:20]),  # SOI and APP0, no frame header
    ("GIF", b"GIF89a\x07\x00"),
    ("BMP", b"BM" + bytes(10)),
    ("WebP", b"RIFF\x00\x00\x00\x00WEBPVP8 "),
    ("AVIF", cv2_bytes(".avif")[:32]),
    ("JPEG 2000", pillow_bytes("JPEG2000")[:40]),
    ("JPEG 2000", b"\xff\x4f\xff\x51\x00\x2f"),
    ("Sun raster", b"\x59\xa6\x6a\x95\x00\x00"),
    ("PNM", b"P6\n7"),
    ("PAM", b"P7\nWIDTH 7\n"),
    ("PFM", b"PF\n"),
    ("Radiance HDR", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n"),
    ("TIFF", cv2_bytes(".tiff")[:11]),
]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow, on the cut TIFF, without a limit
@pytest.mark.parametrize(("format", "data"), TRUNCATED, ids=[f"{t[0]}-{i}" for i, t in enumerate(TRUNCATED)])
def test_a_header_that_does_not_give_the_size_is_refused_under_a_limit(format, data, tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(data)
    reason = f"the {format} header is truncated or corrupt: it does not say the image size. {LIMIT_HINT}"
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {path}: {reason}.")) as caught:
        read_image(str(path))
    assert caught.value.reason == reason
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {path}: ")):  # no limit: the decoders judge it
        read_image(str(path), max_pixels=None)


def test_formats_whose_size_is_not_read_are_refused_under_a_limit(tmp_path):
    path = tmp_path / "scene.exr"
    path.write_bytes(b"\x76\x2f\x31\x01\x02\x00\x00\x00" + bytes(64))
    with pytest.raises(HeaderError) as caught:
        read_header(path.read_bytes())
    assert caught.value.reason == (
        f"OpenEXR files are refused under a pixel limit: xloader cannot read their size before decoding. {LIMIT_HINT}"
    )
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {path}: OpenEXR files are refused")):
        read_image(str(path))
    with pytest.raises(xl.BadImageError, match=re.escape("not a decodable image (unknown format or corrupt data)")):
        read_image(str(path), max_pixels=None)  # this OpenCV has no EXR decoder, Pillow none either


def test_formats_only_pillow_opens_are_checked_with_its_lazy_open(tmp_path, monkeypatch):
    pcx = bytearray(pillow_bytes("PCX", GREY))
    (tmp_path / "small.pcx").write_bytes(pcx)
    from xloader import decoding

    opencv_calls = []
    monkeypatch.setattr(decoding, "_imdecode", lambda *args: opencv_calls.append(args[0]))
    read_image(str(tmp_path / "small.pcx"))
    assert opencv_calls == []  # under a limit, OpenCV gets only formats whose header xloader read
    read_image(str(tmp_path / "small.pcx"), max_pixels=None)
    assert opencv_calls == [str(tmp_path / "small.pcx")]
    monkeypatch.undo()
    with pytest.raises(xl.BadImageError, match=re.escape("declares 7 x 5 = 35 pixels, over the limit of 34")):
        read_image(str(tmp_path / "small.pcx"), max_pixels=34)
    np.testing.assert_array_equal(read_image(str(tmp_path / "small.pcx"), "grayscale")[:, :, 0], GREY)
    pcx[8:12] = struct.pack("<HH", 65534, 65534)  # xmax, ymax: 65535 x 65535 pixels
    (tmp_path / "huge.pcx").write_bytes(pcx)
    reason = (
        "Pillow refuses to open it (Image size (4294836225 pixels) exceeds limit of 178956970 pixels, could be "
        "decompression bomb DOS attack.). If the file is trusted, raise PIL.Image.MAX_IMAGE_PIXELS"
    )
    with pytest.raises(xl.BadImageError) as caught:
        read_image(str(tmp_path / "huge.pcx"))
    assert caught.value.reason == reason


# --- the bombs of issue 19 -----------------------------------------------------------------------

BOMBS = {  # name -> (bytes, what the header declares)
    "lossless.jpg": (lambda: webp_lossless(16383, 16383), "16383 x 16383 = 268,402,689"),  # a WebP named .jpg
    "scan.tif": (lambda: tiff_deflate_bomb(15000, 15000), "15000 x 15000 = 225,000,000"),
    "huge.bmp": (lambda: bmp_header(50000, 50000), "50000 x 50000 = 2,500,000,000"),
    "sky_hdr.jpg": (lambda: hdr_header(30000, 20000), "30000 x 20000 = 600,000,000"),  # .hdr is not listed
}


def bomb_reason(declared: str) -> str:
    return (
        f"the image declares {declared} pixels, over the limit of 178,956,970 (a decompression bomb, or a "
        "very large image). If the file is trusted, pass a larger max_pixels (or None) to the dataset"
    )


@pytest.fixture(scope="module")
def bomb_folder(tmp_path_factory) -> str:
    """root/bombs/<the four bombs>, root/good/<two small PNGs>."""
    root = tmp_path_factory.mktemp("bombs")
    (root / "bombs").mkdir()
    (root / "good").mkdir()
    for name, (make, _) in BOMBS.items():
        (root / "bombs" / name).write_bytes(make())
    for i in range(2):
        (root / "good" / f"{i}.png").write_bytes(cv2_bytes(".png", IMAGE + i))
    return str(root)


def test_bombs_are_files_of_a_few_bytes_to_a_few_hundred_kb(bomb_folder):
    sizes = {name: os.path.getsize(os.path.join(bomb_folder, "bombs", name)) for name in BOMBS}
    assert 200_000 < sizes.pop("scan.tif") < 250_000
    assert sizes == {"lossless.jpg": 36, "huge.bmp": 54, "sky_hdr.jpg": 117}


def test_each_bomb_is_refused_naming_the_file_and_skipped_under_skip(bomb_folder):
    dataset = xl.ImageFolder(bomb_folder, image_size=(8, 8))
    names = [os.path.basename(name) for name in dataset.filenames]
    for index, name in enumerate(names):
        if name not in BOMBS:
            continue
        path = os.path.join(bomb_folder, "bombs", name)
        with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {path}: ")) as caught:
            dataset.load(index, seed=0, epoch=0, with_targets=True)
        assert (caught.value.path, caught.value.reason) == (path, bomb_reason(BOMBS[name][1]))
    with pytest.warns(UserWarning, match=re.escape("4 of 6 files cannot be read and are left out")):
        skipping = xl.ImageFolder(bomb_folder, image_size=(8, 8), on_bad_file="skip")
    assert skipping.filenames == [os.path.join("good", "0.png"), os.path.join("good", "1.png")]
    assert sorted(reason for _, reason in skipping.skipped) == sorted(bomb_reason(d) for _, d in BOMBS.values())


PEAK_MEMORY = textwrap.dedent(
    """
    import json, resource, sys, warnings
    import xloader as xl
    from xloader.decoding import read_image

    root, paths = sys.argv[1], sys.argv[2:]
    read_image(paths[-1])  # a good PNG: the decoders' own buffers are in the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reasons = []
    for path in paths[:-1]:
        try:
            read_image(path)
        except xl.BadImageError as error:
            reasons.append(error.reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = len(xl.ImageFolder(root, image_size=(8, 8), on_bad_file="skip"))
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"reasons": reasons, "kept": kept, "growth_kib": growth}))
    """
)


def test_bombs_are_refused_before_decoding_in_bounded_memory(bomb_folder):
    """Decoded, these take 0.2 to 7 GB; refused, the peak grows by the file bytes read (under 1 MB)."""
    paths = [os.path.join(bomb_folder, "bombs", name) for name in BOMBS] + [os.path.join(bomb_folder, "good", "0.png")]
    done = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, bomb_folder, *paths], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["reasons"] == [bomb_reason(declared) for _, declared in BOMBS.values()]
    assert result["kept"] == 2
    assert result["growth_kib"] < 100 * 1024, f"peak RSS grew by {result['growth_kib'] / 1024:.0f} MiB"


def test_opencv_errors_become_bad_image_errors_and_obey_skip(tmp_path):
    # Without xloader's limit, OpenCV's own (2^30 pixels) refuses this BMP with a cv2.error.
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "huge.bmp").write_bytes(bmp_header(50000, 50000))
    (tmp_path / "a" / "ok.png").write_bytes(cv2_bytes(".png"))
    path = str(tmp_path / "a" / "huge.bmp")
    reason = "OpenCV cannot decode it (pixels <= CV_IO_MAX_IMAGE_PIXELS in validateInputImageSize)"
    with pytest.raises(xl.BadImageError) as caught:
        read_image(path, max_pixels=None)
    assert (caught.value.path, caught.value.reason) == (path, reason)
    with pytest.warns(UserWarning, match="1 of 2 files cannot be read"):
        dataset = xl.ImageFolder(str(tmp_path), image_size=None, max_pixels=None, on_bad_file="skip")
    assert dataset.skipped[0][1] == reason and len(dataset) == 1


# --- floating-point images -----------------------------------------------------------------------

FLOAT_LEVELS = np.rint(FLOATS * 255).astype(np.uint8)  # the documented mapping


@pytest.mark.parametrize("extension", [".tiff", ".pfm", ".hdr"])
def test_float_images_in_0_1_decode_to_rint_255v_in_every_colour_mode(extension, tmp_path):
    data = cv2_bytes(extension, FLOATS)
    floats = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # BGR
    if extension != ".hdr":  # HDR keeps 8-bit mantissas: its floats are FLOATS rounded
        np.testing.assert_array_equal(floats, FLOATS)
    levels = np.rint(floats * 255).astype(np.uint8)
    path = tmp_path / f"ramp{extension}"
    path.write_bytes(data)
    rgb = read_image(str(path), "rgb")
    np.testing.assert_array_equal(rgb, levels[:, :, ::-1])
    rgba = read_image(str(path), "rgba")
    np.testing.assert_array_equal(rgba[:, :, :3], rgb)
    np.testing.assert_array_equal(rgba[:, :, 3], np.full((5, 7), 255))
    np.testing.assert_array_equal(read_image(str(path), "grayscale")[:, :, 0], cv2.cvtColor(levels, cv2.COLOR_BGR2GRAY))
    assert rgb.max() == 255  # not the silent black image of issue 19


def test_a_grey_float_tiff_is_not_black(tmp_path):
    path = tmp_path / "grey.tif"
    path.write_bytes(cv2_bytes(".tiff", FLOATS[:, :, 0]))
    np.testing.assert_array_equal(read_image(str(path), "grayscale")[:, :, 0], FLOAT_LEVELS[:, :, 0])
    np.testing.assert_array_equal(read_image(str(path), "rgb"), np.repeat(FLOAT_LEVELS[:, :, :1], 3, axis=2))


@pytest.mark.parametrize(("values", "shown"), [(FLOATS * 4, "from 0 to 4"), (FLOATS - 0.5, "from -0.5 to 0.5")])
def test_float_images_outside_0_1_are_refused_by_name(values, shown, tmp_path):
    path = tmp_path / "radiance.pfm"
    path.write_bytes(cv2_bytes(".pfm", values))
    reason = (
        f"a floating-point image with values {shown}; xloader maps floats in [0, 1] to 0-255 and does not guess "
        "other ranges. Convert the file to 8 or 16 bits first (tone-map an HDR image)"
    )
    for color_mode in ("rgb", "rgba", "grayscale"):
        with pytest.raises(xl.BadImageError) as caught:
            read_image(str(path), color_mode)
        assert caught.value.reason == reason


def test_a_float_format_no_decoder_reads_is_refused_clearly(tmp_path):
    path = tmp_path / "half.tif"
    half = FLOATS[:, :, 0].astype(np.float16)
    path.write_bytes(tiff(7, 5, strip=half.tobytes(), bits=16, sample_format=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(xl.BadImageError) as caught:
            read_image(str(path))
    assert caught.value.reason == (
        "a TIFF image with floating-point samples that neither OpenCV nor Pillow decodes (16-bit floats, for one); "
        "convert it to 8 or 16-bit integers or 32-bit floats"
    )
