"""`ImageFolder` against Keras's own `flow_from_directory` (the legacy `DirectoryIterator`), the oracle.

For one tree (nested folders, upper-case extensions, an empty class, links, a class too small
for the validation subset), both must agree on `class_indices`, `filenames`, labels, batches
per epoch and, for lossless files, every pixel, for every `class_mode`, `color_mode` and `subset`.
Where xloader differs on purpose (hidden files, 16-bit greys, grey levels of colour files, "binary"
with 3 classes), a test shows the difference. Then: the splits' own guarantees and the messages
for bad options.
"""

from __future__ import annotations

import io
import os
import re
import warnings

import albumentations as A
import numpy as np
import pytest
from PIL import Image

import xloader as xl
from xloader.decoding import resize_image, resize_mask

legacy_image = pytest.importorskip("keras.src.legacy.preprocessing.image")

_FORMATS = {".png": "PNG", ".bmp": "BMP", ".ppm": "PPM", ".tif": "TIFF", ".jpg": "JPEG", ".jpeg": "JPEG"}


def write_image(path, array: np.ndarray, image_format: str | None = None) -> str:
    """Save `array` (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA in the format its extension names."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fmt = image_format or _FORMATS[os.path.splitext(str(path))[1].lower()]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    with open(path, "wb") as file:
        file.write(buffer.getvalue())
    return str(path)


def noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


class Tree:
    """The oracle tree; `colour` holds the files whose content is not grey, `lossy` the JPEGs."""

    def __init__(self, base):
        self.root = os.path.join(base, "data")
        elsewhere = os.path.join(base, "elsewhere")  # outside root: reached only through links
        self.colour: set[str] = set()
        self.lossy: set[str] = set()
        files = {
            "ants/B.PNG": (6, 8, 3),
            "ants/a.png": (6, 8),
            "ants/c.JPG": (6, 8, 3),
            "ants/sub/d.png": (7, 5, 4),
            "ants/sub/deeper/e.jpeg:PNG": (9, 12),  # PNG content under a .jpeg name
            "ants/sub-x/f.TIF": (6, 8, 3),
            "ants/zz/g.BMP": (3, 4, 3),
            "wasps/h.PPM": (6, 8, 3),
            "wasps/i.png": (10, 4, 4),
            **{f"bees/bee_{i:03d}.png": ((6, 8) if i % 3 else (4, 11, 3)) for i in range(100)},
        }
        for seed, (spec, shape) in enumerate(files.items()):
            name, _, content_format = spec.partition(":")
            write_image(os.path.join(self.root, name), noise(shape, seed), content_format or None)
            relative = os.path.join(*name.split("/"))
            if len(shape) == 3:
                self.colour.add(relative)
            if name.lower().endswith(".jpg"):
                self.lossy.add(relative)
        write_image(os.path.join(elsewhere, "outside.png"), noise((6, 8), 500))
        write_image(os.path.join(elsewhere, "linked", "j.png"), noise((6, 8), 501))
        write_image(os.path.join(elsewhere, "linked", "k.Png"), noise((5, 5, 3), 502))
        self.colour.add(os.path.join("ants", "folder.png", "k.Png"))
        os.symlink(os.path.join(elsewhere, "linked"), os.path.join(self.root, "ants", "folder.png"))  # a folder
        os.symlink(os.path.join(elsewhere, "outside.png"), os.path.join(self.root, "ants", "linked_file.png"))
        os.makedirs(os.path.join(self.root, "empty"))
        for note in ["ants/notes.txt", "empty/readme.txt", "bees/labels.csv"]:
            with open(os.path.join(self.root, note), "w") as file:
                file.write("not an image")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Tree:
    return Tree(str(tmp_path_factory.mktemp("oracle")))


def keras_flow(root: str, *, validation_split: float | None = None, **options):
    generator = legacy_image.ImageDataGenerator(validation_split=validation_split or 0.0)
    return generator.flow_from_directory(root, shuffle=False, **options)


def ours(root: str, **options) -> tuple[xl.ImageFolder, list[str]]:
    """The dataset and the messages of the warnings its construction gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = xl.ImageFolder(root, **options)
    return dataset, [str(w.message) for w in caught]


