"""ImageManifest: images listed in a CSV file or a DataFrame, every label kind, every bad input."""

from __future__ import annotations

import csv
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import xloader as xl
from xloader.sources.manifest import ImageManifest

# --- helpers ------------------------------------------------------------------------------------

GREYS = {"a.png": 10, "b.png": 20, "sub/c.png": 30, "d.png": 40}
"""The test images: base/<name> is a 2x3 RGB PNG whose every pixel is (grey, grey + 1, grey + 2)."""


def save_png(path, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def pixel(grey: int, size: tuple[int, int] = (2, 3)) -> np.ndarray:
    return np.broadcast_to(np.array([grey, grey + 1, grey + 2], np.uint8), (*size, 3)).copy()


def write_csv(path, header: list[str], rows: list[list[object]]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture
def base(tmp_path) -> str:
    """A folder holding the images of GREYS."""
    folder = tmp_path / "data"
    for name, grey in GREYS.items():
        save_png(folder / name, pixel(grey))
    return str(folder)


def manifest(base: str, rows: list[list[object]], header=("filename", "class"), name="labels.csv") -> str:
    """A CSV file in `base` (so `base` is its default base_dir)."""
    return write_csv(os.path.join(base, name), list(header), rows)


def whole(source, **options):
    """The one batch holding the whole dataset in index order."""
    return xl.Batches(source, batch_size=len(source), **options).get_batch(0, 0)


def all_batches(source, **options) -> list:
    batches = xl.Batches(source, batch_size=3, shuffle=True, seed=7, **options)
    return [batches.get_batch(epoch, b) for epoch in range(2) for b in range(len(batches))]


def assert_same(got: list, want: list) -> None:
    assert len(got) == len(want)
    for one, other in zip(got, want, strict=True):
        one, other = (one, other) if isinstance(one, tuple) else ((one,), (other,))
        for a, b in zip(one, other, strict=True):
            assert np.asarray(a).dtype == b.dtype
            np.testing.assert_array_equal(np.asarray(a), b)


ROWS = [["sub/c.png", "dog"], ["a.png", "cat"], ["b.png", "cat"], ["d.png", "bird"]]
"""Rows in a non-sorted order: samples follow the rows; classes are sorted (bird, cat, dog)."""


# --- label kinds: exact values, dtypes, shapes --------------------------------------------------


def test_int_labels_follow_the_rows_and_sorted_class_names(base):
    source = ImageManifest(manifest(base, ROWS), image_size=None)
    x, y = whole(source)
    assert x.dtype == np.uint8 and x.shape == (4, 2, 3, 3)
    np.testing.assert_array_equal(x[:, 0, 0], [[30, 31, 32], [10, 11, 12], [20, 21, 22], [40, 41, 42]])
    assert y.dtype == np.int64 and y.shape == (4,)
    np.testing.assert_array_equal(y, [2, 1, 1, 0])
    assert source.class_names == ["bird", "cat", "dog"]
    assert source.class_indices == {"bird": 0, "cat": 1, "dog": 2}
    assert source.filenames == [os.path.join("sub", "c.png"), "a.png", "b.png", "d.png"]
    assert source.filepaths == [os.path.join(base, name) for name in source.filenames]
    np.testing.assert_array_equal(source.labels, [2, 1, 1, 0])
    assert source.base_dir == base and source.manifest_path == os.path.join(base, "labels.csv")
    assert isinstance(source, xl.Source) and source.has_targets and source.x_is_image
    assert source.describe(0) == os.path.join(base, "sub", "c.png")


def test_sparse_is_keras_word_for_int(base):
    path = manifest(base, ROWS)
    sparse = ImageManifest(path, image_size=None, label_mode="sparse")
    assert sparse.label_mode == "int"
    assert_same([whole(sparse)], [whole(ImageManifest(path, image_size=None))])


def test_categorical_labels_are_float32_one_hot(base):
    _, y = whole(ImageManifest(manifest(base, ROWS), image_size=None, label_mode="categorical"))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[0, 0, 1], [0, 1, 0], [0, 1, 0], [1, 0, 0]])


