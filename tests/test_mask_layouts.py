"""Segmentation layouts: one-hot masks, several masks per image, run-length masks in a CSV.

Every layout decodes a known mask to exact values, keeps them exact through geometric
augmentation applied to image and mask together, keeps its mask dtype and shape whatever the
random draws, reports bad input by file (and CSV line), and gives the same batches through both
adapters.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys

import albumentations as A
import cv2
import numpy as np
import pytest
from PIL import Image

import xloader as xl
from xloader.sources.multi_mask import MultiMaskFolder
from xloader.sources.rle import RLEMasks, rle_decode, rle_encode

H, W = 4, 6

# Three classes on a 4x6 image; car and road overlap at (1, 2).
CAR = np.array(
    [
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ],
    dtype=bool,
)
ROAD = np.array(
    [
        [0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 0],
    ],
    dtype=bool,
)
SIGN = np.array(
    [
        [0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0],
    ],
    dtype=bool,
)
CLASSES = ["car", "road", "sign"]
# Merged: 0 background, car 1, road 2, sign 3; at (1, 2) road (2) beats car (1).
MERGED = np.array(
    [
        [1, 1, 1, 0, 0, 3],
        [1, 1, 2, 2, 2, 2],
        [0, 0, 2, 2, 2, 2],
        [3, 0, 0, 0, 0, 0],
    ],
    dtype=np.uint8,
)
STACK = np.stack([CAR, ROAD, SIGN], axis=-1).astype(np.uint8)  # overlap kept


def image_pattern(height: int = H, width: int = W, offset: int = 0) -> np.ndarray:
    """An (H, W, 3) uint8 image whose every pixel is different, so any flip or turn is visible."""
    return ((np.arange(height * width * 3).reshape(height, width, 3) * 3 + offset) % 256).astype(np.uint8)


def save_png(path, array: np.ndarray, palette: list[int] | None = None) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(array)
    if palette is not None:
        image.putpalette(palette + [0] * (768 - len(palette)))
    image.save(path, format="PNG")
    return str(path)


def binary(mask: np.ndarray, on: int = 255) -> np.ndarray:
    return (mask.astype(np.uint8) * on).astype(np.uint8)


def one_hot(index: np.ndarray, num_classes: int, dtype=np.uint8) -> np.ndarray:
    return np.eye(num_classes, dtype=dtype)[index]


def whole(dataset, **options):
    return xl.Batches(dataset, batch_size=len(dataset), **options).get_batch(0, 0)


def load(dataset, index: int = 0, *, seed: int = 0, epoch: int = 0):
    return dataset.load(index, seed=seed, epoch=epoch, with_targets=True)


def turn_of(x: np.ndarray, image: np.ndarray) -> tuple[int, bool]:
    """(k, flipped) such that x == rot90(image[:, ::-1] if flipped else image, k)."""
    for flipped in (False, True):
        source = image[:, ::-1] if flipped else image
        for k in range(4):
            turned = np.rot90(source, k)
            if turned.shape == x.shape and np.array_equal(turned, x):
                return k, flipped
    raise AssertionError("the image is not a flip or quarter turn of the original")


def assert_moves_with_image(dataset, image: np.ndarray, mask: np.ndarray, seeds=range(8)) -> None:
    """Under flips and quarter turns, y is exactly the same flip and turn of `mask` as x is of `image`."""
    seen = set()
    for seed in seeds:
        x, y = load(dataset, seed=seed)
        k, flipped = turn_of(x, image)
        seen.add((k, flipped))
        want = np.rot90(mask[:, ::-1] if flipped else mask, k)
        np.testing.assert_array_equal(y, want)
        assert y.dtype == mask.dtype and y.flags.c_contiguous
    assert len(seen) > 2  # the seeds did produce several different geometries


FLIP_TURN = A.Compose([A.HorizontalFlip(p=0.5), A.RandomRotate90(p=1.0)])
GEOMETRY = A.Compose(
    [
        A.HorizontalFlip(p=0.5),
        A.Affine(rotate=(-40, 40), scale=(0.7, 1.3), translate_percent=(-0.1, 0.1), p=0.7),
        A.RandomResizedCrop(size=(12, 12), scale=(0.3, 1.0), p=1.0),
    ]
)


# --- fixtures: the same three-class annotation in every layout -----------------------------------


@pytest.fixture
def images_dir(tmp_path) -> str:
    save_png(tmp_path / "images" / "a.png", image_pattern())
    save_png(tmp_path / "images" / "b.png", image_pattern(offset=1))
    return str(tmp_path / "images")


@pytest.fixture
def by_image(tmp_path, images_dir) -> tuple[str, str]:
    """masks/a/{car,road,sign_1}.png; masks/b/ is empty (no objects)."""
    masks = tmp_path / "by_image"
    save_png(masks / "a" / "car.png", binary(CAR))
    save_png(masks / "a" / "road.png", binary(ROAD, on=1))  # any non-zero value is "on"
    save_png(masks / "a" / "sign_1.png", binary(SIGN))
    (masks / "b").mkdir()
    return images_dir, str(masks)


@pytest.fixture
def by_class(tmp_path, images_dir) -> tuple[str, str]:
    """masks/{car,road,sign}/a.png; b has only a road (everything else empty)."""
    masks = tmp_path / "by_class"
    save_png(masks / "car" / "a.png", binary(CAR))
    save_png(masks / "road" / "a.png", binary(ROAD))
    save_png(masks / "sign" / "a.png", binary(SIGN))
    save_png(masks / "road" / "b.png", binary(ROAD[::-1]))
    return images_dir, str(masks)


def write_csv(path, rows: list[tuple], header: tuple = ("image_id", "class", "rle")) -> str:
    with open(path, "w", encoding="utf-8") as file:
        file.write(",".join(header) + "\n")
        for row in rows:
            file.write(",".join(str(v) for v in row) + "\n")
    return str(path)


@pytest.fixture
def rle_csv(tmp_path, images_dir) -> tuple[str, str]:
    """Rows out of order, ids with and without extension, b has one empty row."""
    rows = [
        ("a.png", "sign", rle_encode(SIGN)),
        ("b", "road", ""),
        ("a", "car", rle_encode(CAR)),
        ("a.png", "road", rle_encode(ROAD)),
    ]
    return images_dir, write_csv(tmp_path / "train.csv", rows)


def sources(by_image, by_class, rle_csv, **options) -> dict[str, object]:
    return {
        "by_image": MultiMaskFolder(*by_image, layout="by_image", image_size=None, class_names=CLASSES, **options),
        "by_class": MultiMaskFolder(*by_class, layout="by_class", image_size=None, **options),
        "rle": RLEMasks(*rle_csv, image_size=None, class_names=CLASSES, **options),
    }


# --- RLE: the Kaggle convention ------------------------------------------------------------------


def test_rle_decode_is_column_major_and_one_indexed_as_on_kaggle():
    # Kaggle (DSB 2018): "pixels are one-indexed and numbered from top to bottom, then left to
    # right: 1 is pixel (1,1), 2 is pixel (2,1), etc." Pixels 2-4 are column 0, rows 1-3; 10-11
    # are column 2 (pixels 9-12), rows 1-2.
    expected = np.array(
        [
            [0, 0, 0],
            [1, 0, 1],
            [1, 0, 1],
            [1, 0, 0],
        ],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(rle_decode("2 3 10 2", (4, 3)), expected)
    assert rle_encode(expected) == "2 3 10 2"
    # Row by row the same string means other pixels.
    np.testing.assert_array_equal(
        rle_decode("2 3 10 2", (4, 3), order="C"),
        np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]], dtype=np.uint8),
    )
    assert rle_encode(rle_decode("2 3 10 2", (4, 3), order="C"), order="C") == "2 3 10 2"


def test_rle_round_trip_on_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (32, 17)]:
        for order in ("F", "C"):
            mask = rng.random(shape) < 0.4
            np.testing.assert_array_equal(rle_decode(rle_encode(mask, order=order), shape, order=order), mask)
    assert rle_encode(np.zeros((3, 3))) == ""
    assert rle_encode(np.ones((2, 2))) == "1 4"
    np.testing.assert_array_equal(rle_decode("", (2, 2)), np.zeros((2, 2), np.uint8))
    np.testing.assert_array_equal(rle_decode("1 0", (2, 2)), np.zeros((2, 2), np.uint8))  # a zero length: no pixels


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 2 5", "it has 3 numbers, an odd count; runs come in 'start length' pairs"),
        ("1 2 x 3", "'x' is not a whole number"),
        ("0 2", "start 0 is below 1; pixels are numbered from 1"),
        ("3 -1", "length -1 is negative"),
        ("5 2 1 1", "run 1 1 starts before the previous run 5 2 ends; runs must be in increasing order"),
        ("1 3 2 2", "run 2 2 starts before the previous run 1 3 ends"),
        ("10 4", "run 10 4 ends at pixel 13, past the 12 pixels of a 4x3 image"),
    ],
)
def test_rle_decode_rejects_malformed_strings(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        rle_decode(text, (4, 3))


# --- exact values in every layout and mode -------------------------------------------------------


def test_every_layout_merges_to_the_same_index_map_with_the_highest_class_winning(by_image, by_class, rle_csv):
    for name, source in sources(by_image, by_class, rle_csv).items():
        x, y = whole(source)
        assert source.num_classes == 4, name
        assert x.shape == (2, H, W, 3) and x.dtype == np.uint8, name
        assert y.shape == (2, H, W) and y.dtype == np.uint8, name
        np.testing.assert_array_equal(x[0], image_pattern(), err_msg=name)
        np.testing.assert_array_equal(y[0], MERGED, err_msg=name)
    # Sample b: no objects (empty folder / no class file / empty row), or one road.
    _, y = whole(sources(by_image, by_class, rle_csv)["by_class"])
    np.testing.assert_array_equal(y[1], ROAD[::-1] * 2)
    for name in ("by_image", "rle"):
        _, y = whole(sources(by_image, by_class, rle_csv)[name])
        np.testing.assert_array_equal(y[1], np.zeros((H, W), np.uint8))


def test_multi_hot_keeps_overlapping_masks_one_channel_per_class(by_image, by_class, rle_csv):
    for name, source in sources(by_image, by_class, rle_csv, mask_mode="multi_hot").items():
        _, y = whole(source)
        assert y.shape == (2, H, W, 3) and y.dtype == np.uint8, name
        np.testing.assert_array_equal(y[0], STACK, err_msg=name)
        assert y[0, 1, 2].tolist() == [1, 1, 0]  # car and road both


@pytest.mark.parametrize(("mask_dtype", "dtype"), [("uint8", np.uint8), ("float32", np.float32)])
def test_one_hot_has_a_background_channel_and_one_channel_per_class(by_image, by_class, rle_csv, mask_dtype, dtype):
    for name, source in sources(by_image, by_class, rle_csv, mask_mode="one_hot", mask_dtype=mask_dtype).items():
        _, y = whole(source)
        assert y.shape == (2, H, W, 4) and y.dtype == dtype, name
        np.testing.assert_array_equal(y[0], one_hot(MERGED, 4, dtype), err_msg=name)
        np.testing.assert_array_equal(y.sum(axis=-1), np.ones((2, H, W), dtype))


def test_int64_index_masks(by_image, by_class, rle_csv):
    for name, source in sources(by_image, by_class, rle_csv, mask_dtype="int64", transform=GEOMETRY).items():
        _, y = whole(source)
        assert y.dtype == np.int64 and y.shape == (2, 12, 12), name


def test_image_mask_folder_one_hot_needs_num_classes_and_checks_values(tmp_path):
    save_png(tmp_path / "images" / "a.png", image_pattern())
    mask_path = save_png(tmp_path / "masks" / "a.png", MERGED, palette=[0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    images, masks = str(tmp_path / "images"), str(tmp_path / "masks")
    _, y = whole(xl.ImageMaskFolder(images, masks, image_size=None, num_classes=4, mask_mode="one_hot"))
    assert y.dtype == np.uint8
    np.testing.assert_array_equal(y[0], one_hot(MERGED, 4))
    _, y = whole(
        xl.ImageMaskFolder(images, masks, image_size=None, num_classes=4, mask_mode="one_hot", mask_dtype="float32")
    )
    np.testing.assert_array_equal(y[0], one_hot(MERGED, 4, np.float32))
    with pytest.raises(ValueError, match=re.escape("mask_mode='one_hot' needs num_classes")):
        xl.ImageMaskFolder(images, masks, image_size=None, mask_mode="one_hot")
    with pytest.raises(ValueError, match=re.escape("mask_dtype must be one of 'uint8', 'float32'; got 'int64'")):
        xl.ImageMaskFolder(images, masks, image_size=None, num_classes=4, mask_mode="one_hot", mask_dtype="int64")
    with pytest.raises(ValueError, match=re.escape("mask_mode must be one of 'index', 'one_hot'; got 'multi_hot'")):
        xl.ImageMaskFolder(images, masks, image_size=None, num_classes=4, mask_mode="multi_hot")
    for mode in ("index", "one_hot"):
        too_few = xl.ImageMaskFolder(images, masks, image_size=None, num_classes=3, mask_mode=mode)
        expected = (
            f"cannot use {mask_path}: mask value 3 (first at row 0, column 5) is not a class index below num_classes=3. "
            "Pass the right num_classes, or fix the mask."
        )
        with pytest.raises(xl.BadImageError, match=re.escape(expected)) as caught:
            whole(too_few)
        assert caught.value.path == mask_path


def test_pascal_voc_void_255_is_named_in_the_num_classes_error(tmp_path):
    save_png(tmp_path / "images" / "a.png", image_pattern())
    voc = MERGED.copy()
    voc[2, 0] = 255
    save_png(tmp_path / "masks" / "a.png", voc)
    source = xl.ImageMaskFolder(tmp_path / "images", tmp_path / "masks", image_size=None, num_classes=21)
    with pytest.raises(xl.BadImageError, match=re.escape("mask value 255 (first at row 2, column 0)")) as caught:
        whole(source)
    assert "255 often marks pixels to ignore, as in Pascal VOC" in str(caught.value)
    _, y = whole(xl.ImageMaskFolder(tmp_path / "images", tmp_path / "masks", image_size=None))  # no num_classes: kept
    assert y[0, 2, 0] == 255


def test_single_class_layouts_give_a_binary_foreground_mask(tmp_path, images_dir):
    """The Data Science Bowl 2018 case: one file (or row) per nucleus, no class names."""
    nuclei = tmp_path / "nuclei"
    save_png(nuclei / "a" / "3f9a.png", binary(CAR))
    save_png(nuclei / "a" / "77c1.png", binary(SIGN))
    save_png(nuclei / "b" / "0e12.png", binary(ROAD))
    folder = MultiMaskFolder(images_dir, nuclei, layout="by_image", image_size=None)
    csv = write_csv(
        tmp_path / "labels.csv",
        [("a", rle_encode(CAR)), ("a", rle_encode(SIGN)), ("b", rle_encode(ROAD))],
        header=("ImageId", "EncodedPixels"),
    )
    table = RLEMasks(
        images_dir, csv, image_size=None, id_column="ImageId", class_column=None, rle_column="EncodedPixels"
    )
    for source in (folder, table):
        assert source.class_names is None and source.num_classes == 2
        _, y = whole(source)
        np.testing.assert_array_equal(y[0], (CAR | SIGN).astype(np.uint8))
        np.testing.assert_array_equal(y[1], ROAD.astype(np.uint8))
    assert folder.mask_files(0) == [os.path.join("a", "3f9a.png"), os.path.join("a", "77c1.png")]
    _, y = whole(
        RLEMasks(
            images_dir,
            csv,
            image_size=None,
            id_column="ImageId",
            class_column=None,
            rle_column="EncodedPixels",
            mask_mode="multi_hot",
        )
    )
    assert y.shape == (2, H, W, 1)


def test_from_sample_folders_reads_the_data_science_bowl_layout(tmp_path):
    root = tmp_path / "stage1_train"
    save_png(root / "a1" / "images" / "a1.png", image_pattern())
    save_png(root / "a1" / "masks" / "n1.png", binary(CAR))
    save_png(root / "a1" / "masks" / "n2.png", binary(SIGN))
    save_png(root / "b2" / "images" / "b2.png", image_pattern(offset=1))
    (root / "b2" / "masks").mkdir()
    source = MultiMaskFolder.from_sample_folders(root, image_size=None)
    assert source.image_files == [os.path.join("a1", "images", "a1.png"), os.path.join("b2", "images", "b2.png")]
    x, y = whole(source)
    np.testing.assert_array_equal(x[1], image_pattern(offset=1))
    np.testing.assert_array_equal(y[0], (CAR | SIGN).astype(np.uint8))
    np.testing.assert_array_equal(y[1], np.zeros((H, W), np.uint8))
    save_png(root / "c3" / "images" / "c3.png", image_pattern())
    save_png(root / "c3" / "images" / "extra.png", image_pattern())
    with pytest.raises(xl.DatasetError, match=re.escape(f"sample folder {str(root / 'c3')!r} has 2 images in images/")):
        MultiMaskFolder.from_sample_folders(root, image_size=None)


def test_from_sample_folders_follows_links_inside_sample_folders_when_asked(tmp_path):
    root = tmp_path / "stage1_train"
    save_png(root / "a1" / "images" / "a1.png", image_pattern())
    save_png(root / "a1" / "masks" / "n1.png", binary(CAR))
    save_png(tmp_path / "elsewhere" / "n2.png", binary(SIGN))
    os.symlink(tmp_path / "elsewhere", root / "a1" / "masks" / "linked")
    _, y = whole(MultiMaskFolder.from_sample_folders(root, image_size=None))
    np.testing.assert_array_equal(y[0], CAR.astype(np.uint8))
    followed = MultiMaskFolder.from_sample_folders(root, image_size=None, follow_links=True)
    assert followed.mask_files(0) == [
        os.path.join("a1", "masks", "linked", "n2.png"),
        os.path.join("a1", "masks", "n1.png"),
    ]
    _, y = whole(followed)
    np.testing.assert_array_equal(y[0], (CAR | SIGN).astype(np.uint8))


def test_rle_classes_are_found_sorted_as_numbers_and_can_be_fixed(tmp_path, images_dir):
    rows = [("a.png", 10, rle_encode(SIGN)), ("a.png", 2, rle_encode(ROAD)), ("b.png", 1, "")]
    csv = write_csv(tmp_path / "severstal.csv", rows, header=("ImageId", "ClassId", "EncodedPixels"))
    options = {"id_column": "ImageId", "class_column": "ClassId", "rle_column": "EncodedPixels", "image_size": None}
    found = RLEMasks(images_dir, csv, **options)
    assert found.class_names == ["1", "2", "10"]
    _, y = whole(found)
    np.testing.assert_array_equal(y[0], ROAD * 2 + SIGN * 3)
    fixed = RLEMasks(images_dir, csv, class_names=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], **options)
    _, y = whole(fixed)
    np.testing.assert_array_equal(y[0], ROAD * 2 + SIGN * 10)


def test_rle_row_order_and_several_rows_of_one_class(tmp_path, images_dir):
    halves = [CAR & (np.arange(W) < 2), CAR & (np.arange(W) >= 2)]
    rows = [("a.png", "car", rle_encode(halves[1])), ("a.png", "car", rle_encode(halves[0])), ("b.png", "car", "1 0")]
    source = RLEMasks(images_dir, write_csv(tmp_path / "t.csv", rows), image_size=None)
    _, y = whole(source)
    np.testing.assert_array_equal(y[0], CAR.astype(np.uint8))
    np.testing.assert_array_equal(y[1], np.zeros((H, W), np.uint8))


def test_rle_row_major_order(tmp_path, images_dir):
    rows = [("a.png", "car", rle_encode(CAR, order="C")), ("b.png", "car", rle_encode(ROAD, order="C"))]
    _, y = whole(RLEMasks(images_dir, write_csv(tmp_path / "t.csv", rows), image_size=None, order="C"))
    np.testing.assert_array_equal(y[0], CAR.astype(np.uint8))
    np.testing.assert_array_equal(y[1], ROAD.astype(np.uint8))
    _, y = whole(
        RLEMasks(images_dir, write_csv(tmp_path / "t.csv", rows), image_size=None, order="C", mask_mode="multi_hot")
    )
    np.testing.assert_array_equal(y[1, :, :, 0], ROAD.astype(np.uint8))


def test_masks_are_resized_with_nearest_neighbour_to_image_size(by_image, by_class, rle_csv):
    for name, source in sources(by_image, by_class, rle_csv, mask_mode="multi_hot").items():
        source.image_size = (8, 12)
        x, y = whole(source)
        assert x.shape == (2, 8, 12, 3) and y.shape == (2, 8, 12, 3), name
        np.testing.assert_array_equal(y[0], STACK.repeat(2, axis=0).repeat(2, axis=1), err_msg=name)


# --- geometric augmentation moves image and mask together ----------------------------------------


def test_flip_and_quarter_turns_move_every_mask_kind_with_the_image(tmp_path, by_image, by_class, rle_csv):
    for mode, expected in [("index", MERGED), ("multi_hot", STACK), ("one_hot", one_hot(MERGED, 4))]:
        for source in sources(by_image, by_class, rle_csv, mask_mode=mode, transform=FLIP_TURN).values():
            assert_moves_with_image(source, image_pattern(), expected)
    save_png(tmp_path / "pairs" / "images" / "a.png", image_pattern())
    save_png(tmp_path / "pairs" / "masks" / "a.png", MERGED)
    pairs = (str(tmp_path / "pairs" / "images"), str(tmp_path / "pairs" / "masks"))
    for options, expected in [
        ({}, MERGED),
        ({"mask_dtype": "int64"}, MERGED.astype(np.int64)),
        ({"num_classes": 4, "mask_mode": "one_hot"}, one_hot(MERGED, 4)),
        ({"num_classes": 4, "mask_mode": "one_hot", "mask_dtype": "float32"}, one_hot(MERGED, 4, np.float32)),
    ]:
        source = xl.ImageMaskFolder(*pairs, image_size=None, transform=FLIP_TURN, **options)
        assert_moves_with_image(source, image_pattern(), expected)


def class_painted_image(mask: np.ndarray) -> np.ndarray:
    """An image whose red channel is 60 * class, so a nearest-neighbour warp of image and mask
    together must keep red == 60 * mask everywhere."""
    image = np.zeros((*mask.shape, 3), np.uint8)
    image[:, :, 0] = mask * 60
    image[:, :, 1] = 7
    return image


def test_affine_rotation_and_scale_warp_image_and_mask_with_the_same_matrix(tmp_path):
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 4, (24, 32)).astype(np.uint8)
    save_png(tmp_path / "images" / "a.png", class_painted_image(classes))
    save_png(tmp_path / "masks" / "a.png", classes)
    warp = A.Compose(
        [
            A.Affine(
                rotate=(-45, 45), scale=(0.6, 1.4), translate_percent=(-0.1, 0.1), interpolation=cv2.INTER_NEAREST, p=1
            )
        ]
    )
    for mode, options in [("index", {}), ("one_hot", {"num_classes": 4, "mask_mode": "one_hot"})]:
        source = xl.ImageMaskFolder(tmp_path / "images", tmp_path / "masks", image_size=None, transform=warp, **options)
        for seed in range(10):
            x, y = load(source, seed=seed)
            index = y if mode == "index" else y.argmax(axis=-1)
            inside = x[:, :, 1] == 7  # pixels the warp took from the image (not the border fill)
            assert 0 < inside.sum() < inside.size
            np.testing.assert_array_equal(x[:, :, 0][inside], index[inside].astype(np.uint8) * 60)
            np.testing.assert_array_equal(index[~inside], 0)  # border: background


@pytest.mark.parametrize(
    "augment",
    [
        A.Compose([A.Affine(rotate=(-40, 40), scale=(0.7, 1.3), p=0.5), A.HorizontalFlip(p=0.5)]),
        A.Compose([A.RandomResizedCrop(size=(12, 12), p=1.0), A.Rotate(limit=30, p=0.5)]),
        A.Compose(
            [A.Resize(9, 13), A.ElasticTransform(p=0.5), A.GridElasticDeform(num_grid_xy=(2, 2), magnitude=2, p=0.5)]
        ),
    ],
    ids=["affine+flip", "random-resized-crop+rotate", "resize+elastic+grid-elastic"],
)
def test_mask_dtype_shape_and_values_do_not_depend_on_the_random_draws(tmp_path, by_image, by_class, rle_csv, augment):
    save_png(tmp_path / "pairs" / "images" / "a.png", image_pattern())
    save_png(tmp_path / "pairs" / "masks" / "a.png", MERGED)
    pairs = (str(tmp_path / "pairs" / "images"), str(tmp_path / "pairs" / "masks"))
    cases = []
    for options in [{}, {"mask_dtype": "int64"}, {"num_classes": 4, "mask_mode": "one_hot"}]:
        cases.append(xl.ImageMaskFolder(*pairs, image_size=None, transform=augment, **options))
    for mode, dtype in [("index", "uint8"), ("index", "int64"), ("multi_hot", "uint8"), ("one_hot", "float32")]:
        cases.extend(sources(by_image, by_class, rle_csv, transform=augment, mask_mode=mode, mask_dtype=dtype).values())
    for source in cases:
        outputs = [load(source, seed=seed) for seed in range(40)]
        shapes = {(x.shape[:2], y.shape, y.dtype.str) for x, y in outputs}
        assert len(shapes) == 1, (source, shapes)
        ((image_hw, shape, _),) = shapes
        assert shape[:2] == image_hw
        values = np.unique(np.concatenate([y.ravel() for _, y in outputs]))
        allowed = [0, 1] if shape[2:] else [0, 1, 2, 3]
        assert set(values.tolist()) <= set(allowed), (source, values)


def test_transforms_that_interpolate_masks_are_refused(tmp_path, by_class):
    blending = [
        A.Compose([A.Affine(rotate=10, p=1)], mask_interpolation=cv2.INTER_LINEAR),
        A.Compose([A.OneOf([A.Resize(8, 8, mask_interpolation=cv2.INTER_CUBIC)])]),
        A.Compose([A.LongestMaxSize(max_size=8, area_for_downscale="image_mask")]),
    ]
    for transform in blending:
        with pytest.raises(
            ValueError, match="(resamples masks with mask_interpolation|area_for_downscale='image_mask')"
        ):
            MultiMaskFolder(*by_class, layout="by_class", image_size=None, transform=transform)
    with pytest.raises(ValueError, match=re.escape("Compose resamples masks with mask_interpolation=1")):
        xl.ImageMaskFolder(*by_class, image_size=None, transform=blending[0])


def test_a_transform_that_changes_the_mask_layout_is_an_error_naming_the_sample(by_class):
    import albumentations.pytorch  # noqa: F401 - ToTensorV2

    chw = A.Compose([A.pytorch.ToTensorV2(transpose_mask=True)])
    source = MultiMaskFolder(*by_class, layout="by_class", image_size=None, mask_mode="multi_hot", transform=chw)
    with pytest.raises(xl.SampleError, match=re.escape("the transform returned a mask of shape (3, 4, 6)")) as caught:
        whole(source)
    assert caught.value.path.endswith("a.png")


def test_one_hot_border_fill_outside_the_classes_is_an_error(by_class):
    fill = A.Compose([A.Affine(rotate=(30, 30), fill_mask=255, p=1)])
    source = MultiMaskFolder(*by_class, layout="by_class", image_size=None, mask_mode="one_hot", transform=fill)
    with pytest.raises(
        xl.SampleError, match=re.escape("the transform returned mask values up to 255, but one_hot masks of 4")
    ):
        whole(source)


# --- MultiMaskFolder: layouts and bad input ------------------------------------------------------


def test_by_class_uses_sorted_folders_or_class_names(by_class):
    found = MultiMaskFolder(*by_class, layout="by_class", image_size=None)
    assert found.class_names == ["car", "road", "sign"]
    reordered = MultiMaskFolder(*by_class, layout="by_class", image_size=None, class_names=["sign", "road", "car"])
    _, y = whole(reordered)
    # sign 1, road 2, car 3: car now wins the overlap at (1, 2)
    np.testing.assert_array_equal(y[0], CAR * 3 + (ROAD & ~CAR) * 2 + SIGN * 1)


def test_by_class_class_names_must_match_the_folders(by_class):
    _, masks_dir = by_class
    with pytest.raises(xl.DatasetError, match=re.escape("class_names lists 'tree' but masks_dir")):
        MultiMaskFolder(*by_class, layout="by_class", image_size=None, class_names=["car", "road", "sign", "tree"])
    expected = f"masks_dir {masks_dir!r} has class folders that are not in class_names: 'sign'. Add them to class_names"
    with pytest.raises(xl.DatasetError, match=re.escape(expected)):
        MultiMaskFolder(*by_class, layout="by_class", image_size=None, class_names=["car", "road"])


def test_mask_files_directly_in_masks_dir_are_refused(by_image, by_class):
    for layout, (images_dir, masks_dir) in (("by_image", by_image), ("by_class", by_class)):
        stray = save_png(os.path.join(masks_dir, "a.png"), binary(CAR))
        with pytest.raises(xl.DatasetError, match=re.escape(f"has 1 mask files directly in it ({stray})")):
            MultiMaskFolder(images_dir, masks_dir, layout=layout, image_size=None, class_names=CLASSES)
        os.remove(stray)


def test_by_image_file_names_must_name_a_class(by_image):
    images_dir, masks_dir = by_image
    tree = save_png(os.path.join(masks_dir, "a", "tree.png"), binary(CAR))
    save_png(os.path.join(masks_dir, "a", "car_7.png"), binary(CAR))  # an instance of car: fine
    expected = (
        f"1 mask files are not named after a class in {CLASSES}: {tree}. Name each file <class>.png, "
        "or <class>_<anything>.png for several objects of one class, or pass class_names=None"
    )
    with pytest.raises(xl.DatasetError, match=re.escape(expected)):
        MultiMaskFolder(images_dir, masks_dir, layout="by_image", image_size=None, class_names=CLASSES)


def test_longest_class_name_prefix_wins():
    from xloader.sources.multi_mask import class_of_file

    names = ["car", "car_door", "door"]
    assert class_of_file("car", names) == "car"
    assert class_of_file("car_1", names) == "car"
    assert class_of_file("car_door_2", names) == "car_door"
    assert class_of_file("cart", names) is None


def test_images_without_masks_raise_skip_or_become_background(by_image):
    images_dir, masks_dir = by_image
    lonely = save_png(os.path.join(images_dir, "c.png"), image_pattern())
    save_png(os.path.join(masks_dir, "zz", "car.png"), binary(CAR))
    expected = (
        f"1 image has no mask in {masks_dir!r}: {lonely}; 1 mask has no image in {images_dir!r}: "
        f"{os.path.join(masks_dir, 'zz')}. An image's masks are in masks_dir/<image path without extension>/"
    )
    options = {"layout": "by_image", "image_size": None, "class_names": CLASSES}
    with pytest.raises(xl.DatasetError, match=re.escape(expected)) as caught:
        MultiMaskFolder(images_dir, masks_dir, **options)
    assert "or unpaired='background' to use images without masks as all background" in str(caught.value)
    with pytest.warns(UserWarning, match="They are skipped"):
        skipped = MultiMaskFolder(images_dir, masks_dir, unpaired="skip", **options)
    assert skipped.image_files == ["a.png", "b.png"]
    assert skipped.skipped == [(lonely, "image has no mask"), (os.path.join(masks_dir, "zz"), "mask has no image")]
    with pytest.warns(UserWarning, match="1 mask has no image"):
        background = MultiMaskFolder(images_dir, masks_dir, unpaired="background", **options)
    assert background.image_files == ["a.png", "b.png", "c.png"]
    _, y = whole(background)
    np.testing.assert_array_equal(y[2], np.zeros((H, W), np.uint8))


def test_by_class_image_without_any_class_file_is_unpaired(by_class):
    images_dir, masks_dir = by_class
    lonely = save_png(os.path.join(images_dir, "c.png"), image_pattern())
    with pytest.raises(xl.DatasetError, match=re.escape(f"1 image has no mask in {masks_dir!r}: {lonely}")):
        MultiMaskFolder(images_dir, masks_dir, layout="by_class", image_size=None)


def test_mask_of_another_size_names_the_mask_and_its_image(by_class):
    images_dir, masks_dir = by_class
    wrong = save_png(os.path.join(masks_dir, "sign", "b.png"), np.zeros((W, H), np.uint8))
    source = MultiMaskFolder(images_dir, masks_dir, layout="by_class", image_size=(8, 8))  # checked before resizing
    expected = (
        f"cannot use {wrong}: the mask is 6x4 (HxW) but its image {os.path.join(images_dir, 'b.png')} is 4x6; "
        "a mask must have its image's size."
    )
    with pytest.raises(xl.BadImageError, match=re.escape(expected)) as caught:
        whole(source)
    assert caught.value.path == wrong


def test_unknown_option_values_are_refused(by_class, rle_csv):
    with pytest.raises(ValueError, match=re.escape("layout must be one of 'by_image', 'by_class'; got 'flat'")):
        MultiMaskFolder(*by_class, layout="flat", image_size=None)
    with pytest.raises(
        ValueError, match=re.escape("mask_mode must be one of 'index', 'one_hot', 'multi_hot'; got 'stack'")
    ):
        MultiMaskFolder(*by_class, layout="by_class", image_size=None, mask_mode="stack")
    with pytest.raises(ValueError, match=re.escape("mask_dtype must be one of 'uint8', 'int64'; got 'float32'")):
        RLEMasks(*rle_csv, image_size=None, mask_dtype="float32")
    with pytest.raises(ValueError, match=re.escape("order must be one of 'F', 'C'; got 'column'")):
        RLEMasks(*rle_csv, image_size=None, order="column")
    with pytest.raises(
        ValueError, match=re.escape("unpaired must be one of 'raise', 'skip', 'background'; got 'drop'")
    ):
        RLEMasks(*rle_csv, image_size=None, unpaired="drop")
    with pytest.raises(TypeError, match=re.escape("class_names must be a list of names, got 'car'")):
        MultiMaskFolder(*by_class, layout="by_class", image_size=None, class_names="car")
    with pytest.raises(ValueError, match=re.escape("class_names lists 'car' more than once")):
        MultiMaskFolder(*by_class, layout="by_class", image_size=None, class_names=["car", "car"])


# --- RLEMasks: bad input -------------------------------------------------------------------------


def test_rle_string_errors_name_the_csv_line_and_the_fix(tmp_path, images_dir):
    csv = write_csv(tmp_path / "t.csv", [("a.png", "car", rle_encode(CAR)), ("b.png", "car", "1 2 5")])
    expected = (
        f"{csv} line 3 (id 'b.png'): bad run-length string: it has 3 numbers, an odd count; runs come in "
        "'start length' pairs. Fix the 'rle' field (an empty field is an empty mask)."
    )
    with pytest.raises(xl.DatasetError, match=re.escape(expected)):
        RLEMasks(images_dir, csv, image_size=None)
    csv = write_csv(tmp_path / "t.csv", [("a.png", "car", "7 2 3 1")])
    with pytest.raises(
        xl.DatasetError, match=re.escape(f"{csv} line 2 (id 'a.png'): bad run-length string: run 3 1 starts")
    ):
        RLEMasks(images_dir, csv, image_size=None)


def test_rle_that_overruns_its_image_names_line_and_image(tmp_path, images_dir):
    csv = write_csv(
        tmp_path / "t.csv", [("a.png", "car", rle_encode(CAR)), ("a.png", "road", "20 5"), ("b.png", "car", "")]
    )
    np.testing.assert_array_equal(
        load(RLEMasks(images_dir, csv, image_size=None))[1][3, 5], 2
    )  # ends at the last pixel
    csv = write_csv(
        tmp_path / "t.csv", [("a.png", "car", rle_encode(CAR)), ("a.png", "road", "20 6"), ("b.png", "car", "")]
    )
    source = RLEMasks(images_dir, csv, image_size=None)
    expected = (
        f"cannot use {csv} line 3: a run ends at pixel 25, past the 24 pixels of its image "
        f"{os.path.join(images_dir, 'a.png')} (4x6, HxW). Check that the row names the right image and that "
        "order='F' is the CSV's pixel order."
    )
    with pytest.raises(xl.BadImageError, match=re.escape(expected)) as caught:
        whole(source)
    assert caught.value.path == csv


def test_rle_missing_columns_are_named_with_the_header(tmp_path, images_dir):
    csv = write_csv(tmp_path / "t.csv", [("a.png", rle_encode(CAR))], header=("ImageId", "EncodedPixels"))
    expected = (
        f"{csv} has no column 'image_id' (columns found: 'ImageId', 'EncodedPixels'). "
        "Pass id_column='<column>' to use another column."
    )
    with pytest.raises(xl.DatasetError, match=re.escape(expected)):
        RLEMasks(images_dir, csv, image_size=None)
    expected = (
        f"{csv} has no column 'class' (columns found: 'ImageId', 'EncodedPixels'). Pass class_column='<column>' "
        "to use another column, or class_column=None if the file has no class column."
    )
    with pytest.raises(xl.DatasetError, match=re.escape(expected)):
        RLEMasks(images_dir, csv, image_size=None, id_column="ImageId", rle_column="EncodedPixels")
    empty = write_csv(tmp_path / "empty.csv", [])
    with pytest.raises(xl.DatasetError, match=re.escape(f"{empty} has no rows (only a header line).")):
        RLEMasks(images_dir, empty, image_size=None)


def test_rle_unknown_classes_are_listed_with_their_lines(tmp_path, images_dir):
    csv = write_csv(tmp_path / "t.csv", [("a.png", "car", ""), ("b.png", "tree", ""), ("b.png", "cat", "")])
    expected = (
        f"{csv} has 2 rows whose class is not in class_names ['car', 'road']: line 3: 'tree', line 4: 'cat'. "
        "Add the class to class_names, or remove the rows."
    )
    with pytest.raises(xl.DatasetError, match=re.escape(expected)):
        RLEMasks(images_dir, csv, image_size=None, class_names=["car", "road"])


def test_rle_background_images_may_come_after_every_listed_one(tmp_path, images_dir):
    for name in ("c.png", "d.png"):
        save_png(os.path.join(images_dir, name), image_pattern())
    csv = write_csv(tmp_path / "t.csv", [("a.png", "car", rle_encode(CAR))])
    source = RLEMasks(images_dir, csv, image_size=None, unpaired="background")
    assert source.image_files == ["a.png", "b.png", "c.png", "d.png"]
    _, y = whole(source)
    np.testing.assert_array_equal(y, np.stack([CAR, *[np.zeros((H, W), bool)] * 3]).astype(np.uint8))


def test_rle_images_without_rows_and_rows_without_images(tmp_path, images_dir):
    lonely = save_png(os.path.join(images_dir, "c.png"), image_pattern())
    csv = write_csv(tmp_path / "t.csv", [("a.png", "car", rle_encode(CAR)), ("b", "car", ""), ("zz.png", "car", "1 2")])
    expected = (
        f"1 image has no row in {csv!r}: {lonely}; 1 row names no image in {images_dir!r}: {csv} line 4 (id 'zz.png'). "
        "Ids name images by their path relative to images_dir, with or without extension"
    )
    with pytest.raises(xl.DatasetError, match=re.escape(expected)):
        RLEMasks(images_dir, csv, image_size=None)
    with pytest.warns(UserWarning, match="They are skipped"):
        skipped = RLEMasks(images_dir, csv, image_size=None, unpaired="skip")
    assert skipped.image_files == ["a.png", "b.png"]
    assert skipped.skipped == [(lonely, "image has no mask"), (f"{csv} line 4 (id 'zz.png')", "mask has no image")]
    with pytest.warns(UserWarning, match=re.escape("1 row names no image")):
        background = RLEMasks(images_dir, csv, image_size=None, unpaired="background")
    assert background.image_files == ["a.png", "b.png", "c.png"]
    _, y = whole(background)
    np.testing.assert_array_equal(y[0], CAR.astype(np.uint8))
    np.testing.assert_array_equal(y[2], np.zeros((H, W), np.uint8))


def test_rle_id_that_names_two_images_is_ambiguous(tmp_path, images_dir):
    save_png(os.path.join(images_dir, "a.jpg"), image_pattern())
    csv = write_csv(tmp_path / "t.csv", [("a", "car", "")])
    with pytest.raises(xl.DatasetError, match=re.escape(f"{csv} line 2: id 'a' names several images")):
        RLEMasks(images_dir, csv, image_size=None, unpaired="skip")
    csv = write_csv(tmp_path / "t.csv", [("a.png", "car", ""), ("a.jpg", "car", ""), ("b.png", "car", "")])
    assert RLEMasks(images_dir, csv, image_size=None).image_files == ["a.jpg", "a.png", "b.png"]


def test_indexes_are_flat_arrays_and_sources_pickle(by_image, by_class, rle_csv):
    from xloader._strings import StringTable
    from xloader.index._sample_index import Ragged

    def leaves(columns):
        for name, column in columns.items():
            if isinstance(column, Ragged):
                yield from leaves({f"{name}.{k}": v for k, v in column.columns.items()})
            else:
                yield name, type(column)

    rle = RLEMasks(*rle_csv, image_size=None, class_names=CLASSES)
    assert dict(leaves(rle._index.columns)) == {
        "files": StringTable,
        "rows.classes": np.ndarray,
        "rows.lines": np.ndarray,
        "rows.runs.starts": np.ndarray,
        "rows.runs.lengths": np.ndarray,
    }
    folder = sources(by_image, by_class, rle_csv)["by_image"]
    assert dict(leaves(folder._index.columns)) == {
        "files": StringTable,
        "masks.paths": StringTable,
        "masks.classes": np.ndarray,
    }
    for source in [*sources(by_image, by_class, rle_csv, transform=FLIP_TURN, mask_mode="multi_hot").values(), rle]:
        # No per-sample Python objects: strings in StringTables, numbers in arrays.
        assert not any(isinstance(v, (list, dict)) and v for k, v in vars(source).items() if k != "class_names")
        copy = pickle.loads(pickle.dumps(source))
        for index in range(len(source)):
            for got, want in zip(load(copy, index, seed=3), load(source, index, seed=3), strict=True):
                np.testing.assert_array_equal(got, want)


def test_new_source_modules_import_no_framework_or_albumentations():
    code = (
        "import sys; import xloader.sources.multi_mask, xloader.sources.rle, xloader.sources.image_mask_folder; "
        "bad = [m for m in ('albumentations', 'torch', 'keras', 'tensorflow', 'jax') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- both adapters: the same batches, y left as the source made it --------------------------------

AUGMENT = A.Compose(
    [
        A.HorizontalFlip(p=0.5),
        A.Affine(rotate=(-30, 30), scale=(0.8, 1.2), p=0.7),
        A.RandomResizedCrop(size=(10, 14), scale=(0.5, 1.0), p=1.0),
        A.RandomBrightnessContrast(p=0.5),
    ]
)


@pytest.fixture
def adapter_sources(tmp_path) -> dict[str, object]:
    """6 images with all three layouts and a run-length CSV, random annotations."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(6):
        save_png(tmp_path / "images" / f"{i}.png", rng.integers(0, 256, (H * 2, W * 2, 3), dtype=np.uint8))
        masks = rng.random((3, H * 2, W * 2)) < 0.3
        for name, mask in zip(CLASSES, masks, strict=True):
            save_png(tmp_path / "by_class" / name / f"{i}.png", binary(mask))
            rows.append((f"{i}.png", name, rle_encode(mask)))
        save_png(tmp_path / "pairs" / f"{i}.png", (masks * np.arange(1, 4)[:, None, None]).max(0).astype(np.uint8))
    csv = write_csv(tmp_path / "t.csv", rows)
    images = str(tmp_path / "images")
    return {
        "multi_hot": MultiMaskFolder(
            images, tmp_path / "by_class", layout="by_class", image_size=None, mask_mode="multi_hot", transform=AUGMENT
        ),
        "rle_one_hot": RLEMasks(
            images, csv, image_size=None, mask_mode="one_hot", mask_dtype="float32", transform=AUGMENT
        ),
        "pairs_int64": xl.ImageMaskFolder(
            images, tmp_path / "pairs", image_size=None, mask_dtype="int64", transform=AUGMENT
        ),
    }


