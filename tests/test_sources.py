"""What each source yields, in which order, and how bad input on disk is reported."""

from __future__ import annotations

import copy
import os
import re
import warnings

import albumentations as A
import cv2
import numpy as np
import pytest
from PIL import Image

import xloader as xl
from xloader._random import sample_generators
from xloader.transforms import check_transform

# --- helpers ------------------------------------------------------------------------------------


def save_png(path, array: np.ndarray, palette: list[int] | None = None) -> str:
    """Write `array` losslessly as PNG content (whatever the file's extension); return the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(array)
    if palette is not None:
        image.putpalette(palette + [0] * (768 - len(palette)))  # an "L" image becomes "P"
    image.save(path, format="PNG")
    return str(path)


def jpeg_bytes(height: int = 48, width: int = 64) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def solid(value, size: tuple[int, int] = (2, 3)) -> np.ndarray:
    """An (H, W, 3) uint8 image of one colour (or one grey level)."""
    return np.full((*size, 3), value, dtype=np.uint8)


def whole(dataset, **options):
    """The one batch holding the whole dataset in index order."""
    return xl.Batches(dataset, batch_size=len(dataset), **options).get_batch(0, 0)


def pattern(height: int = 2, width: int = 3) -> np.ndarray:
    """An (H, W, 3) uint8 image with a different value in every pixel and channel."""
    return np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3) * 5


ASYMMETRIC_MASK = np.array([[0, 1, 2], [2, 0, 0]], dtype=np.uint8)


@pytest.fixture
def two_class_root(tmp_path) -> str:
    """cats: a.png (grey 10), b.png (grey 20); dogs: c.png (grey 30). Every image 2x3."""
    root = tmp_path / "train"
    save_png(root / "cats" / "a.png", solid(10))
    save_png(root / "cats" / "b.png", solid(20))
    save_png(root / "dogs" / "c.png", solid(30))
    return str(root)


def single_file_root(tmp_path, name: str, content: bytes) -> tuple[str, str]:
    """root/only/<name> holding `content`; returns (root, the file's path as sources name it)."""
    folder = tmp_path / "root" / "only"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(content)
    return str(tmp_path / "root"), os.path.join(str(tmp_path / "root"), "only", name)


# --- ImageFolder: what is indexed, in which order -----------------------------------------------


def test_image_folder_classes_are_sorted_subfolders_and_hidden_ones_are_skipped(tmp_path):
    root = tmp_path / "train"
    for name in ["zebra", "Ant", "cat", ".ipynb_checkpoints", ".git"]:
        save_png(root / name / "x.png", solid(1))
    ds = xl.ImageFolder(root, image_size=None)
    assert ds.class_names == ["Ant", "cat", "zebra"]
    assert ds.class_indices == {"Ant": 0, "cat": 1, "zebra": 2}


def test_image_folder_lists_files_in_keras_order_recursively_with_any_case_extension(tmp_path):
    root = tmp_path / "train"
    for rel in [
        "cats/b.png",
        "cats/B.PNG",
        "cats/a.JPG",
        "cats/sub/deeper/e.jpeg",
        "cats/sub/d.png",
        "cats/zz/c.bmp",
        "dogs/f.Jpeg",
        "dogs/.cache/g.png",
        "dogs/._f.Jpeg",
    ]:
        save_png(root / rel, solid(1))
    for rel in ["cats/notes.txt", "cats/labels.csv", "cats/anim.gif", "dogs/readme", ".hidden/h.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"not indexed")
    ds = xl.ImageFolder(root, image_size=None)
    # Class by class; in each, directories sorted by path and files sorted by name within each
    # (keras DirectoryIterator.filenames). Upper-case sorts before lower-case.
    assert ds.filenames == [
        os.path.join("cats", "B.PNG"),
        os.path.join("cats", "a.JPG"),
        os.path.join("cats", "b.png"),
        os.path.join("cats", "sub", "d.png"),
        os.path.join("cats", "sub", "deeper", "e.jpeg"),
        os.path.join("cats", "zz", "c.bmp"),
        os.path.join("dogs", "f.Jpeg"),
    ]  # hidden entries (a macOS ._ resource fork, a .cache folder) are not samples
    assert ds.filepaths[0] == os.path.join(str(root), "cats", "B.PNG")
    assert len(ds) == 7
    np.testing.assert_array_equal(ds.labels, np.array([0, 0, 0, 0, 0, 0, 1], dtype=np.int64))
    assert ds.labels.dtype == np.int64


def test_image_folder_batch_follows_index_order_with_int64_labels(two_class_root):
    ds = xl.ImageFolder(two_class_root, image_size=None)
    x, y = whole(ds)
    assert x.shape == (3, 2, 3, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[:, 0, 0, 0], [10, 20, 30])
    assert y.dtype == np.int64 and y.shape == (3,)
    np.testing.assert_array_equal(y, [0, 0, 1])


def test_image_folder_ignores_images_directly_in_root_with_a_warning(two_class_root):
    save_png(os.path.join(two_class_root, "loose.png"), solid(1))
    with pytest.warns(UserWarning, match=r"1 image files directly in .* are ignored: loose\.png"):
        ds = xl.ImageFolder(two_class_root, image_size=None)
    assert ds.filenames == [os.path.join("cats", "a.png"), os.path.join("cats", "b.png"), os.path.join("dogs", "c.png")]


def test_image_folder_class_names_fix_order_and_subset(tmp_path, two_class_root):
    save_png(os.path.join(two_class_root, "birds", "d.png"), solid(40))
    ds = xl.ImageFolder(two_class_root, image_size=None, class_names=["dogs", "cats"])
    assert ds.class_names == ["dogs", "cats"]
    assert ds.class_indices == {"dogs": 0, "cats": 1}
    assert ds.filenames == [os.path.join("dogs", "c.png"), os.path.join("cats", "a.png"), os.path.join("cats", "b.png")]
    x, y = whole(ds)
    np.testing.assert_array_equal(x[:, 0, 0, 0], [30, 10, 20])
    np.testing.assert_array_equal(y, [0, 1, 1])


def test_image_folder_train_and_val_share_indices_through_class_names(tmp_path, two_class_root):
    val = tmp_path / "val"
    save_png(val / "dogs" / "v.png", solid(50))  # val has no "cats" folder content yet
    (val / "cats").mkdir()
    train = xl.ImageFolder(two_class_root, image_size=None)
    with pytest.warns(UserWarning, match="kept as classes with no samples"):
        valid = xl.ImageFolder(val, image_size=None, class_names=train.class_names, allow_empty_classes=True)
    assert valid.class_indices == train.class_indices == {"cats": 0, "dogs": 1}
    x, y = whole(valid)
    np.testing.assert_array_equal(y, [1])
    np.testing.assert_array_equal(x[:, 0, 0, 0], [50])


def test_image_folder_class_name_without_folder_raises_naming_it(two_class_root):
    with pytest.raises(
        xl.DatasetError, match=r"class_names \['birds'\] have no folder in .*train.*found: \['cats', 'dogs'\]"
    ):
        xl.ImageFolder(two_class_root, image_size=None, class_names=["cats", "birds"])


def test_image_folder_class_names_must_be_a_list_without_duplicates(two_class_root):
    with pytest.raises(TypeError, match="class_names must be a list of names, got 'cats'."):
        xl.ImageFolder(two_class_root, image_size=None, class_names="cats")
    with pytest.raises(ValueError, match=r"class_names lists 'cats' more than once\."):
        xl.ImageFolder(two_class_root, image_size=None, class_names=["cats", "dogs", "cats"])


# --- ImageFolder: label modes -------------------------------------------------------------------


def test_image_folder_label_mode_categorical_is_float32_one_hot(two_class_root):
    _, y = whole(xl.ImageFolder(two_class_root, image_size=None, label_mode="categorical"))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32))


