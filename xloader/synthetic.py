"""Small, realistic datasets written to disk, for the demo, the examples, the tests and the benchmarks.

Images are random crops of real photographs that ship inside scikit-image (no download), saved
as JPEG; without scikit-image, procedural pictures are used instead. Output depends only on the
arguments (same seed, same bytes), so tests and benchmarks are repeatable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

__all__ = ["PHOTO_CLASSES", "make_image_folder", "make_segmentation_folders"]

# Class name -> scikit-image photo the class's crops come from.
PHOTO_CLASSES: dict[str, str] = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket", "astronaut": "astronaut"}


def _photo(name: str, index: int) -> np.ndarray:
    """An RGB uint8 photo: scikit-image's `name`, or a procedural picture if it is not installed."""
    try:
        import skimage.data

        return np.ascontiguousarray(getattr(skimage.data, name)()[:, :, :3])
    except (ImportError, AttributeError):
        height, width = 400, 520
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        rng = np.random.default_rng(index)
        channels = [
            127 + 120 * np.sin(xx / rng.uniform(8, 40) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(8, 40))
            for _ in range(3)
        ]
        return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def _random_view(photo: np.ndarray, rng: np.random.Generator, long_side: tuple[int, int]) -> np.ndarray:
    height, width = photo.shape[:2]
    crop_h = int(height * rng.uniform(0.55, 1.0))
    crop_w = int(width * rng.uniform(0.55, 1.0))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    view = photo[top : top + crop_h, left : left + crop_w]
    if rng.random() < 0.5:
        view = view[:, ::-1]
    target = int(rng.integers(long_side[0], long_side[1] + 1))
    scale = target / max(crop_h, crop_w)
    size = (max(8, round(crop_w * scale)), max(8, round(crop_h * scale)))
    view = cv2.resize(np.ascontiguousarray(view), size, interpolation=cv2.INTER_AREA)
    gain = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    return np.clip(view.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _write_jpeg(path: str, rgb: np.ndarray, quality: int = 90) -> None:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover
        raise RuntimeError(f"could not encode {path}")
    with open(path, "wb") as file:
        file.write(encoded.tobytes())


def make_image_folder(
    root: str | os.PathLike[str],
    *,
    images_per_class: int = 20,
    classes: Sequence[str] = tuple(PHOTO_CLASSES),
    long_side: tuple[int, int] = (96, 160),
    seed: int = 0,
) -> str:
    """Write `root/<class>/<class>.<i>.jpg` for each class (crops of the class's photo); return root.

    Classes must be keys of `PHOTO_CLASSES` (the photo a class's crops come from).
    """
    root = os.fspath(root)
    rng = np.random.default_rng(seed)
    for class_index, name in enumerate(classes):
        if name not in PHOTO_CLASSES:
            raise ValueError(f"unknown class {name!r}; choose from {sorted(PHOTO_CLASSES)}.")
        photo = _photo(PHOTO_CLASSES[name], class_index)
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(images_per_class):
            _write_jpeg(os.path.join(folder, f"{name}.{i}.jpg"), _random_view(photo, rng, long_side))
    return root


def _class_map(rgb: np.ndarray, num_classes: int) -> np.ndarray:
    """Class-index map from the blurred luminance's quantiles: regions a model can learn."""
    luminance = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (0, 0), 3)
    edges = np.quantile(luminance, np.linspace(0, 1, num_classes + 1)[1:-1])
    return np.digitize(luminance, edges).astype(np.uint8)


def make_segmentation_folders(
    root: str | os.PathLike[str],
    *,
    count: int = 24,
    num_classes: int = 3,
    long_side: tuple[int, int] = (96, 160),
    seed: int = 0,
) -> tuple[str, str]:
    """Write `root/images/<i>.jpg` and `root/masks/<i>.png` (palette PNG of class indices).

    Returns (images_dir, masks_dir).
    """
    root = os.fspath(root)
    images_dir, masks_dir = os.path.join(root, "images"), os.path.join(root, "masks")
    os.makedirs(images_dir, exist_ok=True)
    os.makedirs(masks_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [_photo(name, i) for i, name in enumerate(PHOTO_CLASSES.values())]
    palette = [0, 0, 0, 220, 60, 60, 60, 180, 75, 0, 130, 200, 245, 130, 48, 145, 30, 180]
    for i in range(count):
        view = _random_view(photos[i % len(photos)], rng, long_side)
        _write_jpeg(os.path.join(images_dir, f"{i:04d}.jpg"), view)
        mask = Image.fromarray(_class_map(view, num_classes), mode="P")
        mask.putpalette(palette + [0] * (768 - len(palette)))
        mask.save(os.path.join(masks_dir, f"{i:04d}.png"))
    return images_dir, masks_dir