def expected_batches(source, epochs=(0, 1)) -> list:
    reference = xl.Batches(source, batch_size=4, shuffle=True, seed=11)
    return [reference.get_batch(e, b) for e in epochs for b in range(len(reference))]


def assert_same(got, want):
    assert len(got) == len(want)
    for (x, y), (x_want, y_want) in zip(got, want, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == x_want.dtype and y.dtype == y_want.dtype
        np.testing.assert_array_equal(x, x_want)
        np.testing.assert_array_equal(y, y_want)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_torch_dataloader_gives_the_core_batches_and_leaves_y_alone(adapter_sources, num_workers):
    from xloader.torch import DataLoader

    for name, source in adapter_sources.items():
        want = expected_batches(source)
        loader = DataLoader(source, batch_size=4, shuffle=True, seed=11, layout="NHWC", num_workers=num_workers)
        got = [tuple(t.numpy() for t in batch) for _ in range(2) for batch in loader]
        assert_same(got, want)
        # NCHW moves x's channels first; y stays (N, H, W, K) or (N, H, W) as the source made it.
        nchw = DataLoader(source, batch_size=4, shuffle=True, seed=11, num_workers=num_workers)
        x, y = next(iter(nchw))
        np.testing.assert_array_equal(x.numpy(), want[0][0].transpose(0, 3, 1, 2))
        assert tuple(y.shape) == want[0][1].shape, name
        np.testing.assert_array_equal(y.numpy(), want[0][1])


@pytest.mark.parametrize("use_multiprocessing", [False, True], ids=["threads", "processes"])
def test_keras_pydataset_gives_the_core_batches(adapter_sources, use_multiprocessing):
    from xloader.keras import PyDataset

    # Process workers (forkserver) start slowly: one source shows the index pickles to them intact.
    chosen = ["rle_one_hot"] if use_multiprocessing else list(adapter_sources)
    for source in (adapter_sources[name] for name in chosen):
        want = expected_batches(source)
        with PyDataset(
            source, batch_size=4, shuffle=True, seed=11, workers=2, use_multiprocessing=use_multiprocessing
        ) as ds:
            got = list(ds) + list(ds)  # epochs 0 and 1
        assert_same(got, want)


# --- docs ---------------------------------------------------------------------------------------


def test_every_example_in_the_segmentation_docs_runs(tmp_path):
    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "segmentation.md")
    with open(docs, encoding="utf-8") as file:
        blocks = re.findall(r"```python\n(.*?)```", file.read(), flags=re.S)
    assert len(blocks) >= 3
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
    for block in blocks:
        run = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
        )
        assert run.returncode == 0, f"{block}\n{run.stdout}\n{run.stderr[-3000:]}"