def test_image_folder_label_mode_binary_is_float32_zero_or_one(two_class_root):
    _, y = whole(xl.ImageFolder(two_class_root, image_size=None, label_mode="binary"))
    assert y.dtype == np.float32 and y.shape == (3,)
    np.testing.assert_array_equal(y, np.array([0.0, 0.0, 1.0], dtype=np.float32))


def test_image_folder_label_mode_binary_needs_exactly_two_classes(two_class_root):
    save_png(os.path.join(two_class_root, "birds", "d.png"), solid(40))
    with pytest.raises(
        xl.DatasetError, match=r"label_mode='binary' needs exactly 2 classes, but .* has 3: \['birds', 'cats', 'dogs'\]"
    ):
        xl.ImageFolder(two_class_root, image_size=None, label_mode="binary")


def test_image_folder_label_mode_none_gives_images_only(two_class_root):
    ds = xl.ImageFolder(two_class_root, image_size=None, label_mode=None)
    assert ds.has_targets is False
    x = whole(ds)
    assert isinstance(x, np.ndarray) and x.shape == (3, 2, 3, 3)
    np.testing.assert_array_equal(x[:, 0, 0, 0], [10, 20, 30])


def test_image_folder_to_fit_false_gives_images_only(two_class_root):
    x = whole(xl.ImageFolder(two_class_root, image_size=None), to_fit=False)
    assert isinstance(x, np.ndarray) and x.shape == (3, 2, 3, 3)


def test_image_folder_rejects_unknown_option_values(two_class_root):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "label_mode must be one of 'int' (Keras's 'sparse'), 'categorical', 'binary', 'input' or None; "
            "got 'onehot'."
        ),
    ):
        xl.ImageFolder(two_class_root, image_size=None, label_mode="onehot")
    with pytest.raises(ValueError, match="color_mode must be one of 'rgb', 'rgba', 'grayscale'; got 'bgr'"):
        xl.ImageFolder(two_class_root, image_size=None, color_mode="bgr")
    with pytest.raises(ValueError, match="interpolation must be one of .*; got 'cubic'"):
        xl.ImageFolder(two_class_root, image_size=None, interpolation="cubic")
    with pytest.raises(TypeError, match=r"image_size must be \(height, width\) as two ints, or None; got 224"):
        xl.ImageFolder(two_class_root, image_size=224)
    with pytest.raises(ValueError, match=r"image_size must be positive, got \(0, 5\)"):
        xl.ImageFolder(two_class_root, image_size=(0, 5))


# --- ImageFolder: colour modes, values and sizes ------------------------------------------------


def test_rgb_png_decodes_to_its_exact_values_in_rgb_order(tmp_path):
    save_png(tmp_path / "r" / "c" / "x.png", solid((10, 200, 30), size=(4, 6)))
    x, _ = whole(xl.ImageFolder(tmp_path / "r", image_size=None))
    assert x.shape == (1, 4, 6, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[0], solid((10, 200, 30), size=(4, 6)))


def test_jpeg_decodes_like_opencv_in_rgb_order(tmp_path):
    (tmp_path / "r" / "c").mkdir(parents=True)
    path = tmp_path / "r" / "c" / "x.jpg"
    path.write_bytes(jpeg_bytes())
    x, _ = whole(xl.ImageFolder(tmp_path / "r", image_size=None))
    expected = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(x[0], expected)


def test_png_content_named_jpg_decodes_from_its_content(tmp_path):
    save_png(tmp_path / "r" / "c" / "actually_png.jpg", solid((10, 200, 30)))
    x, _ = whole(xl.ImageFolder(tmp_path / "r", image_size=None))
    np.testing.assert_array_equal(x[0], solid((10, 200, 30)))