def test_binary_labels_are_float32_and_need_two_classes(base):
    rows = [["a.png", "pos"], ["b.png", "neg"], ["d.png", "pos"]]
    _, y = whole(ImageManifest(manifest(base, rows), image_size=None, label_mode="binary"))
    assert y.dtype == np.float32 and y.shape == (3,)
    np.testing.assert_array_equal(y, [1.0, 0.0, 1.0])
    with pytest.raises(xl.DatasetError, match=r"label_mode='binary' needs exactly 2 classes, but .*labels\.csv has 3"):
        ImageManifest(manifest(base, ROWS), image_size=None, label_mode="binary")


def test_class_names_fix_the_order_and_a_class_may_have_no_rows(base):
    path = manifest(base, ROWS)
    source = ImageManifest(path, image_size=None, class_names=["dog", "cat", "bird", "fish"])
    np.testing.assert_array_equal(whole(source)[1], [0, 1, 1, 2])
    _, y = whole(
        ImageManifest(path, image_size=None, class_names=("dog", "cat", "bird", "fish"), label_mode="categorical")
    )
    assert y.shape == (4, 4)
    np.testing.assert_array_equal(y[:, 3], 0.0)


def test_multi_hot_from_a_delimited_csv_cell(base):
    rows = [["a.png", "cat|dog"], ["b.png", ""], ["sub/c.png", "dog"], ["d.png", "bird|cat|dog"]]
    source = ImageManifest(
        manifest(base, rows, ("filename", "tags")), image_size=None, y_col="tags", label_mode="multi_hot"
    )
    _, y = whole(source)
    assert y.dtype == np.float32 and y.shape == (4, 3)
    np.testing.assert_array_equal(y, [[0, 1, 1], [0, 0, 0], [0, 0, 1], [1, 1, 1]])
    assert source.class_names == ["bird", "cat", "dog"]
    assert source.labels == [[1, 2], [], [2], [0, 1, 2]]


def test_multi_hot_delimiter_and_class_names(base):
    rows = [["a.png", "cat;dog"], ["b.png", "dog"]]
    source = ImageManifest(
        manifest(base, rows),
        image_size=None,
        label_mode="multi_hot",
        label_delimiter=";",
        class_names=["dog", "cat", "bird"],
    )
    np.testing.assert_array_equal(whole(source)[1], [[1, 1, 0], [1, 0, 0]])


def test_multi_hot_from_dataframe_lists_tuples_and_empty_cells(base):
    frame = pd.DataFrame(
        {"filename": ["a.png", "b.png", "sub/c.png", "d.png"], "class": [["cat", "dog"], (), ("dog",), None]}
    )
    _, y = whole(ImageManifest(frame, base_dir=base, image_size=None, label_mode="multi_hot"))
    np.testing.assert_array_equal(y, [[1, 1], [0, 0], [0, 1], [0, 0]])


def test_regression_one_column_is_a_scalar_and_a_list_of_columns_a_vector(base):
    rows = [["a.png", "1.5", "-2", "x"], ["b.png", "0.25", "7", "y"], ["d.png", "3e2", "1e-3", "z"]]
    path = manifest(base, rows, ("filename", "age", "score", "note"))
    source = ImageManifest(path, image_size=None, y_col="age", label_mode="regression")
    _, y = whole(source)
    assert y.dtype == np.float32 and y.shape == (3,)
    np.testing.assert_array_equal(y, np.array([1.5, 0.25, 300.0], np.float32))
    assert source.class_names == [] and source.labels.dtype == np.float32
    _, y = whole(ImageManifest(path, image_size=None, y_col=["age", "score"], label_mode="regression"))
    assert y.dtype == np.float32 and y.shape == (3, 2)
    np.testing.assert_array_equal(y, np.array([[1.5, -2], [0.25, 7], [300, 1e-3]], np.float32))
    _, y = whole(ImageManifest(path, image_size=None, y_col=["score"], label_mode="regression"))
    assert y.shape == (3, 1)


def test_no_labels_gives_x_only_and_needs_no_label_column(base):
    path = manifest(base, [["a.png"], ["b.png"]], ("filename",))
    source = ImageManifest(path, image_size=None, label_mode=None)
    assert not source.has_targets and source.labels is None
    x = whole(source)
    assert isinstance(x, np.ndarray) and x.shape == (2, 2, 3, 3)


