"""Every bad input of the reliability issue, with its documented outcome, through `Batches` and
both adapters; and the bad-file policy (`on_bad_file="skip"`) that leaves them out and reports them.

Outcomes (docs/data.md#bad-files lists the same table):
- decoded: PNG named .jpg, CMYK JPEG, 16-bit PNG, palette PNG with transparency, RGBA into rgb,
  grayscale into rgb, a non-UTF-8 file name, a symlink loop (indexed once);
- error naming the file and the reason: zero-byte file, truncated JPEG, random bytes named .jpg,
  text named .jpg, an image over the pixel limit, a file deleted after indexing, an unreadable file.
"""

from __future__ import annotations

import io
import os
import re

import cv2
import numpy as np
import pytest
from PIL import Image

import xloader as xl
from xloader.testing import assert_same_batches

RGB = (200, 100, 30)


def png_bytes(array: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def solid_rgb(value=RGB, size=(4, 6)) -> np.ndarray:
    return np.broadcast_to(np.array(value, np.uint8), (*size, 3)).copy()


def jpeg_bytes(array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(array, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


def cmyk_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(solid_rgb()).convert("CMYK").save(buffer, format="JPEG", quality=100)
    return buffer.getvalue()


def palette_png_with_transparency() -> bytes:
    image = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    return buffer.getvalue()


SIXTEEN_BIT = (np.arange(24, dtype=np.uint16).reshape(4, 6) * 2000 + 255).astype(np.uint16)
RGBA = np.dstack([solid_rgb(), np.full((4, 6), 40, np.uint8)])

# name, bytes, color_mode, expected first pixel (decoded) — exact values
DECODED = [
    ("png_named.jpg", png_bytes(solid_rgb()), "rgb", list(RGB)),
    ("cmyk.jpg", cmyk_jpeg(), "rgb", [201, 101, 31]),  # Pillow says (200, 100, 30): libjpeg vs Pillow CMYK maths
    ("sixteen_bit.png", png_bytes(SIXTEEN_BIT), "rgb", [int(SIXTEEN_BIT[0, 0]) >> 8] * 3),  # the high byte
    ("palette_transparent.png", palette_png_with_transparency(), "rgb", [255, 0, 0]),
    ("palette_transparent_rgba.png", palette_png_with_transparency(), "rgba", [255, 0, 0, 0]),  # tRNS -> alpha
    ("rgba_into_rgb.png", png_bytes(RGBA), "rgb", list(RGB)),  # alpha dropped, not composited
    ("grey_into_rgb.png", png_bytes(np.full((4, 6), 77, np.uint8)), "rgb", [77, 77, 77]),
]

# name, bytes, reason (the exact words of BadImageError.reason)
BAD = [
    ("zero.jpg", b"", "the file is empty (0 bytes)"),
    (
        "cut.jpg",
        jpeg_bytes(solid_rgb(size=(64, 64)))[:300],
        "truncated JPEG (no end-of-image marker); the file is incomplete",
    ),
    (
        "noise.jpg",
        b"\x00" + np.random.default_rng(1).bytes(400),
        "not a decodable image (unknown format or corrupt data)",
    ),
    ("notes.jpg", b"my notes, not a photo\n", "not a decodable image (unknown format or corrupt data)"),
]


def one_file_folder(tmp_path, name: str | bytes, content: bytes) -> tuple[str, str]:
    """root/only/<name>; returns (root, the path as xloader names it)."""
    folder = os.path.join(os.fsencode(tmp_path), b"root", b"only")
    os.makedirs(folder)
    raw = os.path.join(folder, os.fsencode(name))
    with open(raw, "wb") as file:
        file.write(content)
    return os.fsdecode(os.path.join(os.fsencode(tmp_path), b"root")), os.fsdecode(raw)


def through_every_loader(dataset) -> list[np.ndarray]:
    """The first x of batch 0, epoch 0 from Batches, torch (2 workers) and Keras (2 threads)."""
    from xloader.keras import PyDataset
    from xloader.torch import DataLoader

    outputs = [xl.Batches(dataset, batch_size=1).get_batch(0, 0)[0][0]]
    outputs.append(next(iter(DataLoader(dataset, batch_size=1, num_workers=2, layout="NHWC")))[0][0].numpy())
    with PyDataset(dataset, batch_size=1, workers=2) as keras_dataset:
        outputs.append(keras_dataset[0][0][0])
    return outputs


@pytest.mark.parametrize(("name", "content", "color_mode", "pixel"), DECODED, ids=[d[0] for d in DECODED])
def test_unusual_but_valid_files_decode_the_same_everywhere(tmp_path, name, content, color_mode, pixel):
    root, _ = one_file_folder(tmp_path, name, content)
    for x in through_every_loader(xl.ImageFolder(root, image_size=None, color_mode=color_mode)):
        assert x.dtype == np.uint8 and x.shape[2] == len(pixel)
        assert x[0, 0].tolist() == pixel


def test_a_file_name_that_is_not_utf8_is_read_and_named(tmp_path):
    name = b"caf\xe9.png"  # Latin-1, not UTF-8
    root, path = one_file_folder(tmp_path, name, png_bytes(solid_rgb()))
    dataset = xl.ImageFolder(root, image_size=None)
    assert dataset.filenames == [os.path.join("only", os.fsdecode(name))]
    for x in through_every_loader(dataset):
        assert x[0, 0].tolist() == list(RGB)
    os.remove(os.fsencode(path))
    with pytest.raises(xl.BadImageError) as caught:
        xl.Batches(dataset, batch_size=1).get_batch(0, 0)
    assert os.fsencode(caught.value.path) == os.fsencode(path)


def test_a_symlink_loop_is_followed_once(tmp_path):
    root, _ = one_file_folder(tmp_path, "a.png", png_bytes(solid_rgb()))
    os.symlink("..", os.path.join(root, "only", "loop"))  # only/loop -> root
    dataset = xl.ImageFolder(root, image_size=None, follow_links=True)
    assert dataset.filenames == [os.path.join("only", "a.png")]


def expect_error_everywhere(dataset, path: str, reason: str) -> None:
    from xloader.keras import PyDataset
    from xloader.torch import DataLoader

    message = re.escape(f"cannot read {path}: {reason}")
    with pytest.raises(xl.BadImageError, match=message) as caught:
        xl.Batches(dataset, batch_size=1).get_batch(0, 0)
    assert (caught.value.path, caught.value.reason) == (path, reason)
    with pytest.raises(xl.BadImageError, match=message):  # re-raised by torch from the worker
        next(iter(DataLoader(dataset, batch_size=1, num_workers=2)))
    with PyDataset(dataset, batch_size=1, workers=2) as keras_dataset, pytest.raises(xl.BadImageError, match=message):
        keras_dataset[0]


@pytest.mark.parametrize(("name", "content", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_files_raise_naming_the_file_everywhere(tmp_path, name, content, reason):
    root, path = one_file_folder(tmp_path, name, content)
    expect_error_everywhere(xl.ImageFolder(root, image_size=(8, 8)), path, reason)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    root, path = one_file_folder(tmp_path, "big.png", png_bytes(solid_rgb(size=(30, 40))))
    reason = (
        "the image declares 40 x 30 = 1,200 pixels, over the limit of 1,000 (a decompression bomb, or a very "
        "large image). If the file is trusted, pass a larger max_pixels (or None) to the dataset"
    )
    expect_error_everywhere(xl.ImageFolder(root, image_size=(8, 8), max_pixels=1000), path, reason)
    x, y = xl.ImageFolder(root, image_size=(8, 8), max_pixels=None).load(0, seed=0, epoch=0, with_targets=False)
    np.testing.assert_array_equal(x, solid_rgb(size=(8, 8)))  # no limit: decoded and resized
    assert y is None


def test_the_default_pixel_limit_is_pillows_and_reads_only_the_header(tmp_path):
    # A PNG header declaring 100,000 x 100,000 pixels, with no pixel data at all.
    header = png_bytes(solid_rgb(size=(1, 1)))
    bomb = header[:16] + (100_000).to_bytes(4, "big") * 2 + header[24:]
    root, path = one_file_folder(tmp_path, "bomb.png", bomb)
    with pytest.raises(
        xl.BadImageError, match=re.escape("100000 x 100000 = 10,000,000,000 pixels, over the limit of 178,956,970")
    ):
        xl.Batches(xl.ImageFolder(root, image_size=(8, 8)), batch_size=1).get_batch(0, 0)


def test_a_file_deleted_after_indexing_is_named(tmp_path):
    root, path = one_file_folder(tmp_path, "gone.png", png_bytes(solid_rgb()))
    dataset = xl.ImageFolder(root, image_size=(8, 8))
    os.remove(path)
    expect_error_everywhere(dataset, path, "file not found (was it moved or deleted after the dataset was indexed?)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: permissions cannot be denied")
def test_an_unreadable_file_is_named(tmp_path):
    root, path = one_file_folder(tmp_path, "locked.png", png_bytes(solid_rgb()))
    os.chmod(path, 0)
    expect_error_everywhere(xl.ImageFolder(root, image_size=(8, 8)), path, "permission denied")


# --- on_bad_file="skip" -------------------------------------------------------------------------


@pytest.fixture
def folder_with_every_bad_file(tmp_path) -> tuple[str, list[str]]:
    root = tmp_path / "photos"
    bad_paths = []
    for label, name in enumerate(["cats", "dogs"]):
        (root / name).mkdir(parents=True)
        for i in range(5):
            (root / name / f"good{i}.png").write_bytes(png_bytes(solid_rgb((10 * i, 100 * label, 7))))
    for bad_name, content, _ in BAD:
        (root / "cats" / bad_name).write_bytes(content)
        bad_paths.append(str(root / "cats" / bad_name))
    return str(root), sorted(bad_paths)


def test_skip_leaves_bad_files_out_before_the_plan_and_reports_them(folder_with_every_bad_file):
    root, bad_paths = folder_with_every_bad_file
    with pytest.warns(UserWarning, match=r"4 of 14 files cannot be read and are left out \(on_bad_file='skip'\)"):
        dataset = xl.ImageFolder(root, image_size=(8, 8), on_bad_file="skip")
    assert len(dataset) == 10
    assert sorted(path for path, _ in dataset.skipped) == bad_paths
    assert {reason for _, reason in dataset.skipped} == {reason for _, _, reason in BAD}
    assert all(name.split(os.sep)[-1].startswith("good") for name in dataset.filenames)
    np.testing.assert_array_equal(dataset.labels, [0] * 5 + [1] * 5)
    report = dataset.validate()
    assert report.bad_files == [] and len(report.skipped) == 4 and not report.ok


@pytest.mark.parametrize("use_multiprocessing", [False, True])
def test_after_skipping_every_batch_is_full_and_both_adapters_agree(folder_with_every_bad_file, use_multiprocessing):
    import albumentations as A

    from xloader.keras import PyDataset
    from xloader.torch import DataLoader

    root, _ = folder_with_every_bad_file
    with pytest.warns(UserWarning, match="left out"):
        dataset = xl.ImageFolder(root, image_size=(8, 8), on_bad_file="skip", transform=A.Compose([A.HorizontalFlip()]))
    options = {"batch_size": 5, "shuffle": True, "seed": 3}
    loader = DataLoader(dataset, layout="NHWC", num_workers=2, **options)
    torch_batches = [(x.numpy(), y.numpy()) for _ in range(2) for x, y in loader]
    with PyDataset(dataset, workers=2, use_multiprocessing=use_multiprocessing, **options) as keras_dataset:
        keras_batches = [batch for _ in range(2) for batch in keras_dataset]
    assert [len(y) for _, y in torch_batches] == [5, 5, 5, 5]
    assert_same_batches(keras_batches, torch_batches)
    seen = sorted(int(v) for _, y in torch_batches[:2] for v in y)
    assert seen == [0] * 5 + [1] * 5  # each good sample once per epoch


def test_skip_applies_after_the_split_so_bad_files_never_move_good_ones(folder_with_every_bad_file):
    root, _ = folder_with_every_bad_file
    clean = xl.ImageFolder(root, image_size=(8, 8), validation_split=0.4, subset="training")
    with pytest.warns(UserWarning, match="left out"):
        skipped = xl.ImageFolder(root, image_size=(8, 8), validation_split=0.4, subset="training", on_bad_file="skip")
    assert set(skipped.filenames) == {name for name in clean.filenames if "good" in name}


def test_skip_refuses_a_dataset_where_every_file_is_bad(tmp_path):
    root, _ = one_file_folder(tmp_path, "zero.jpg", b"")
    with pytest.raises(xl.DatasetError, match="every one of the 1 files is bad"):
        xl.ImageFolder(root, image_size=(8, 8), on_bad_file="skip")


def test_user_code_errors_are_never_skipped(tmp_path):
    def broken(path):
        raise ZeroDivisionError("a bug in my loader")

    with pytest.raises(xl.SampleError, match="a bug in my loader"):
        xl.FileList(["a", "b"], [0, 1], load=broken, on_bad_file="skip")


def test_unknown_policy_is_refused(tmp_path):
    root, _ = one_file_folder(tmp_path, "a.png", png_bytes(solid_rgb()))
    with pytest.raises(ValueError, match="on_bad_file must be one of 'raise', 'skip'; got 'ignore'"):
        xl.ImageFolder(root, image_size=None, on_bad_file="ignore")


def test_file_list_and_manifest_skip_the_same_way(tmp_path):
    good = png_bytes(solid_rgb())
    for name, content in [("a.png", good), ("b.png", b""), ("c.png", good)]:
        (tmp_path / name).write_bytes(content)
    with pytest.warns(UserWarning, match="1 of 3 files cannot be read"):
        files = xl.FileList(["a.png", "b.png", "c.png"], [0, 1, 2], root=str(tmp_path), on_bad_file="skip")
    assert files.ids == ["a.png", "c.png"]
    np.testing.assert_array_equal(xl.Batches(files, batch_size=2).get_batch(0, 0)[1], [0, 2])
    (tmp_path / "list.csv").write_text("filename,class\na.png,x\nb.png,y\nc.png,y\n")
    with pytest.warns(UserWarning, match="1 of 3 files cannot be read"):
        manifest = xl.ImageManifest(str(tmp_path / "list.csv"), image_size=None, on_bad_file="skip")
    assert manifest.filenames == ["a.png", "c.png"] and manifest.class_names == ["x", "y"]
    np.testing.assert_array_equal(xl.Batches(manifest, batch_size=2).get_batch(0, 0)[1], [0, 1])


# --- segmentation sources skip whole samples, their masks with them --------------------------------


def _three_images(tmp_path) -> str:
    images = tmp_path / "images"
    images.mkdir()
    for i, name in enumerate(["a", "b", "c"]):
        (images / f"{name}.png").write_bytes(png_bytes(solid_rgb((50 * i, 0, 0), size=(2, 3))))
    (images / "b.png").write_bytes(b"")  # the bad one, in the middle
    return str(images)


def test_segmentation_sources_skip_a_bad_sample_and_keep_the_others_masks_aligned(tmp_path):
    images = _three_images(tmp_path)
    masks, objects = tmp_path / "masks", tmp_path / "objects"
    for name, value in [("a", 1), ("b", 2), ("c", 3)]:
        save = Image.fromarray(np.full((2, 3), value, np.uint8))
        os.makedirs(masks, exist_ok=True)
        os.makedirs(objects / name)
        save.save(masks / f"{name}.png")
        save.save(objects / name / "obj.png")  # MultiMaskFolder, layout="by_image": one object each
    rows = tmp_path / "rle.csv"
    # a: pixel 1 (class x); b: pixels 1-2 (class y); c: pixels 2-4 (class x) and 5 (class y)
    rows.write_text("image_id,class,rle\na,x,1 1\nb,y,1 2\nc,x,2 3\nc,y,5 1\n")
    with pytest.warns(UserWarning, match="1 of 3 files cannot be read"):
        pairs = xl.ImageMaskFolder(images, str(masks), image_size=None, on_bad_file="skip")
    assert pairs.image_files == ["a.png", "c.png"] and pairs.mask_files == ["a.png", "c.png"]
    np.testing.assert_array_equal(xl.Batches(pairs, batch_size=2).get_batch(0, 0)[1][:, 0, 0], [1, 3])

    with pytest.warns(UserWarning, match="1 of 3 files cannot be read"):
        objects = xl.MultiMaskFolder(images, str(objects), layout="by_image", image_size=None, on_bad_file="skip")
    assert objects.image_files == ["a.png", "c.png"]
    assert objects.mask_files(1) == [os.path.join("c", "obj.png")]

    with pytest.warns(UserWarning, match="1 of 3 files cannot be read"):
        table = xl.RLEMasks(images, str(rows), image_size=None, on_bad_file="skip")
    assert table.image_files == ["a.png", "c.png"]
    _, y = xl.Batches(table, batch_size=2).get_batch(0, 0)
    np.testing.assert_array_equal(y[0], xl.rle_decode("1 1", (2, 3)) * 1)
    np.testing.assert_array_equal(y[1], np.maximum(xl.rle_decode("2 3", (2, 3)) * 1, xl.rle_decode("5 1", (2, 3)) * 2))
    assert [os.path.basename(path) for path, _ in table.skipped] == ["b.png"]


def test_a_permission_error_is_named_even_when_running_as_root(tmp_path, monkeypatch):
    # Root reads any file, so the refusal is simulated where xloader opens files: the test is
    # that PermissionError becomes a BadImageError naming the file, in every in-process loader.
    from xloader import decoding
    from xloader.keras import PyDataset
    from xloader.torch import DataLoader

    root, path = one_file_folder(tmp_path, "locked.png", png_bytes(solid_rgb()))

    def refusing_open(file, *args, **kwargs):
        if os.fspath(file) == path:
            raise PermissionError(13, "Permission denied", path)
        return open(file, *args, **kwargs)

    monkeypatch.setattr(decoding, "open", refusing_open, raising=False)
    dataset = xl.ImageFolder(root, image_size=(8, 8))
    message = re.escape(f"cannot read {path}: permission denied")
    with pytest.raises(xl.BadImageError, match=message):
        xl.Batches(dataset, batch_size=1).get_batch(0, 0)
    with pytest.raises(xl.BadImageError, match=message):
        next(iter(DataLoader(dataset, batch_size=1, num_workers=0)))
    with PyDataset(dataset, batch_size=1, workers=2) as threads, pytest.raises(xl.BadImageError, match=message):
        threads[0]