def test_grayscale_mode_gives_one_channel(tmp_path):
    save_png(tmp_path / "r" / "c" / "grey_rgb.png", solid(77))  # RGB file with equal channels
    save_png(tmp_path / "r" / "c" / "grey_l.png", np.full((2, 3), 140, dtype=np.uint8))  # mode "L"
    x, _ = whole(xl.ImageFolder(tmp_path / "r", image_size=None, color_mode="grayscale"))
    assert x.shape == (2, 2, 3, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[0], np.full((2, 3, 1), 140, np.uint8))  # grey_l sorts first
    np.testing.assert_array_equal(x[1], np.full((2, 3, 1), 77, np.uint8))


def test_grey_png_in_rgb_mode_repeats_the_grey_value(tmp_path):
    save_png(tmp_path / "r" / "c" / "grey_l.png", np.full((2, 3), 140, dtype=np.uint8))
    x, _ = whole(xl.ImageFolder(tmp_path / "r", image_size=None))
    np.testing.assert_array_equal(x[0], solid(140))


def test_rgba_mode_gives_four_channels_with_the_alpha(tmp_path):
    save_png(tmp_path / "r" / "c" / "a.png", np.full((2, 3, 4), (10, 200, 30, 128), dtype=np.uint8))
    save_png(tmp_path / "r" / "c" / "b.png", solid((10, 200, 30)))  # no alpha: opaque
    x, _ = whole(xl.ImageFolder(tmp_path / "r", image_size=None, color_mode="rgba"))
    assert x.shape == (2, 2, 3, 4) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[0], np.full((2, 3, 4), (10, 200, 30, 128), np.uint8))
    np.testing.assert_array_equal(x[1], np.full((2, 3, 4), (10, 200, 30, 255), np.uint8))


def test_image_size_is_height_then_width(tmp_path):
    save_png(tmp_path / "r" / "c" / "a.png", solid((10, 200, 30), size=(8, 8)))
    save_png(tmp_path / "r" / "c" / "b.png", solid((1, 2, 3), size=(5, 9)))
    x, _ = whole(xl.ImageFolder(tmp_path / "r", image_size=(3, 7)))
    assert x.shape == (2, 3, 7, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[0], solid((10, 200, 30), size=(3, 7)))  # a solid colour stays exact
    np.testing.assert_array_equal(x[1], solid((1, 2, 3), size=(3, 7)))


def test_image_size_none_with_mixed_sizes_cannot_be_batched(tmp_path):
    save_png(tmp_path / "r" / "c" / "a.png", solid(1, size=(2, 3)))
    save_png(tmp_path / "r" / "c" / "b.png", solid(1, size=(3, 2)))
    ds = xl.ImageFolder(tmp_path / "r", image_size=None)
    b_path = os.path.join(str(tmp_path / "r"), "c", "b.png")
    with pytest.raises(
        xl.DatasetError,
        match=re.escape(f"cannot batch sample 1 ({b_path}) of batch 0, epoch 0: its x is (3, 2, 3) uint8"),
    ):
        whole(ds)


# --- ImageFolder: bad folders -------------------------------------------------------------------


def test_missing_root_raises_file_not_found_naming_it(tmp_path):
    missing = str(tmp_path / "no_such_dir")
    with pytest.raises(FileNotFoundError, match=re.escape(f"ImageFolder root {missing!r} does not exist.")):
        xl.ImageFolder(missing, image_size=None)


def test_root_that_is_a_file_raises_naming_it(tmp_path):
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK")
    with pytest.raises(xl.DatasetError, match=re.escape(f"ImageFolder root {str(path)!r} is not a directory.")):
        xl.ImageFolder(path, image_size=None)


@pytest.mark.parametrize(
    "content", [[], ["a.png"], [".hidden/a.png"]], ids=["empty", "loose-image-only", "hidden-only"]
)
def test_root_without_class_folders_raises(tmp_path, content):
    root = tmp_path / "r"
    root.mkdir()
    for rel in content:
        save_png(root / rel, solid(1))
    with pytest.raises(xl.DatasetError, match=re.escape(f"ImageFolder root {str(root)!r} has no class folders.")):
        xl.ImageFolder(root, image_size=None)


def test_class_folders_without_any_image_raise(tmp_path):
    root = tmp_path / "r"
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / "dogs" / "notes.txt").write_text("no images here")
    with pytest.raises(
        xl.DatasetError, match=r"has no images \(extensions: .*\) in its class folders \['cats', 'dogs'\]"
    ):
        xl.ImageFolder(root, image_size=None)


def test_class_folder_without_images_raises_naming_it(two_class_root):
    os.mkdir(os.path.join(two_class_root, "birds"))
    birds = os.path.join(two_class_root, "birds")
    with pytest.raises(
        xl.DatasetError, match=re.escape(f"class folders with no images in {two_class_root!r}: [{birds!r}].")
    ):
        xl.ImageFolder(two_class_root, image_size=None)