def test_image_options_resize_grayscale_and_interpolation(base):
    pattern = np.arange(18, dtype=np.uint8).reshape(2, 3, 3) * 7
    save_png(os.path.join(base, "pattern.png"), pattern)
    path = manifest(base, [["pattern.png", "a"]])
    x, _ = whole(ImageManifest(path, image_size=(4, 6), interpolation="nearest"))
    np.testing.assert_array_equal(x[0], pattern.repeat(2, axis=0).repeat(2, axis=1))
    x, _ = whole(ImageManifest(path, image_size=None, color_mode="grayscale"))
    assert x.shape == (1, 2, 3, 1)


def test_input_mode_returns_the_transformed_image_as_target(base):
    import albumentations as A

    path = manifest(base, [["a.png"], ["sub/c.png"]], ("filename",))
    source = ImageManifest(path, image_size=None, label_mode="input", transform=A.Compose([A.InvertImg(p=1.0)]))
    x, y = whole(source)
    assert y.dtype == np.uint8 and y.shape == x.shape and source.class_names == []
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(x[:, 0, 0], [[245, 244, 243], [225, 224, 223]])


def test_keep_aspect_ratio_crops_the_centre_before_resizing(base):
    wide = np.zeros((2, 6, 3), np.uint8)
    wide[:, 2:4] = 200  # the centre 2x2 square
    save_png(os.path.join(base, "wide.png"), wide)
    path = manifest(base, [["wide.png", "a"]])
    x, _ = whole(ImageManifest(path, image_size=(2, 2), keep_aspect_ratio=True, interpolation="nearest"))
    np.testing.assert_array_equal(x[0], np.full((2, 2, 3), 200, np.uint8))
    with pytest.raises(ValueError, match=r"keep_aspect_ratio=True needs an image_size"):
        ImageManifest(path, image_size=None, keep_aspect_ratio=True)


# --- CSV and DataFrame, paths and base_dir ------------------------------------------------------

LABEL_KINDS = [
    {"label_mode": "int"},
    {"label_mode": "categorical"},
    {"label_mode": "binary", "y_col": "pair"},
    {"label_mode": "multi_hot", "y_col": "tags"},
    {"label_mode": "regression", "y_col": "age"},
    {"label_mode": "regression", "y_col": ["age", "score"]},
    {"label_mode": "input"},
    {"label_mode": None},
]


@pytest.mark.parametrize("options", LABEL_KINDS, ids=lambda o: f"{o['label_mode']}-{o.get('y_col', '')}")
def test_csv_and_dataframe_give_the_same_batches(base, options):
    header = ["filename", "class", "pair", "tags", "age", "score"]
    rows = [
        ["a.png", "cat", "no", "cat|dog", "1.5", "3"],
        ["b.png", "dog", "yes", "", "2.25", "-1"],
        ["sub/c.png", "cat", "no", "dog", "0.125", "8"],
        ["d.png", "bird", "yes", "bird", "40", "0"],
    ]
    path = write_csv(os.path.join(base, "all.csv"), header, rows)
    want = all_batches(ImageManifest(path, image_size=None, **options))
    read = pd.read_csv(path)  # "age" float64, "score" int64, an empty "tags" cell NaN
    assert_same(all_batches(ImageManifest(read, base_dir=base, image_size=None, **options)), want)
    built = pd.DataFrame(
        {
            "filename": [row[0] for row in rows],
            "class": [row[1] for row in rows],
            "pair": [row[2] for row in rows],
            "tags": [["cat", "dog"], [], ("dog",), ["bird"]],
            "age": [1.5, 2.25, 0.125, 40.0],
            "score": [3, -1, 8, 0],
        },
        index=["r0", "r1", "r2", "r3"],
    )
    assert_same(all_batches(ImageManifest(built, base_dir=base, image_size=None, **options)), want)


def test_dataframe_int_labels_are_class_names_as_a_csv_writes_them(base):
    rows = [["a.png", 3], ["b.png", 1], ["d.png", 3]]
    from_csv = ImageManifest(manifest(base, rows), image_size=None)
    frame = pd.DataFrame(rows, columns=["filename", "class"])
    from_frame = ImageManifest(frame, base_dir=base, image_size=None)
    assert from_frame.class_names == from_csv.class_names == ["1", "3"]
    assert_same([whole(from_frame)], [whole(from_csv)])