CLASS_MODES = ["categorical", "binary", "sparse", "input", None]
SUBSETS = [(None, None), (0.29, "training"), (0.29, "validation"), (0.5, "training"), (0.5, "validation")]


# --- the index: classes, files, labels, batches per epoch ---------------------------------------


@pytest.mark.parametrize("follow_links", [False, True], ids=["links-not-followed", "follow_links"])
@pytest.mark.parametrize(("validation_split", "subset"), SUBSETS, ids=[f"{s}-{v}" for v, s in SUBSETS])
def test_index_equals_keras(tree, validation_split, subset, follow_links):
    keras_it = keras_flow(
        tree.root, validation_split=validation_split, subset=subset, follow_links=follow_links, batch_size=7
    )
    mine, messages = ours(
        tree.root,
        image_size=(6, 8),
        validation_split=validation_split,
        subset=subset,
        follow_links=follow_links,
        allow_empty_classes=True,
    )
    assert mine.class_indices == keras_it.class_indices == {"ants": 0, "bees": 1, "empty": 2, "wasps": 3}
    assert mine.filenames == keras_it.filenames
    np.testing.assert_array_equal(mine.labels, keras_it.classes)
    assert len(xl.Batches(mine, batch_size=7)) == len(keras_it)
    assert len(mine) == keras_it.samples

    # The empty folder warns; a class with files but none in this subset warns and keeps its index.
    expected = [f"class folders with no images in {tree.root!r}: [{os.path.join(tree.root, 'empty')!r}]."]
    if subset == "validation" and validation_split == 0.29:  # wasps: int(0.29 * 2) == 0 files
        assert 3 not in keras_it.classes
        expected.append(f"classes ['wasps'] of {tree.root!r} have images but none in the validation subset")
    assert len(messages) == len(expected)
    for message, start in zip(messages, expected, strict=True):
        assert message.startswith(start), message


def test_tree_has_what_the_oracle_needs(tree):
    """The cases the oracle is meant to cover are really in the tree (and in Keras's listing)."""
    files = keras_flow(tree.root, follow_links=True).filenames
    assert os.path.join("ants", "B.PNG") in files  # upper-case extension
    assert os.path.join("ants", "sub", "deeper", "e.jpeg") in files  # nested two levels
    # Directories sort as whole path strings ("-" < "/"): sub, then sub-x, then sub/deeper.
    positions = [
        files.index(os.path.join("ants", *p))
        for p in [("sub", "d.png"), ("sub-x", "f.TIF"), ("sub", "deeper", "e.jpeg")]
    ]
    assert positions == sorted(positions)
    assert os.path.join("ants", "folder.png", "j.png") in files  # a followed link
    assert os.path.join("ants", "linked_file.png") in files
    # 0.29 * 100 is 28.999999999999996: Keras takes 28 bees for validation, and so must we.
    assert len(keras_flow(tree.root, validation_split=0.29, subset="validation", classes=["bees"]).filenames) == 28
    bees = {"class_names": ["bees"], "validation_split": 0.29, "subset": "validation"}
    assert len(xl.ImageFolder(tree.root, image_size=None, **bees)) == 28


# --- batches: every class_mode, color_mode and subset ------------------------------------------


def assert_images_equal(mine: np.ndarray, theirs: np.ndarray, names: list[str], tree: Tree, color_mode: str) -> None:
    """Keras's float32 pixels equal ours for lossless files; grey levels of colour files may differ by 1."""
    assert mine.dtype == np.uint8 and theirs.dtype == np.float32 and mine.shape == theirs.shape
    for image, expected, name in zip(mine, theirs, names, strict=True):
        if name in tree.lossy:
            continue  # JPEG: same decoder family, but equality is not promised (docs/migration.md)
        if color_mode == "grayscale" and name in tree.colour:
            # OpenCV's (libpng's) RGB-to-grey rounding against Pillow's: documented, at most 1 level.
            assert np.abs(image.astype(np.float32) - expected).max() <= 1, name
        else:
            np.testing.assert_array_equal(image.astype(np.float32), expected, err_msg=name)