def test_allow_empty_classes_keeps_the_index_reserved(two_class_root):
    os.mkdir(os.path.join(two_class_root, "birds"))
    with pytest.warns(UserWarning, match="class folders with no images"):
        ds = xl.ImageFolder(two_class_root, image_size=None, allow_empty_classes=True, label_mode="categorical")
    assert ds.class_indices == {"birds": 0, "cats": 1, "dogs": 2}
    _, y = whole(ds)
    np.testing.assert_array_equal(y, np.array([[0, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32))


# --- ImageFolder: bad files ---------------------------------------------------------------------


def truncated_png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


def truncated_jpeg_with_thumbnail() -> bytes:
    # An EXIF block holds a complete thumbnail JPEG, end marker included; the main image is cut.
    thumbnail = jpeg_bytes(8, 8)
    exif = b"Exif\x00\x00" + thumbnail
    app1 = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    main = jpeg_bytes()
    whole = main[:2] + app1 + main[2:]
    return whole[: len(whole) - len(main) // 2]


BAD_FILES = [
    (
        "cut_with_thumbnail.jpg",
        truncated_jpeg_with_thumbnail(),
        "truncated JPEG (no end-of-image marker); the file is incomplete",
    ),
    ("empty.jpg", b"", "the file is empty (0 bytes)"),
    (
        "cut.jpg",
        jpeg_bytes()[: len(jpeg_bytes()) // 2],
        "truncated JPEG (no end-of-image marker); the file is incomplete",
    ),
    ("cut.png", truncated_png(), "not a decodable image (unknown format or corrupt data)"),
    (
        "noise.jpg",
        b"\x00" + np.random.default_rng(1).bytes(500),
        "not a decodable image (unknown format or corrupt data)",
    ),
    (
        "notes.jpg",
        b"these are my notes, saved with the wrong extension\n",
        "not a decodable image (unknown format or corrupt data)",
    ),
]


@pytest.mark.parametrize(("name", "content", "reason"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_image_raises_bad_image_error_naming_file_and_reason(tmp_path, name, content, reason):
    root, path = single_file_root(tmp_path, name, content)
    ds = xl.ImageFolder(root, image_size=(4, 4))  # indexing does not open files
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {path}: {reason}.")) as caught:
        xl.Batches(ds, batch_size=1).get_batch(3, 0)
    assert caught.value.path == path
    assert caught.value.reason == reason
    assert caught.value.__notes__ == [f"while loading sample 0 ({path}) of batch 0, epoch 3"]


def test_bad_image_in_a_later_batch_names_its_sample_and_batch(tmp_path, two_class_root):
    bad = os.path.join(two_class_root, "dogs", "d.png")
    with open(bad, "wb") as file:
        file.write(b"")
    ds = xl.ImageFolder(two_class_root, image_size=None)
    batches = xl.Batches(ds, batch_size=2)
    np.testing.assert_array_equal(batches.get_batch(0, 0)[1], [0, 0])  # the good batch still loads
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {bad}: the file is empty (0 bytes).")) as caught:
        batches.get_batch(0, 1)
    assert caught.value.__notes__ == [f"while loading sample 3 ({bad}) of batch 1, epoch 0"]


def test_file_deleted_after_indexing_raises_naming_it(two_class_root):
    ds = xl.ImageFolder(two_class_root, image_size=None)
    gone = os.path.join(two_class_root, "cats", "a.png")
    os.remove(gone)
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {gone}: file not found")):
        whole(ds)


def test_complete_jpeg_with_a_long_trailer_decodes(tmp_path):
    # Google/Samsung "motion photos" append an MP4 after the JPEG's end-of-image marker; OpenCV,
    # Pillow (Keras's load_img) and torchvision all decode the JPEG part.
    jpeg = jpeg_bytes()
    trailer = b"\x00\x00\x00\x18ftypmp42" + bytes(64 * 1024)
    root, path = single_file_root(tmp_path, "PXL_0001.MP.jpg", jpeg + trailer)
    x, _ = whole(xl.ImageFolder(root, image_size=None))
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(x[0], expected)


# --- ImageMaskFolder ----------------------------------------------------------------------------


def seg_folders(tmp_path, images: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> tuple[str, str]:
    """images/<name> and masks/<name> written losslessly (PNG content whatever the extension)."""
    for name, array in images.items():
        save_png(tmp_path / "images" / name, array)
    for name, array in masks.items():
        save_png(tmp_path / "masks" / name, array)
    return str(tmp_path / "images"), str(tmp_path / "masks")


def test_image_mask_folder_pairs_by_stem_in_sorted_order(tmp_path):
    images_dir, masks_dir = seg_folders(
        tmp_path,
        {"b.jpg": solid(20), "a.jpg": solid(10), "sub/c.jpeg": solid(30)},
        {
            "a.png": np.full((2, 3), 1, np.uint8),
            "sub/c.png": np.full((2, 3), 3, np.uint8),
            "b.png": np.full((2, 3), 2, np.uint8),
        },
    )
    ds = xl.ImageMaskFolder(images_dir, masks_dir, image_size=None)
    assert ds.image_files == ["a.jpg", "b.jpg", os.path.join("sub", "c.jpeg")]
    assert ds.mask_files == ["a.png", "b.png", os.path.join("sub", "c.png")]
    assert ds.has_targets is True and ds.x_is_image is True
    x, y = whole(ds)
    assert x.shape == (3, 2, 3, 3) and x.dtype == np.uint8
    assert y.shape == (3, 2, 3) and y.dtype == np.uint8
    np.testing.assert_array_equal(x[:, 0, 0, 0], [10, 20, 30])
    np.testing.assert_array_equal(y[:, 0, 0], [1, 2, 3])


def test_real_jpeg_images_pair_with_png_masks(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(jpeg_bytes(48, 64))
    save_png(tmp_path / "masks" / "a.png", np.zeros((48, 64), np.uint8))
    x, y = whole(xl.ImageMaskFolder(tmp_path / "images", tmp_path / "masks", image_size=None))
    assert x.shape == (1, 48, 64, 3) and y.shape == (1, 48, 64)


def test_palette_mask_gives_class_indices_not_colours(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0]  # 0 black, 1 red, 2 green
    save_png(tmp_path / "masks" / "a.png", indices, palette=palette)
    assert Image.open(tmp_path / "masks" / "a.png").mode == "P"
    save_png(tmp_path / "images" / "a.png", pattern())
    _, y = whole(xl.ImageMaskFolder(tmp_path / "images", tmp_path / "masks", image_size=None))
    np.testing.assert_array_equal(y[0], indices)


@pytest.mark.parametrize("mask_dtype", ["int64", np.int64])
def test_mask_dtype_int64(tmp_path, mask_dtype):
    images_dir, masks_dir = seg_folders(tmp_path, {"a.png": pattern()}, {"a.png": ASYMMETRIC_MASK})
    _, y = whole(xl.ImageMaskFolder(images_dir, masks_dir, image_size=None, mask_dtype=mask_dtype))
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y[0], ASYMMETRIC_MASK.astype(np.int64))


def test_mask_dtype_other_than_uint8_or_int64_is_refused(tmp_path):
    images_dir, masks_dir = seg_folders(tmp_path, {"a.png": pattern()}, {"a.png": ASYMMETRIC_MASK})
    with pytest.raises(ValueError, match="mask_dtype must be one of 'uint8', 'int64'; got 'float32'"):
        xl.ImageMaskFolder(images_dir, masks_dir, image_size=None, mask_dtype="float32")


def test_sixteen_bit_mask_values_over_255_need_int64(tmp_path):
    mask = np.array([[0, 300, 2], [1, 0, 65000]], dtype=np.uint16)
    images_dir, masks_dir = seg_folders(tmp_path, {"a.png": pattern()}, {"a.png": mask})
    mask_path = os.path.join(masks_dir, "a.png")
    ds = xl.ImageMaskFolder(images_dir, masks_dir, image_size=None)
    with pytest.raises(
        xl.BadImageError,
        match=re.escape(
            f"cannot use {mask_path}: mask values go up to 65000, which does not fit mask_dtype=uint8. Pass mask_dtype='int64'."
        ),
    ):
        whole(ds)
    _, y = whole(xl.ImageMaskFolder(images_dir, masks_dir, image_size=None, mask_dtype="int64"))
    np.testing.assert_array_equal(y[0], mask.astype(np.int64))


def test_colour_mask_is_refused_naming_it(tmp_path):
    colours = np.zeros((2, 3, 3), np.uint8)
    colours[0, 0] = (255, 0, 0)
    images_dir, masks_dir = seg_folders(tmp_path, {"a.png": pattern()}, {"a.png": colours})
    mask_path = os.path.join(masks_dir, "a.png")
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {mask_path}: the mask is a colour (RGB) image")):
        whole(xl.ImageMaskFolder(images_dir, masks_dir, image_size=None))


def test_mask_resize_is_nearest_so_no_new_class_values_appear(tmp_path):
    mask = np.array([[0, 7, 0], [7, 7, 3]], dtype=np.uint8)
    images_dir, masks_dir = seg_folders(tmp_path, {"a.png": pattern()}, {"a.png": mask})
    _, y = whole(xl.ImageMaskFolder(images_dir, masks_dir, image_size=(4, 6)))
    np.testing.assert_array_equal(y[0], np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1))
    x, y = whole(xl.ImageMaskFolder(images_dir, masks_dir, image_size=(5, 7)))
    assert x.shape == (1, 5, 7, 3) and y.shape == (1, 5, 7) and y.dtype == np.uint8
    np.testing.assert_array_equal(np.unique(y), [0, 3, 7])


def test_unpaired_files_raise_listing_every_orphan(tmp_path):
    images_dir, masks_dir = seg_folders(
        tmp_path,
        {"a.jpg": solid(1), "lonely_image.jpg": solid(1)},
        {"a.png": ASYMMETRIC_MASK, "lonely_mask.png": ASYMMETRIC_MASK},
    )
    lonely_image = os.path.join(images_dir, "lonely_image.jpg")
    lonely_mask = os.path.join(masks_dir, "lonely_mask.png")
    expected = (
        f"1 image has no mask in {masks_dir!r}: {lonely_image}; "
        f"1 mask has no image in {images_dir!r}: {lonely_mask}. "
        "Files pair by name without extension (a.jpg with a.png)."
    )
    with pytest.raises(xl.DatasetError, match=re.escape(expected)):
        xl.ImageMaskFolder(images_dir, masks_dir, image_size=None)


def test_unpaired_skip_leaves_orphans_out_and_reports_them(tmp_path):
    images_dir, masks_dir = seg_folders(
        tmp_path,
        {"a.jpg": solid(10), "b.jpg": solid(20), "lonely_image.jpg": solid(1)},
        {"a.png": ASYMMETRIC_MASK, "b.png": ASYMMETRIC_MASK, "lonely_mask.png": ASYMMETRIC_MASK},
    )
    with pytest.warns(UserWarning, match="They are skipped"):
        ds = xl.ImageMaskFolder(images_dir, masks_dir, image_size=None, unpaired="skip")
    assert ds.image_files == ["a.jpg", "b.jpg"]
    assert ds.skipped == [
        (os.path.join(images_dir, "lonely_image.jpg"), "image has no mask"),
        (os.path.join(masks_dir, "lonely_mask.png"), "mask has no image"),
    ]
    x, _ = whole(ds)
    np.testing.assert_array_equal(x[:, 0, 0, 0], [10, 20])


def test_two_images_with_one_stem_are_ambiguous(tmp_path):
    images_dir, masks_dir = seg_folders(tmp_path, {"a.jpg": solid(1), "a.png": solid(1)}, {"a.png": ASYMMETRIC_MASK})
    first, second = os.path.join(images_dir, "a.jpg"), os.path.join(images_dir, "a.png")
    with pytest.raises(
        xl.DatasetError,
        match=re.escape(f"several files with the same name stem, so pairing is ambiguous: {first} and {second}"),
    ):
        xl.ImageMaskFolder(images_dir, masks_dir, image_size=None)


def test_mask_of_another_size_raises_naming_both_files(tmp_path):
    images_dir, masks_dir = seg_folders(tmp_path, {"a.png": pattern(2, 3)}, {"a.png": np.zeros((3, 2), np.uint8)})
    image_path, mask_path = os.path.join(images_dir, "a.png"), os.path.join(masks_dir, "a.png")
    ds = xl.ImageMaskFolder(images_dir, masks_dir, image_size=(8, 8))  # checked before resizing
    expected = f"cannot use {mask_path}: the mask is 3x2 (HxW) but its image {image_path} is 2x3; a mask must have its image's size."
    with pytest.raises(xl.BadImageError, match=re.escape(expected)) as caught:
        whole(ds)
    assert caught.value.path == mask_path


def test_image_mask_folder_without_targets_gives_images_only(tmp_path):
    images_dir, masks_dir = seg_folders(tmp_path, {"a.png": pattern()}, {"a.png": ASYMMETRIC_MASK})
    x = whole(xl.ImageMaskFolder(images_dir, masks_dir, image_size=None), to_fit=False)
    assert isinstance(x, np.ndarray)
    np.testing.assert_array_equal(x[0], pattern())


def test_horizontal_flip_moves_image_and_mask_together(tmp_path):
    images_dir, masks_dir = seg_folders(tmp_path, {"a.png": pattern()}, {"a.png": ASYMMETRIC_MASK})
    flip = A.Compose([A.HorizontalFlip(p=1.0)])
    x, y = whole(xl.ImageMaskFolder(images_dir, masks_dir, image_size=None, transform=flip))
    np.testing.assert_array_equal(x[0], pattern()[:, ::-1])
    np.testing.assert_array_equal(y[0], np.array([[2, 1, 0], [0, 0, 2]], dtype=np.uint8))
    assert y.dtype == np.uint8


def test_image_mask_folder_missing_directory_raises_naming_it(tmp_path):
    (tmp_path / "images").mkdir()
    missing = str(tmp_path / "masks")
    with pytest.raises(FileNotFoundError, match=re.escape(f"masks_dir {missing!r} does not exist.")):
        xl.ImageMaskFolder(tmp_path / "images", missing, image_size=None)


# --- FileList -----------------------------------------------------------------------------------


@pytest.fixture
def npy_root(tmp_path) -> str:
    """root/id-<k>.npy holding a (2, 2) float32 array filled with k, for k in 0, 1, 2."""
    for k in range(3):
        np.save(tmp_path / f"id-{k}.npy", np.full((2, 2), k, dtype=np.float32))
    return str(tmp_path)


def test_file_list_loads_npy_files_by_id_with_label_sequence(npy_root):
    ds = xl.FileList(["id-2", "id-0", "id-1"], [1, 0, 1], root=npy_root, suffix=".npy")
    assert ds.ids == ["id-2", "id-0", "id-1"]
    assert ds.describe(0) == os.path.join(npy_root, "id-2.npy")
    assert ds.x_is_image is None
    x, y = whole(ds)
    assert x.shape == (3, 2, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0, 0], [2, 0, 1])
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [1, 0, 1])


def test_file_list_labels_may_be_a_mapping_from_id(npy_root):
    labels = {"id-0": 5, "id-1": 6, "id-2": 7, "unused": 9}
    _, y = whole(xl.FileList(["id-1", "id-2"], labels, root=npy_root, suffix=".npy"))
    np.testing.assert_array_equal(y, np.array([6, 7], dtype=np.int64))


def test_file_list_float_labels_keep_their_dtype(npy_root):
    _, y = whole(xl.FileList(["id-0", "id-1"], np.array([0.5, 1.5], np.float32), root=npy_root, suffix=".npy"))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.array([0.5, 1.5], np.float32))


def test_file_list_without_labels_has_no_targets(npy_root):
    ds = xl.FileList(["id-0"], root=npy_root, suffix=".npy")
    assert ds.has_targets is False
    np.testing.assert_array_equal(whole(ds), np.zeros((1, 2, 2), np.float32))


def test_file_list_num_classes_gives_float32_one_hot(npy_root):
    _, y = whole(xl.FileList(["id-0", "id-1", "id-2"], [2, 0, 1], root=npy_root, suffix=".npy", num_classes=3))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float32))


def test_file_list_labels_outside_num_classes_are_refused(npy_root):
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\); found \[-1, 3\]"):
        xl.FileList(["id-0", "id-1", "id-2"], [3, 0, -1], root=npy_root, suffix=".npy", num_classes=3)