def test_base_dir_defaults_to_the_csv_folder_and_can_be_given(base, tmp_path):
    beside = ImageManifest(manifest(base, ROWS), image_size=None)
    (tmp_path / "lists").mkdir()
    elsewhere = write_csv(tmp_path / "lists" / "labels.csv", ["filename", "class"], ROWS)
    given = ImageManifest(elsewhere, base_dir=base, image_size=None)
    assert given.base_dir == base
    assert_same([whole(given)], [whole(beside)])
    relative = os.path.relpath(base)
    assert ImageManifest(elsewhere, base_dir=relative, image_size=None).base_dir == base


def test_paths_are_normalised_and_absolute_paths_inside_base_dir_are_accepted(base):
    rows = [["./a.png", "x"], [os.path.join(base, "sub", "c.png"), "x"], ["sub/../b.png", "x"]]
    source = ImageManifest(manifest(base, rows), image_size=None)
    assert source.filenames == ["a.png", os.path.join("sub", "c.png"), "b.png"]
    np.testing.assert_array_equal(whole(source)[0][:, 0, 0, 0], [10, 30, 20])


class MinimalTable:
    """Not pandas: just `columns` and `table[column]`, no index."""

    def __init__(self, data: dict[str, list]):
        self.data = data
        self.columns = list(data)

    def __getitem__(self, column: str) -> tuple:
        return tuple(self.data[column])


def test_any_table_with_columns_is_accepted_and_rows_are_named_by_position(base):
    table = MinimalTable({"filename": ["a.png", "b.png", "a.png"], "class": ["x", "y", "z"]})
    with pytest.raises(xl.DatasetError, match=r"the DataFrame lists .*'a\.png' on index 0 and index 2"):
        ImageManifest(table, base_dir=base, image_size=None)
    table = MinimalTable({"filename": ["a.png", "b.png"], "class": ["x", "y"]})
    np.testing.assert_array_equal(whole(ImageManifest(table, base_dir=base, image_size=None))[1], [0, 1])


def test_a_dataframe_needs_base_dir(base):
    frame = pd.DataFrame({"filename": ["a.png"], "class": ["x"]})
    with pytest.raises(TypeError, match=r"base_dir is required with a DataFrame.*base_dir='\.'"):
        ImageManifest(frame, image_size=None)


def test_the_module_does_not_import_pandas():
    code = "import sys, xloader.sources.manifest; print(__import__('json').dumps('pandas' in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) is False


# --- bad input: each error names the file (or the DataFrame) and the row ------------------------


def test_missing_columns_are_listed_with_the_columns_found(base):
    path = manifest(base, [["a.png", "x"]], ("path", "label"))
    found = r"\(columns found: 'path', 'label'\)"
    with pytest.raises(xl.DatasetError, match=rf"labels\.csv has no column 'filename' {found}\. Pass x_col="):
        ImageManifest(path, image_size=None)
    with pytest.raises(xl.DatasetError, match=rf"labels\.csv has no column 'class' {found}\. Pass y_col="):
        ImageManifest(path, image_size=None, x_col="path")
    with pytest.raises(xl.DatasetError, match=r"the DataFrame has no column 'age' \(columns found: 'path', 'label'\)"):
        frame = pd.DataFrame({"path": ["a.png"], "label": ["x"]})
        ImageManifest(frame, base_dir=base, image_size=None, x_col="path", y_col=["age"], label_mode="regression")
    assert ImageManifest(path, image_size=None, x_col="path", y_col="label").class_names == ["x"]


def test_a_column_named_twice_in_the_header_is_refused(base):
    path = manifest(base, [["a.png", "x", "y"]], ("filename", "class", "class"))
    with pytest.raises(xl.DatasetError, match=r"labels\.csv has 2 columns named 'class'"):
        ImageManifest(path, image_size=None)


def test_an_image_listed_twice_names_both_rows(base):
    path = manifest(base, [["a.png", "cat"], ["b.png", "dog"], ["./a.png", "dog"]])
    with pytest.raises(
        xl.DatasetError,
        match=r"labels\.csv lists the same image on several rows: 'a\.png' on line 2 and line 4\. .*multi_hot",
    ):
        ImageManifest(path, image_size=None)
    frame = pd.DataFrame(
        {"filename": ["a.png", "b.png", "b.png", "b.png"], "class": list("wxyz")}, index=[10, 11, 12, 13]
    )
    with pytest.raises(xl.DatasetError, match=r"the DataFrame lists .*'b\.png' on index 11, index 12 and index 13"):
        ImageManifest(frame, base_dir=base, image_size=None)