@pytest.mark.parametrize(("validation_split", "subset"), SUBSETS[:3], ids=["all", "training", "validation"])
@pytest.mark.parametrize("color_mode", ["rgb", "rgba", "grayscale"])
@pytest.mark.parametrize("class_mode", CLASS_MODES, ids=[str(m) for m in CLASS_MODES])
def test_batches_equal_keras(tree, class_mode, color_mode, validation_split, subset):
    classes = ["ants", "wasps"] if class_mode == "binary" else None  # binary: two classes (see below)
    keras_it = keras_flow(
        tree.root,
        validation_split=validation_split,
        subset=subset,
        classes=classes,
        class_mode=class_mode,
        color_mode=color_mode,
        target_size=(6, 8),
        interpolation="nearest",
        follow_links=True,
        batch_size=16,
    )
    mine, _ = ours(
        tree.root,
        image_size=(6, 8),
        class_names=classes,
        label_mode=class_mode,
        color_mode=color_mode,
        interpolation="nearest",
        follow_links=True,
        validation_split=validation_split,
        subset=subset,
        allow_empty_classes=True,
    )
    batches = xl.Batches(mine, batch_size=16)
    assert len(batches) == len(keras_it)
    names = mine.filenames
    for b in range(len(batches)):
        theirs, batch = keras_it[b], batches.get_batch(0, b)
        batch_names = names[b * 16 : (b + 1) * 16]
        if class_mode is None:
            assert isinstance(batch, np.ndarray) and isinstance(theirs, np.ndarray)
            assert_images_equal(batch, theirs, batch_names, tree, color_mode)
            continue
        (x, y), (keras_x, keras_y) = batch, theirs
        assert_images_equal(x, keras_x, batch_names, tree, color_mode)
        if class_mode == "input":
            assert_images_equal(y, keras_y, batch_names, tree, color_mode)
            np.testing.assert_array_equal(y, x)
        elif class_mode == "sparse":
            assert y.dtype == np.int64  # Keras: float32 class indices
            np.testing.assert_array_equal(y.astype(np.float32), keras_y)
        else:
            assert y.dtype == np.float32
            np.testing.assert_array_equal(y, keras_y)


@pytest.mark.parametrize("target_size", [(6, 8), (5, 9), (12, 3), (1, 7)])
@pytest.mark.parametrize("keep_aspect_ratio", [False, True], ids=["stretch", "keep_aspect_ratio"])
def test_nearest_resize_and_aspect_crop_equal_keras_pixel_for_pixel(tree, target_size, keep_aspect_ratio):
    keras_it = keras_flow(
        tree.root,
        classes=["ants", "wasps"],
        class_mode=None,
        target_size=target_size,
        interpolation="nearest",
        keep_aspect_ratio=keep_aspect_ratio,
        batch_size=64,
    )
    mine, _ = ours(
        tree.root,
        image_size=target_size,
        class_names=["ants", "wasps"],
        label_mode=None,
        interpolation="nearest",
        keep_aspect_ratio=keep_aspect_ratio,
    )
    assert_images_equal(xl.Batches(mine, batch_size=64).get_batch(0, 0), keras_it[0], mine.filenames, tree, "rgb")


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic", "area", "lanczos"])
def test_keep_aspect_ratio_crops_where_keras_crops(tmp_path, interpolation):
    # A crop of exactly the target size needs no resampling, so every filter must give Keras's crop.
    root = tmp_path / "r"
    write_image(root / "c" / "wide.png", noise((10, 21, 3), 1))  # 21 - 10 = 11 extra columns: 5 left, 6 right
    write_image(root / "c" / "tall.png", noise((17, 10, 3), 2))  # 7 extra rows: 3 above, 4 below
    keras_x = keras_flow(
        str(root), target_size=(10, 10), interpolation="nearest", keep_aspect_ratio=True, class_mode=None
    )[0]
    mine, _ = ours(str(root), image_size=(10, 10), interpolation=interpolation, keep_aspect_ratio=True, label_mode=None)
    x = xl.Batches(mine, batch_size=2).get_batch(0, 0)
    np.testing.assert_array_equal(x.astype(np.float32), keras_x)
    np.testing.assert_array_equal(x[0], noise((17, 10, 3), 2)[3:13])  # tall.png sorts first
    np.testing.assert_array_equal(x[1], noise((10, 21, 3), 1)[:, 5:15])