def test_file_list_custom_load_function(tmp_path):
    (tmp_path / "a.txt").write_text("1 2 3")
    (tmp_path / "b.txt").write_text("4 5 6")
    seen = []

    def load_text(path: str) -> np.ndarray:
        seen.append(path)
        return np.array([int(v) for v in open(path).read().split()], dtype=np.int16)

    ds = xl.FileList(["a", "b"], [0, 1], root=tmp_path, suffix=".txt", load=load_text, x_is_image=False)
    assert ds.x_is_image is False
    x, y = whole(ds)
    assert x.dtype == np.int16
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6]])
    assert seen == [os.path.join(str(tmp_path), "a.txt"), os.path.join(str(tmp_path), "b.txt")]


def test_file_list_default_loader_decodes_images_as_rgb(tmp_path):
    save_png(tmp_path / "a.png", solid((10, 200, 30)))
    x, _ = whole(xl.FileList(["a.png"], [0], root=tmp_path))
    np.testing.assert_array_equal(x[0], solid((10, 200, 30)))


def test_file_list_missing_npy_raises_naming_the_path(npy_root):
    path = os.path.join(npy_root, "id-9.npy")
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {path}: file not found.")) as caught:
        whole(xl.FileList(["id-0", "id-9"], [0, 1], root=npy_root, suffix=".npy"))
    assert caught.value.path == path
    assert caught.value.__notes__ == [f"while loading sample 1 ({path}) of batch 0, epoch 0"]


