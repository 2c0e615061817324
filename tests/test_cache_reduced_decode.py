"""Reduced-size JPEG decode (`downscale_on_decode=True`): which scale, how close, same in both adapters."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

import xloader as xl
from xloader._decoder import ImageDecoder
from xloader._reduced_decode import DownscaleTarget, reduction
from xloader.synthetic import make_image_folder

SIZE = (64, 64)


@pytest.fixture(scope="module")
def large_root(tmp_path_factory) -> str:
    """2 classes x 4 JPEG views of scikit-image photos, long side 560-800 px."""
    return make_image_folder(
        tmp_path_factory.mktemp("large"), images_per_class=4, classes=("astronaut", "coffee"), long_side=(560, 800)
    )


@pytest.mark.parametrize(
    ("height", "width", "size", "keep", "factor"),
    [
        (3000, 4000, (224, 224), False, 8),  # 375 x 500
        (1440, 1920, (224, 224), False, 4),  # 1/8 is 180 x 240: too short
        (1441, 1920, (224, 224), False, 4),
        (1792, 1792, (224, 224), False, 8),  # exactly 224
        (1785, 1785, (224, 224), False, 8),  # 223.1 rounds up to 224, as libjpeg does
        (1784, 1784, (224, 224), False, 4),
        (3000, 4000, (224, 448), True, 8),  # crop of 375 x 500 to 1:2 is 250 x 500
        (3000, 4000, (100, 600), True, 4),  # crop of 375 x 500 to 1:6 is 83 x 500: too short at 1/8
        (300, 300, (224, 224), False, 1),
    ],
)
def test_the_largest_reduction_still_covering_the_target(height, width, size, keep, factor):
    assert reduction(height, width, DownscaleTarget(size, keep)) == factor


def _jpeg(path: str, height: int, width: int) -> str:
    from skimage import data

    cv2.imwrite(path, cv2.resize(data.astronaut()[:, :, ::-1], (width, height), interpolation=cv2.INTER_CUBIC))
    return path


@pytest.mark.parametrize(("color_mode", "channels"), [("rgb", 3), ("grayscale", 1), ("rgba", 4)])
def test_reduced_decode_gives_the_reduced_shape_in_each_colour_mode(tmp_path, color_mode, channels):
    path = _jpeg(str(tmp_path / "a.jpg"), 1001, 755)
    image = ImageDecoder(image_size=(100, 90), color_mode=color_mode, downscale_on_decode=True).unresized(path)
    assert image.shape == (126, 95, channels)  # 1/8 of 1001 x 755, each side rounded up
    assert image.dtype == np.uint8
    full = ImageDecoder(image_size=None, color_mode=color_mode).unresized(path)
    assert full.shape == (1001, 755, channels)
    if color_mode == "rgba":
        assert (image[:, :, 3] == 255).all()
    if color_mode == "rgb":
        np.testing.assert_array_equal(
            image,
            cv2.cvtColor(cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_REDUCED_COLOR_8), cv2.COLOR_BGR2RGB),
        )


def test_png_files_decode_at_full_size(tmp_path):
    path = str(tmp_path / "a.png")
    cv2.imwrite(path, np.arange(800 * 600 * 3, dtype=np.uint8).reshape(800, 600, 3))
    reduced = ImageDecoder(image_size=(64, 64), downscale_on_decode=True).unresized(path)
    np.testing.assert_array_equal(reduced, ImageDecoder(image_size=None).unresized(path))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / error))


def test_reduced_decode_stays_close_to_full_decode_and_area_resize(tmp_path):
    path = _jpeg(str(tmp_path / "a.jpg"), 1800, 2400)
    reduced = ImageDecoder(image_size=(224, 224), downscale_on_decode=True)
    fast = reduced.decode(path)
    exact = ImageDecoder(image_size=(224, 224), interpolation="area").decode(path)
    assert fast.shape == exact.shape == (224, 224, 3)
    assert reduced.unresized(path).shape == (225, 300, 3)  # 1/8
    assert _psnr(fast, exact) >= 30.0


def test_downscale_on_decode_needs_an_image_size(large_root):
    with pytest.raises(
        ValueError,
        match=r"^downscale_on_decode=True needs an image_size: it decodes JPEGs at the smallest scale that still "
        r"covers that size\. Pass image_size=\(height, width\), or leave downscale_on_decode out\.$",
    ):
        xl.ImageFolder(large_root, image_size=None, downscale_on_decode=True)
    with pytest.raises(TypeError, match=r"^downscale_on_decode must be True or False, got 'yes'\.$"):
        xl.ImageFolder(large_root, image_size=SIZE, downscale_on_decode="yes")


def test_keras_and_torch_batches_are_identical_with_reduced_decode(large_root, tmp_path):
    from xloader.keras import PyDataset
    from xloader.torch import DataLoader

    source = xl.ImageFolder(large_root, image_size=SIZE, downscale_on_decode=True)
    full = xl.ImageFolder(large_root, image_size=SIZE)
    want = xl.Batches(source, batch_size=3, shuffle=True, seed=2)
    full_batches = xl.Batches(full, batch_size=3, shuffle=True, seed=2)
    assert not np.array_equal(want.get_batch(0, 0)[0], full_batches.get_batch(0, 0)[0])  # the option acts
    loader = DataLoader(source, batch_size=3, shuffle=True, seed=2, num_workers=2)
    with PyDataset(source, batch_size=3, shuffle=True, seed=2, workers=2, use_multiprocessing=True) as ds:
        keras_batches = [ds[b] for b in range(len(ds))]
    torch_batches = list(loader)
    assert len(keras_batches) == len(torch_batches) == len(want) == 3
    for b in range(len(want)):
        x, y = want.get_batch(0, b)
        np.testing.assert_array_equal(np.asarray(keras_batches[b][0]), x)
        np.testing.assert_array_equal(torch_batches[b][0].numpy(), x.transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(torch_batches[b][1].numpy(), y)
    cached = xl.ImageFolder(large_root, image_size=SIZE, downscale_on_decode=True, cache=tmp_path / "c")
    for index in range(len(source)):
        np.testing.assert_array_equal(
            cached.load(index, seed=0, epoch=0, with_targets=False)[0],
            source.load(index, seed=0, epoch=0, with_targets=False)[0],
        )
    assert len(os.listdir(tmp_path / "c")) == 1