def test_empty_paths_name_the_row(base):
    with pytest.raises(xl.DatasetError, match=r"labels\.csv: empty path \(1 row\): line 3\. .*column 'filename'"):
        ImageManifest(manifest(base, [["a.png", "x"], ["", "x"]]), image_size=None)
    frame = pd.read_csv(manifest(base, [["a.png", "x"], ["", "x"]], name="blank.csv"))  # the empty cell is NaN
    with pytest.raises(xl.DatasetError, match=r"the DataFrame: empty path \(1 row\): index 1\."):
        ImageManifest(frame, base_dir=base, image_size=None)
    frame = pd.DataFrame({"filename": ["a.png", 5], "class": ["x", "x"]})
    with pytest.raises(xl.DatasetError, match=r"a path that is not text \(1 row\): index 1: 5\."):
        ImageManifest(frame, base_dir=base, image_size=None)


def test_missing_and_unknown_labels_name_the_row(base):
    with pytest.raises(xl.DatasetError, match=r"labels\.csv: no label in column 'class' \(1 row\): line 3\."):
        ImageManifest(manifest(base, [["a.png", "cat"], ["b.png", ""]]), image_size=None)
    rows = [["a.png", "cat"], ["b.png", "cow"], ["d.png", "pig"]]
    with pytest.raises(
        xl.DatasetError,
        match=r"labels\.csv: a label not in class_names \(2 rows\): line 3: 'cow', line 4: 'pig'\. Add it to class_names",
    ):
        ImageManifest(manifest(base, rows), image_size=None, class_names=["cat", "dog"])
    rows = [["a.png", "cat|cow"]]
    with pytest.raises(xl.DatasetError, match=r"a label not in class_names \(1 row\): line 2: 'cow'"):
        ImageManifest(manifest(base, rows), image_size=None, class_names=["cat"], label_mode="multi_hot")


def test_labels_that_are_not_class_names_name_the_row(base):
    frame = pd.DataFrame({"filename": ["a.png", "b.png"], "class": ["cat", ["cat", "dog"]]})
    with pytest.raises(xl.DatasetError, match=r"not a class name \(1 row\): index 1: \['cat', 'dog'\]\. .*multi_hot"):
        ImageManifest(frame, base_dir=base, image_size=None)
    frame = pd.DataFrame({"filename": ["a.png", "b.png"], "class": [1.5, 2.5]})
    with pytest.raises(xl.DatasetError, match=r"not a class name \(2 rows\): index 0: 1\.5, index 1: 2\.5"):
        ImageManifest(frame, base_dir=base, image_size=None)
    with pytest.raises(
        xl.DatasetError, match=r"labels\.csv: an empty class name between '\|' delimiters .*line 2: 'cat\|\|dog'"
    ):
        ImageManifest(manifest(base, [["a.png", "cat||dog"]]), image_size=None, label_mode="multi_hot")


@pytest.mark.parametrize("value", ["old", "", "nan", "inf", "1e39"])
def test_regression_values_must_be_finite_numbers(base, value):
    path = manifest(base, [["a.png", "1"], ["b.png", value]], ("filename", "age"))
    with pytest.raises(
        xl.DatasetError, match=rf"labels\.csv: a value that is not a finite number \(1 row\): line 3: age='{value}'\."
    ):
        ImageManifest(path, image_size=None, y_col="age", label_mode="regression")


def test_paths_outside_base_dir_are_refused(base, tmp_path):
    save_png(tmp_path / "outside.png", pixel(99))
    outside = str(tmp_path / "outside.png")
    for path in ["../outside.png", outside, "sub/../../outside.png"]:
        with pytest.raises(
            xl.DatasetError,
            match=rf"labels\.csv: a path outside base_dir '.*data' \(1 row\): line 3: '{re.escape(path)}'",
        ):
            ImageManifest(manifest(base, [["a.png", "x"], [path, "x"]]), image_size=None)
    # base_dir decides what is inside: the same rows are fine with the parent folder as base_dir.
    source = ImageManifest(
        manifest(base, [["data/a.png", "x"], [outside, "x"]]), base_dir=str(tmp_path), image_size=None
    )
    assert source.filenames == [os.path.join("data", "a.png"), "outside.png"]