def test_file_list_corrupt_npy_raises_naming_the_path(tmp_path):
    path = tmp_path / "bad.npy"
    path.write_bytes(b"not numpy")
    with pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {path}: not a valid .npy file")):
        whole(xl.FileList(["bad.npy"], root=tmp_path))


def failing_load(path: str) -> np.ndarray:
    raise ValueError("bad header")


def test_file_list_load_failure_is_a_sample_error_with_path_and_cause(npy_root):
    path = os.path.join(npy_root, "id-1.npy")
    ds = xl.FileList(["id-0", "id-1"], [0, 1], root=npy_root, suffix=".npy", load=failing_load)
    with pytest.raises(xl.SampleError, match=re.escape(f"load({path!r}) raised ValueError: bad header")) as caught:
        xl.Batches(ds, batch_size=1).get_batch(2, 1)
    assert (caught.value.index, caught.value.path) == (1, path)
    assert isinstance(caught.value.__cause__, ValueError)
    assert caught.value.__notes__ == [f"while loading sample 1 ({path}) of batch 1, epoch 2"]


def test_file_list_load_failure_sample_error_carries_epoch_and_batch(npy_root):
    ds = xl.FileList(["id-0", "id-1"], [0, 1], root=npy_root, suffix=".npy", load=failing_load)
    with pytest.raises(xl.SampleError) as caught:
        xl.Batches(ds, batch_size=1).get_batch(2, 1)
    assert (caught.value.epoch, caught.value.batch, caught.value.index) == (2, 1, 1)