# --- albumentations: what xloader works around ---------------------------------------------------


class Recorder:
    """A transform that records what it is given and returns it unchanged."""

    def __init__(self):
        self.seen: list[tuple[str, tuple[int, ...]]] = []

    def __call__(self, **data):
        self.seen.append((data["mask"].dtype.str, data["mask"].shape))
        return data

    def set_random_state(self, numpy_generator, python_random):
        pass


def test_transforms_get_uint8_or_int32_masks_never_int64_or_bool(tmp_path, by_class, rle_csv):
    save_png(tmp_path / "pairs" / "images" / "a.png", image_pattern())
    save_png(tmp_path / "pairs" / "masks" / "a.png", MERGED)
    pairs = (str(tmp_path / "pairs" / "images"), str(tmp_path / "pairs" / "masks"))
    cases = [
        (xl.ImageMaskFolder, pairs, {}, ("|u1", (H, W))),
        (xl.ImageMaskFolder, pairs, {"mask_dtype": "int64"}, ("<i4", (H, W))),
        (
            xl.ImageMaskFolder,
            pairs,
            {"num_classes": 4, "mask_mode": "one_hot", "mask_dtype": "float32"},
            ("|u1", (H, W)),
        ),
        (RLEMasks, rle_csv, {"mask_dtype": "int64"}, ("|u1", (H, W))),  # 4 classes fit uint8
        (RLEMasks, rle_csv, {"mask_mode": "multi_hot", "mask_dtype": "float32"}, ("|u1", (H, W, 3))),
    ]
    for kind, folders, options, expected in cases:
        recorder = Recorder()
        source = kind(*folders, image_size=None, transform=recorder, **options)
        load(source)
        assert source.transform.__class__ is Recorder
        # The source runs a per-thread copy of the transform: read what that copy saw.
        seen = source._runner._thread_copy().seen
        assert seen == [expected], (kind.__name__, options, seen)


def test_albumentations_still_changes_int64_mask_dtype_at_random():
    """Evidence for NOTE [ Masks through albumentations ] (albumentations 2.0.8). If this fails,
    albumentations changed: re-measure and update the NOTE and docs/segmentation.md."""
    import random

    image = image_pattern(16, 16)
    mask = (np.arange(256).reshape(16, 16) % 3).astype(np.int64)
    augment = A.Compose([A.HorizontalFlip(p=0.5), A.Affine(rotate=(-20, 20), p=0.5)])
    dtypes = set()
    for seed in range(40):
        augment.set_random_state(np.random.default_rng(seed), random.Random(seed))
        dtypes.add(augment(image=image, mask=mask)["mask"].dtype.name)
    assert dtypes == {"int32", "int64"}