def test_symbolic_links_out_of_base_dir_are_refused_unless_followed(base, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    save_png(elsewhere / "e.png", pixel(50))
    os.symlink(elsewhere, os.path.join(base, "linked"))
    os.symlink(os.path.join(base, "a.png"), os.path.join(base, "inner.png"))  # stays inside: fine
    path = manifest(base, [["inner.png", "x"], ["linked/e.png", "x"]])
    with pytest.raises(
        xl.DatasetError,
        match=r"labels\.csv: a path outside base_dir .* symbolic link \(1 row\): line 3: 'linked/e\.png' leads to '.*elsewhere/e\.png'.*follow_links=True",
    ):
        ImageManifest(path, image_size=None)
    source = ImageManifest(path, image_size=None, follow_links=True)
    np.testing.assert_array_equal(whole(source)[0][:, 0, 0, 0], [10, 50])


def test_an_empty_manifest_is_refused(base, tmp_path):
    with pytest.raises(xl.DatasetError, match=r"labels\.csv has no rows \(only a header line\)"):
        ImageManifest(manifest(base, []), image_size=None)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(xl.DatasetError, match=r"empty\.csv is empty\. A manifest starts with a header line"):
        ImageManifest(str(empty), image_size=None)
    with pytest.raises(xl.DatasetError, match=r"the DataFrame has no rows\. Add one row per image"):
        ImageManifest(pd.DataFrame({"filename": [], "class": []}), base_dir=base, image_size=None)


def test_missing_files_are_listed_by_row(base):
    path = manifest(base, [["a.png", "x"], ["gone.png", "x"], ["sub", "x"], ["b.png", "y"], ["lost/z.png", "y"]])
    with pytest.raises(
        xl.DatasetError,
        match=r"labels\.csv: 3 listed images not found under base_dir '.*data': line 3: 'gone\.png', "
        r"line 4: 'sub' \(a directory, not a file\), line 6: 'lost/z\.png'\. Paths are relative to base_dir "
        r"\(by default the CSV file's folder\)\. .*missing_files='skip'",
    ):
        ImageManifest(path, image_size=None)


def test_missing_files_skip_warns_lists_them_and_keeps_class_indices(base):
    path = manifest(base, [["gone.png", "ant"], ["a.png", "cat"], ["b.png", "dog"]])
    with pytest.warns(UserWarning, match=r"1 listed image not found .*line 2: 'gone\.png'.* left out"):
        source = ImageManifest(path, image_size=None, missing_files="skip")
    assert source.skipped == [(os.path.join(base, "gone.png"), "not found (line 2)")]
    assert source.class_names == ["ant", "cat", "dog"]  # the skipped row's class keeps its index
    x, y = whole(source)
    np.testing.assert_array_equal(x[:, 0, 0, 0], [10, 20])
    np.testing.assert_array_equal(y, [1, 2])


def test_malformed_csv_is_refused_by_line(base, tmp_path):
    with pytest.raises(xl.DatasetError, match=r"labels\.csv line 3 has 3 fields but the header has 2"):
        ImageManifest(manifest(base, [["a.png", "x"], ["b.png", "x", "extra"]]), image_size=None)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("filename,class\na.png,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(xl.DatasetError, match=r"latin\.csv is not UTF-8 text"):
        ImageManifest(str(latin), image_size=None)


def test_a_quoted_multi_line_field_is_named_by_its_first_line(base):
    path = os.path.join(base, "labels.csv")
    with open(path, "w", encoding="utf-8") as file:
        file.write('filename,class\na.png,"two\nlines"\n\nb.png,\n')
    with pytest.raises(xl.DatasetError, match=r"no label in column 'class' \(1 row\): line 5\."):
        ImageManifest(path, image_size=None)


def test_wrong_arguments(base):
    path = manifest(base, ROWS)
    with pytest.raises(ValueError, match=r"label_mode='raw' is a Keras class_mode; use label_mode='regression'"):
        ImageManifest(path, image_size=None, label_mode="raw")
    with pytest.raises(ValueError, match=r"label_mode must be one of .*'multi_hot'.*got 'onehot'"):
        ImageManifest(path, image_size=None, label_mode="onehot")
    with pytest.raises(TypeError, match=r"y_col must be one column name for label_mode='int'.*'regression'"):
        ImageManifest(path, image_size=None, y_col=["class"])
    with pytest.raises(ValueError, match=r"class_names is only used with class labels"):
        ImageManifest(path, image_size=None, y_col="class", label_mode="regression", class_names=["a"])
    with pytest.raises(ValueError, match=r"x_col and y_col both name the column 'filename'"):
        ImageManifest(path, image_size=None, y_col="filename")
    with pytest.raises(TypeError, match=r"class_names must be a list of names, got 'cat'\."):
        ImageManifest(path, image_size=None, class_names="cat")
    with pytest.raises(ValueError, match=r"class_names lists 'cat' more than once\."):
        ImageManifest(path, image_size=None, class_names=["cat", "cat"])
    with pytest.raises(TypeError, match=r"manifest must be the path of a CSV file or a pandas DataFrame, got list"):
        ImageManifest([["a.png", "x"]], image_size=None)
    with pytest.raises(FileNotFoundError, match=r"manifest '.*nope\.csv' does not exist"):
        ImageManifest(os.path.join(base, "nope.csv"), image_size=None)
    with pytest.raises(FileNotFoundError, match=r"base_dir '.*nowhere' does not exist"):
        ImageManifest(path, base_dir=os.path.join(base, "nowhere"), image_size=None)
    with pytest.raises(ValueError, match=r"interpolation='box' is a Pillow filter"):
        ImageManifest(path, image_size=(4, 4), interpolation="box")
    with pytest.raises(ValueError, match=r"missing_files must be one of 'raise', 'skip'"):
        ImageManifest(path, image_size=None, missing_files="drop")


def test_numeric_class_names_sorted_as_text_are_warned_about(base):
    rows = [["a.png", "2"], ["b.png", "10"], ["d.png", "1"]]
    with pytest.warns(UserWarning, match=r"class names are numbers but are sorted as text.*'1', '10', '2'"):
        source = ImageManifest(manifest(base, rows), image_size=None)
    assert source.class_names == ["1", "10", "2"]


def test_a_file_that_is_not_an_image_fails_at_load_by_name(base):
    with open(os.path.join(base, "notes.png"), "w") as file:
        file.write("not an image")
    source = ImageManifest(manifest(base, [["a.png", "x"], ["notes.png", "x"]]), image_size=None)
    with pytest.raises(xl.BadImageError, match=r"notes\.png") as caught:
        whole(source)
    assert caught.value.path == os.path.join(base, "notes.png")


# --- determinism: pickling, torch and Keras adapters --------------------------------------------


def augmented_source(base: str, **options) -> ImageManifest:
    import albumentations as A

    rng = np.random.default_rng(0)
    rows = []
    for i in range(11):
        height, width = 6 + i % 3, 9 + i % 4
        save_png(os.path.join(base, "aug", f"{i:02d}.png"), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        rows.append([f"aug/{i:02d}.png", f"c{i % 3}", "a|b" if i % 2 else "b"])
    path = manifest(base, rows, ("filename", "class", "tags"), name="aug.csv")
    transform = A.Compose([A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(p=1.0)])
    return ImageManifest(path, image_size=(8, 8), transform=transform, **options)


def test_pickled_source_gives_the_same_batches(base):
    for options in ({"label_mode": "categorical"}, {"label_mode": "multi_hot", "y_col": "tags"}):
        source = augmented_source(base, **options)
        assert_same(all_batches(pickle.loads(pickle.dumps(source))), all_batches(source))


def expected_batches(source, epochs: int = 2) -> list:
    batches = xl.Batches(source, batch_size=4, shuffle=True, seed=3)
    return [batches.get_batch(epoch, b) for epoch in range(epochs) for b in range(len(batches))]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_torch_dataloader_batches_are_bit_identical(base, num_workers):
    from xloader.torch import DataLoader

    source = augmented_source(base, label_mode="multi_hot", y_col="tags")
    loader = DataLoader(source, batch_size=4, shuffle=True, seed=3, layout="NHWC", num_workers=num_workers)
    got = [(x.numpy(), y.numpy()) for _ in range(2) for x, y in loader]
    assert_same(got, expected_batches(source))


def test_keras_pydataset_batches_are_bit_identical(base):
    from xloader.keras import PyDataset

    source = augmented_source(base)
    with PyDataset(source, batch_size=4, shuffle=True, seed=3, workers=2) as dataset:
        got = [(np.asarray(x), np.asarray(y)) for _ in range(2) for x, y in dataset]
    assert_same(got, expected_batches(source))