def test_file_list_rejects_bad_ids_and_labels(npy_root):
    with pytest.raises(xl.DatasetError, match="FileList needs at least one id; ids is empty."):
        xl.FileList([])
    with pytest.raises(TypeError, match="ids must be a sequence of ids, not a single string."):
        xl.FileList("id-0")
    with pytest.raises(xl.DatasetError, match=re.escape("ids must be unique; listed more than once: ['id-0'].")):
        xl.FileList(["id-0", "id-1", "id-0"])
    with pytest.raises(ValueError, match="labels has 1 entries but there are 2 ids; they must match."):
        xl.FileList(["id-0", "id-1"], [0])
    with pytest.raises(xl.DatasetError, match=re.escape("labels has no entry for 1 ids, e.g. ['id-1'].")):
        xl.FileList(["id-0", "id-1"], {"id-0": 0})
    with pytest.raises(TypeError, match="load must be a function path -> numpy array, got str."):
        xl.FileList(["id-0"], load="numpy.load")


# --- ArrayDataset -------------------------------------------------------------------------------


def test_array_dataset_batches_are_the_rows_in_order():
    x = np.arange(5 * 2 * 3 * 3, dtype=np.uint8).reshape(5, 2, 3, 3)
    y = np.array([4, 3, 2, 1, 0], dtype=np.int64)
    ds = xl.ArrayDataset(x, y)
    assert ds.x_is_image is True and ds.has_targets is True
    batches = xl.Batches(ds, batch_size=2)
    bx, by = batches.get_batch(0, 2)
    np.testing.assert_array_equal(bx, x[4:5])
    np.testing.assert_array_equal(by, y[4:5])
    assert xl.ArrayDataset(np.zeros((5, 3), np.float32)).x_is_image is False


def test_array_dataset_length_mismatch_raises():
    with pytest.raises(ValueError, match="x has 3 samples but y has 2; they must match."):
        xl.ArrayDataset(np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match=r"x must hold at least one sample along its first axis; got shape \(0, 4\)."):
        xl.ArrayDataset(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="y_is_mask=True needs y."):
        xl.ArrayDataset(np.zeros((3, 4)), y_is_mask=True)


def test_array_dataset_mask_flips_with_its_image():
    x = np.stack([pattern(), pattern() + 1])
    y = np.stack([ASYMMETRIC_MASK, ASYMMETRIC_MASK.T.reshape(2, 3)])
    flip = A.Compose([A.HorizontalFlip(p=1.0)])
    bx, by = whole(xl.ArrayDataset(x, y, transform=flip, y_is_mask=True))
    np.testing.assert_array_equal(bx, x[:, :, ::-1])
    np.testing.assert_array_equal(by, y[:, :, ::-1])


def test_array_dataset_labels_are_not_transformed_without_y_is_mask():
    x = np.stack([pattern()])
    y = np.array([[1, 2, 3]], dtype=np.int64)
    bx, by = whole(xl.ArrayDataset(x, y, transform=A.Compose([A.HorizontalFlip(p=1.0)])))
    np.testing.assert_array_equal(bx[0], pattern()[:, ::-1])
    np.testing.assert_array_equal(by, y)


def test_array_dataset_transform_leaves_the_source_arrays_unchanged():
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    x_before = x.copy()
    augment = A.Compose([A.RandomBrightnessContrast(p=1.0), A.HorizontalFlip(p=1.0)])
    whole(xl.ArrayDataset(x, transform=augment))
    np.testing.assert_array_equal(x, x_before)


# --- transforms ---------------------------------------------------------------------------------


class CallableWithoutRandomState:
    def __call__(self, **data):
        return data


@pytest.mark.parametrize(
    ("transform", "type_name"),
    [(CallableWithoutRandomState(), "CallableWithoutRandomState"), (lambda **d: d, "function"), ("flip", "str")],
    ids=["no-set_random_state", "plain-function", "string"],
)
def test_transform_without_set_random_state_is_refused(transform, type_name):
    with pytest.raises(
        TypeError,
        match=f"must be callable as transform\\(image=...\\) and have a set_random_state\\(numpy_generator, python_random\\) method, as albumentations.Compose does; got {type_name}.",
    ):
        check_transform(transform)
    with pytest.raises(TypeError, match=f"got {type_name}"):
        xl.ArrayDataset(np.zeros((2, 4, 4, 3), np.uint8), transform=transform)


def test_albumentations_compose_is_a_transform():
    augment = A.Compose([A.HorizontalFlip()])
    assert check_transform(augment) is augment
    assert isinstance(augment, xl.Transform)