def test_nearest_equals_pillow_for_many_sizes_and_crops():
    # Pillow's NEAREST (what Keras resizes with by default) to the bit, ties included.
    rng = np.random.default_rng(0)
    for _ in range(400):
        height, width, target_height, target_width = (int(v) for v in rng.integers(1, 48, 4))
        image = noise((height, width, 3), int(rng.integers(1 << 30)))
        for keep in (False, True):
            mine = resize_image(image, (target_height, target_width), "nearest", keep_aspect_ratio=keep)
            expected = Image.fromarray(image)
            if (height, width) != (target_height, target_width):
                box = None
                if keep:  # Keras's load_img crop box, written out independently
                    crop_h = min(height, width * target_height // target_width)
                    crop_w = min(width, height * target_width // target_height)
                    top, left = (height - crop_h) // 2, (width - crop_w) // 2
                    box = (left, top, left + crop_w, top + crop_h)
                expected = expected.resize((target_width, target_height), Image.Resampling.NEAREST, box=box)
            np.testing.assert_array_equal(
                mine, np.asarray(expected), err_msg=f"{image.shape} -> {target_height, target_width}"
            )


def test_masks_resize_on_the_nearest_grid_of_images():
    mask = np.arange(35, dtype=np.int64).reshape(5, 7)
    for size in [(3, 3), (8, 13), (5, 2)]:
        for keep in (False, True):
            expected = resize_image(mask[:, :, None], size, "nearest", keep_aspect_ratio=keep)[:, :, 0]
            resized = resize_mask(mask, size, keep_aspect_ratio=keep)
            assert resized.dtype == np.int64
            np.testing.assert_array_equal(resized, expected)


# --- deliberate differences, shown --------------------------------------------------------------


def test_hidden_entries_and_extensionless_names_are_listed_by_keras_only(tmp_path):
    root = tmp_path / "r"
    for name in ["c/a.png", "c/.hidden.png", "c/._a.png", "c/.cache/b.png", "c/scanpng", ".ipynb_checkpoints/x.png"]:
        write_image(root / name, noise((2, 3), 0), "PNG")
    keras_it = keras_flow(str(root))
    mine, _ = ours(str(root), image_size=None)
    assert keras_it.class_indices == {".ipynb_checkpoints": 0, "c": 1}
    assert mine.class_indices == {"c": 0}
    assert keras_it.filenames == [
        os.path.join(".ipynb_checkpoints", "x.png"),
        os.path.join("c", "._a.png"),
        os.path.join("c", ".hidden.png"),
        os.path.join("c", "a.png"),
        os.path.join("c", "scanpng"),  # Keras matches the name's ending, without a dot
        os.path.join("c", ".cache", "b.png"),
    ]
    assert mine.filenames == [os.path.join("c", "a.png")]


def test_sixteen_bit_grey_is_reduced_to_eight_bits_where_keras_keeps_it(tmp_path):
    grey16 = np.array([[0, 256, 65535], [4660, 43981, 1]], dtype=np.uint16)
    (tmp_path / "r" / "c").mkdir(parents=True)
    Image.fromarray(grey16).save(tmp_path / "r" / "c" / "deep.png")
    keras_x = keras_flow(str(tmp_path / "r"), target_size=(2, 3), color_mode="grayscale", class_mode=None)[0]
    mine, _ = ours(str(tmp_path / "r"), image_size=(2, 3), color_mode="grayscale", label_mode=None)
    x = xl.Batches(mine, batch_size=1).get_batch(0, 0)
    np.testing.assert_array_equal(keras_x[0, :, :, 0], grey16.astype(np.float32))
    np.testing.assert_array_equal(x[0, :, :, 0], (grey16 >> 8).astype(np.uint8))


def test_binary_needs_two_classes_where_keras_does_not_check(tree):
    assert set(keras_flow(tree.root, class_mode="binary").classes.tolist()) == {0, 1, 3}
    with pytest.raises(xl.DatasetError, match=r"label_mode='binary' needs exactly 2 classes, but .* has 4"):
        xl.ImageFolder(tree.root, image_size=None, label_mode="binary", allow_empty_classes=True)


# --- label_mode="input" -------------------------------------------------------------------------


def test_input_mode_target_is_the_transformed_image(tmp_path):
    root = tmp_path / "r"
    write_image(root / "c" / "a.png", noise((4, 6, 3), 3))
    flip = A.Compose([A.HorizontalFlip(p=1.0)])
    dataset = xl.ImageFolder(root, image_size=None, transform=flip, label_mode="input")
    x, y = xl.Batches(dataset, batch_size=1).get_batch(0, 0)
    np.testing.assert_array_equal(x[0], noise((4, 6, 3), 3)[:, ::-1])
    np.testing.assert_array_equal(y, x)
    assert y.dtype == x.dtype and not np.shares_memory(x, y)
    assert isinstance(xl.Batches(dataset, batch_size=1, to_fit=False).get_batch(0, 0), np.ndarray)


def test_sparse_is_an_alias_of_int(tree):
    dataset, _ = ours(tree.root, image_size=None, label_mode="sparse", allow_empty_classes=True)
    assert dataset.label_mode == "int"


# --- splits: disjoint, complete, deterministic --------------------------------------------------


@pytest.mark.parametrize("split_seed", [None, 0, 12345], ids=["keras-split", "seed-0", "seed-12345"])
@pytest.mark.parametrize("validation_split", [0.1, 0.29, 0.5, 0.9])
def test_subsets_are_disjoint_and_cover_every_file(tree, validation_split, split_seed):
    every, _ = ours(tree.root, image_size=None, allow_empty_classes=True, follow_links=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the empty class, and classes too small for a subset
        train, val = xl.ImageFolder.split(
            tree.root,
            validation_split=validation_split,
            split_seed=split_seed,
            image_size=None,
            allow_empty_classes=True,
            follow_links=True,
        )
        by_constructor = {
            subset: xl.ImageFolder(
                tree.root,
                image_size=None,
                validation_split=validation_split,
                subset=subset,
                split_seed=split_seed,
                allow_empty_classes=True,
                follow_links=True,
            )
            for subset in ("training", "validation")
        }
    assert set(train.filenames).isdisjoint(val.filenames)
    assert sorted(train.filenames + val.filenames) == sorted(every.filenames)
    assert train.class_indices == val.class_indices == every.class_indices
    label_of = dict(zip(every.filenames, every.labels.tolist(), strict=True))
    for part in (train, val):
        assert part.labels.tolist() == [label_of[name] for name in part.filenames]
        assert part.filenames == [name for name in every.filenames if name in set(part.filenames)]  # order kept
    assert by_constructor["training"].filenames == train.filenames
    assert by_constructor["validation"].filenames == val.filenames
    # Per class, int(validation_split * n) files go to validation, as in Keras, whatever the split kind.
    for label, total in enumerate(np.bincount(every.labels, minlength=4).tolist()):
        assert (val.labels == label).sum() == int(validation_split * total)


def test_seeded_split_golden_values(tmp_path):
    root = tmp_path / "r"
    for name in ["a0", "a1", "a2", "a3", "a4"]:
        write_image(root / "a" / f"{name}.png", noise((2, 2), 0))
    for name in ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9"]:
        write_image(root / "b" / "sub" / f"{name}.png", noise((2, 2), 0))
    val = {
        seed: xl.ImageFolder(root, image_size=None, validation_split=0.4, subset="validation", split_seed=seed)
        for seed in (0, 1)
    }
    join = os.path.join
    # Pinned: a change here changes every user's seeded split.
    assert val[0].filenames == [join("a", "a0.png"), join("a", "a3.png")] + [
        join("b", "sub", f"{n}.png") for n in ("b1", "b6", "b7", "b8")
    ]
    assert val[1].filenames == [join("a", "a1.png"), join("a", "a2.png")] + [
        join("b", "sub", f"{n}.png") for n in ("b0", "b2", "b5", "b7")
    ]
    keras_val = xl.ImageFolder(root, image_size=None, validation_split=0.4, subset="validation")
    assert keras_val.filenames == [join("a", "a0.png"), join("a", "a1.png")] + [
        join("b", "sub", f"{n}.png") for n in ("b0", "b1", "b2", "b3")
    ]


def test_seeded_split_ignores_class_order_and_moves_little_when_images_are_added(tmp_path):
    root = tmp_path / "r"
    for i in range(40):
        write_image(root / "x" / f"{i:02d}.png", noise((2, 2), 0))
        write_image(root / "y" / f"{i:02d}.png", noise((2, 2), 0))
    options = {"image_size": None, "validation_split": 0.25, "subset": "validation", "split_seed": 3}
    before = set(xl.ImageFolder(root, **options).filenames)
    assert before == set(xl.ImageFolder(root, class_names=["y", "x"], **options).filenames)
    for i in range(40, 43):  # 3 more images in class x
        write_image(root / "x" / f"{i:02d}.png", noise((2, 2), 0))
    after = set(xl.ImageFolder(root, **options).filenames)
    old_files = {name for name in after | before if int(os.path.basename(name)[:2]) < 40}
    assert len((before ^ after) & old_files) <= 3
    assert {name for name in before if name.startswith("y")} == {name for name in after if name.startswith("y")}


def test_class_with_images_but_none_in_a_subset_is_kept_with_a_warning(two_class_tree):
    with pytest.warns(UserWarning, match=r"classes \['dogs'\] of .* have images but none in the validation subset"):
        val = xl.ImageFolder(two_class_tree, image_size=None, validation_split=0.4, subset="validation")
    assert val.class_indices == {"cats": 0, "dogs": 1}
    assert val.filenames == [os.path.join("cats", "a.png"), os.path.join("cats", "b.png")]
    _, y = xl.Batches(
        xl.ImageFolder(
            two_class_tree, image_size=None, validation_split=0.4, subset="training", label_mode="categorical"
        ),
        batch_size=4,
    ).get_batch(0, 0)
    np.testing.assert_array_equal(y, np.array([[1, 0]] * 3 + [[0, 1]], dtype=np.float32))


def test_a_subset_with_no_image_at_all_raises(two_class_tree):
    with pytest.raises(
        xl.DatasetError,
        match=re.escape(
            f"the validation subset of {two_class_tree!r} is empty: validation_split=0.1 of classes with [1, 5] "
            "images leaves it no image. Use a different validation_split or more images."
        ),
    ):
        xl.ImageFolder(two_class_tree, image_size=None, validation_split=0.1, subset="validation")


@pytest.fixture
def two_class_tree(tmp_path) -> str:
    """cats: a.png .. e.png (5 images); dogs: f.png (1 image)."""
    for name in "abcde":
        write_image(tmp_path / "t" / "cats" / f"{name}.png", noise((2, 3), 0))
    write_image(tmp_path / "t" / "dogs" / "f.png", noise((2, 3), 0))
    return str(tmp_path / "t")


# --- bad options: what is wrong, the value, the fix ----------------------------------------------

BAD_OPTIONS = [
    ({"label_mode": "onehot"}, ValueError, "label_mode must be one of 'int' (Keras's 'sparse'), 'categorical', 'binary', 'input' or None; got 'onehot'."),
    ({"color_mode": "bgr"}, ValueError, "color_mode must be one of 'rgb', 'rgba', 'grayscale'; got 'bgr'."),
    ({"interpolation": "cubic"}, ValueError, "interpolation must be one of 'nearest', 'bilinear', 'bicubic', 'area', 'lanczos'; got 'cubic'."),
    ({"interpolation": "box"}, ValueError, "interpolation='box' is a Pillow filter that OpenCV, which xloader resizes with, does not have. Use one of 'nearest', 'bilinear', 'bicubic', 'area', 'lanczos'; 'area' averages the covered pixels as 'box' does when shrinking."),
    ({"interpolation": "hamming"}, ValueError, "interpolation='hamming' is a Pillow filter that OpenCV, which xloader resizes with, does not have. Use one of 'nearest', 'bilinear', 'bicubic', 'area', 'lanczos'; 'bilinear' or 'area' are the closest."),
    ({"keep_aspect_ratio": True, "image_size": None}, ValueError, "keep_aspect_ratio=True needs an image_size: it crops each image to that size's aspect ratio."),
    ({"keep_aspect_ratio": "yes"}, TypeError, "keep_aspect_ratio must be True or False, got 'yes'."),
    ({"follow_links": 1}, TypeError, "follow_links must be True or False, got 1."),
    ({"validation_split": 0.2}, ValueError, "validation_split=0.2 needs subset='training' or subset='validation'; for both subsets, use train, val = ImageFolder.split(root, validation_split=..., ...)."),
    ({"subset": "training"}, ValueError, "subset='training' needs a validation_split, e.g. validation_split=0.2. Leave subset out to use every image."),
    ({"validation_split": 0.2, "subset": "both"}, ValueError, "subset='both' gives two datasets, which a constructor cannot return; for both subsets, use train, val = ImageFolder.split(root, validation_split=..., ...)."),
    ({"validation_split": 0.2, "subset": "valid"}, ValueError, "subset must be one of 'training', 'validation'; got 'valid'."),
    ({"validation_split": 1.0, "subset": "training"}, ValueError, "validation_split must be strictly between 0 and 1, got 1.0. It is the fraction of each class's images kept for validation, e.g. 0.2; leave it out (None) to use every image."),
    ({"validation_split": 0, "subset": "training"}, ValueError, "validation_split must be strictly between 0 and 1, got 0."),
    ({"validation_split": -0.2, "subset": "training"}, ValueError, "validation_split must be strictly between 0 and 1, got -0.2."),
    ({"validation_split": "0.2", "subset": "training"}, TypeError, "validation_split must be a number between 0 and 1, got '0.2'."),
    ({"validation_split": True, "subset": "training"}, TypeError, "validation_split must be a number between 0 and 1, got True."),
    ({"validation_split": 0.2, "subset": "training", "split_seed": -1}, ValueError, "split_seed must be a non-negative int, or None for Keras's split; got -1."),
    ({"validation_split": 0.2, "subset": "training", "split_seed": 1.5}, TypeError, "split_seed must be a non-negative int, or None for Keras's split; got 1.5."),
    ({"split_seed": 0}, ValueError, "split_seed=0 has no effect without a validation_split. Pass validation_split=... and subset=..., or leave split_seed out."),
    ({"class_names": []}, ValueError, "class_names must name at least one class."),
]  # fmt: skip


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS, ids=[str(o) for o, _, _ in BAD_OPTIONS])
def test_bad_options_raise_saying_what_and_how_to_fix(two_class_tree, options, error, message):
    with pytest.raises(error, match=re.escape(message)):
        xl.ImageFolder(two_class_tree, **{"image_size": (4, 4), **options})


def test_split_refuses_subset_and_checks_its_fraction(two_class_tree):
    with pytest.raises(
        TypeError,
        match=re.escape("ImageFolder.split returns both subsets, (training, validation); do not pass subset."),
    ):
        xl.ImageFolder.split(two_class_tree, validation_split=0.2, subset="training", image_size=None)
    with pytest.raises(ValueError, match="validation_split must be strictly between 0 and 1, got 1.5"):
        xl.ImageFolder.split(two_class_tree, validation_split=1.5, image_size=None)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_torch_lays_out_an_input_target_like_the_image(tmp_path, num_workers):
    from xloader.torch import DataLoader

    root = tmp_path / "photos"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((16, 20, 3), 40 * i, np.uint8)).save(root / name / f"{i}.png")
    loader = DataLoader(
        xl.ImageFolder(root, image_size=(16, 20), label_mode="input"), batch_size=4, num_workers=num_workers
    )
    x, y = next(iter(loader))
    assert tuple(x.shape) == tuple(y.shape) == (4, 3, 16, 20)
    assert np.array_equal(x.numpy(), y.numpy())