def random_images(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def brightness() -> A.Compose:
    return A.Compose([A.RandomBrightnessContrast(brightness_limit=0.5, contrast_limit=0.5, p=1.0)])


def expected_augmentation(x: np.ndarray, transform: A.Compose, *, seed: int, epoch: int, index: int) -> np.ndarray:
    """What xloader's contract says sample `index` becomes: the transform seeded by (seed, epoch, index)."""
    fresh = copy.deepcopy(transform)
    fresh.set_random_state(*sample_generators(seed, epoch, index))
    return fresh(image=x[index])["image"]


def test_augmentation_is_fixed_by_seed_epoch_and_index():
    x = random_images()
    first = xl.Batches(xl.ArrayDataset(x, transform=brightness()), batch_size=6, seed=3)
    again = xl.Batches(xl.ArrayDataset(x, transform=brightness()), batch_size=6, seed=3)
    epoch1 = first.get_batch(1, 0)
    np.testing.assert_array_equal(first.get_batch(0, 0), again.get_batch(0, 0))
    np.testing.assert_array_equal(first.get_batch(1, 0), epoch1)  # asking twice changes nothing
    for index in range(6):
        np.testing.assert_array_equal(
            epoch1[index], expected_augmentation(x, brightness(), seed=3, epoch=1, index=index)
        )


def test_augmentation_changes_with_the_epoch_and_the_seed():
    x = random_images()
    batches = xl.Batches(xl.ArrayDataset(x, transform=brightness()), batch_size=6, seed=3)
    other_seed = xl.Batches(xl.ArrayDataset(x, transform=brightness()), batch_size=6, seed=4)
    epoch0, epoch1 = batches.get_batch(0, 0), batches.get_batch(1, 0)
    for index in range(6):
        assert not np.array_equal(epoch0[index], epoch1[index]), f"sample {index}: epoch 0 and 1 augment alike"
        assert not np.array_equal(epoch0[index], other_seed.get_batch(0, 0)[index]), (
            f"sample {index}: seeds 3 and 4 alike"
        )


def test_augmentation_does_not_depend_on_the_batch_position():
    x = random_images()
    in_order = xl.Batches(xl.ArrayDataset(x, transform=brightness()), batch_size=6, seed=3).get_batch(2, 0)
    shuffled = xl.Batches(xl.ArrayDataset(x, transform=brightness()), batch_size=2, seed=3, shuffle=True)
    for b in range(3):
        indices = shuffled.batch_indices(2, b)
        np.testing.assert_array_equal(shuffled.get_batch(2, b), in_order[indices])


def test_image_folder_transform_output_dtype_wins(two_class_root):
    normalize = A.Compose([A.Normalize(mean=0.0, std=1.0, max_pixel_value=255.0)])
    x, _ = whole(xl.ImageFolder(two_class_root, image_size=None, transform=normalize))
    assert x.dtype == np.float32 and x.shape == (3, 2, 3, 3)
    np.testing.assert_allclose(x[:, 0, 0, 0], np.array([10, 20, 30], np.float32) / 255.0, rtol=1e-6)


def test_failing_transform_is_a_sample_error_naming_the_file(two_class_root):
    def explode(image, **kwargs):
        raise RuntimeError("kaboom")

    ds = xl.ImageFolder(two_class_root, image_size=None, transform=A.Compose([A.Lambda(image=explode)]))
    path = os.path.join(two_class_root, "cats", "a.png")
    with pytest.raises(
        xl.SampleError, match=re.escape(f"sample 0 ({path}) of batch 0, epoch 0 failed: RuntimeError: kaboom")
    ) as caught:
        whole(ds)
    assert (caught.value.epoch, caught.value.batch, caught.value.index, caught.value.path) == (0, 0, 0, path)
    assert isinstance(caught.value.__cause__, RuntimeError)


# --- a new user's likely mistakes ---------------------------------------------------------------


def test_a_root_holding_train_and_val_warns_that_they_look_like_splits(tmp_path):
    for split in ("train", "val"):
        save_png(tmp_path / "root" / split / "cats" / "a.png", solid(10))
    with pytest.warns(UserWarning, match=re.escape("has the class folders ['train', 'val'], which look like dataset")):
        xl.ImageFolder(tmp_path / "root", image_size=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xl.ImageFolder(tmp_path / "root", image_size=None, class_names=["train", "val"])  # said to be classes
        xl.ImageFolder(tmp_path / "root" / "train", image_size=None)


def test_image_folder_split_names_split_seed_when_given_seed(two_class_root):
    with pytest.raises(TypeError, match=re.escape("ImageFolder.split takes split_seed= for the split")):
        xl.ImageFolder.split(two_class_root, validation_split=0.5, image_size=None, seed=0)


def test_jpeg_files_in_masks_dir_warn_that_the_folders_may_be_swapped(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / f"{name}.jpg").write_bytes(jpeg_bytes())
        save_png(tmp_path / "masks" / f"{name}.png", ASYMMETRIC_MASK)
        (tmp_path / "jpeg_masks").mkdir(exist_ok=True)
        (tmp_path / "jpeg_masks" / f"{name}.jpg").write_bytes(jpeg_bytes())
    with pytest.warns(
        UserWarning, match=r"holds JPEG files \(2 of 2, e\.g\. a\.jpg\) and images_dir .* were the two swapped"
    ):
        xl.ImageMaskFolder(tmp_path / "masks", tmp_path / "images", image_size=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xl.ImageMaskFolder(tmp_path / "images", tmp_path / "masks", image_size=None)
        # JPEG masks beside JPEG images (Kvasir-SEG ships them so): not a swap
        xl.ImageMaskFolder(tmp_path / "images", tmp_path / "jpeg_masks", image_size=None)
