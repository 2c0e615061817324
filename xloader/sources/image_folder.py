"""`ImageFolder`: classification from `root/<class>/**/<image>` (Keras's flow_from_directory job)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

from xloader._strings import StringTable
from xloader.decoding import COLOR_MODES, INTERPOLATIONS, ColorMode, read_image, resize_image
from xloader.errors import DatasetError
from xloader.sources._base import (
    TransformedSource,
    check_choice,
    check_directory,
    check_image_size,
    list_preview,
)
from xloader.sources._walk import IMAGE_EXTENSIONS, list_image_files

__all__ = ["ImageFolder"]

LABEL_MODES = ("int", "categorical", "binary", None)


class ImageFolder(TransformedSource):
    """Images in one sub-folder per class: `root/cats/**/*.jpg`, `root/dogs/**/*.jpg`.

    Each sample is `x`: uint8 (H, W, C) image resized to `image_size`, then passed through
    `transform(image=x)` (whose output dtype wins, e.g. float32 after `A.Normalize`), and `y`:
    the label in the form `label_mode` asks for:

    - `"int"`: int64 class index (default; for `sparse_categorical_crossentropy`, `nn.CrossEntropyLoss`);
    - `"categorical"`: float32 one-hot, shape (num_classes,);
    - `"binary"`: float32 0.0 / 1.0 (exactly two classes);
    - `None`: no labels (batches are `x` only).

    Classes are the sorted sub-folder names (hidden ones, starting with ".", are skipped), or
    `class_names` in the order given, so a validation folder can share the training indices.
    Files are found recursively, in the order of Keras's `flow_from_directory`; extensions
    png, jpg, jpeg, bmp, ppm, tif, tiff, case-insensitive. Images directly in `root` are ignored
    with a warning.

    Args:
        root: the folder holding the class folders.
        image_size: (height, width) every image is resized to, or None to keep file sizes
            (then every image, after `transform`, must have the same size to be batched).
        transform: an albumentations `Compose` (or any `xloader.transforms.Transform`).
        class_names: the classes to use, in index order; each must be a folder in `root`.
        color_mode: "rgb" (3 channels), "rgba" (4) or "grayscale" (1).
        label_mode: "int", "categorical", "binary" or None, as above.
        interpolation: resize filter: nearest, bilinear (default), bicubic, area, lanczos.
        follow_links: follow symbolic links to folders while searching.
        allow_empty_classes: keep a class folder with no images (with a warning) instead of
            raising, so class indices stay the same as in a split where it is not empty.

    Raises:
        FileNotFoundError: `root` does not exist.
        DatasetError: `root` has no class folders or no images, a class folder has no images,
            or a `class_names` entry has no folder.

    Example:
        >>> train = ImageFolder("data/train", image_size=(224, 224))  # doctest: +SKIP
        >>> train.class_names, len(train)  # doctest: +SKIP
        (['cats', 'dogs'], 2000)
    """

    x_is_image = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        image_size: tuple[int, int] | None,
        transform: object = None,
        class_names: Sequence[str] | None = None,
        color_mode: ColorMode = "rgb",
        label_mode: str | None = "int",
        interpolation: str = "bilinear",
        follow_links: bool = False,
        allow_empty_classes: bool = False,
    ):
        super().__init__(transform)
        self.root = check_directory(root, "ImageFolder root")
        self.image_size = check_image_size(image_size)
        check_choice("color_mode", color_mode, COLOR_MODES)
        check_choice("label_mode", label_mode, LABEL_MODES)
        check_choice("interpolation", interpolation, tuple(INTERPOLATIONS))
        self.color_mode = color_mode
        self.label_mode = label_mode
        self.interpolation = interpolation
        self.follow_links = follow_links

        self.class_names = self._find_classes(class_names)
        self.class_indices = {name: index for index, name in enumerate(self.class_names)}
        if label_mode == "binary" and len(self.class_names) != 2:
            raise DatasetError(
                f"label_mode='binary' needs exactly 2 classes, but {self.root!r} has "
                f"{len(self.class_names)}: {self.class_names}. Use label_mode='int' or 'categorical'."
            )
        self.has_targets = label_mode is not None

        files, labels = self._index(allow_empty_classes)
        self._files = StringTable(files)
        self._labels = np.asarray(labels, dtype=np.int64)

    def _find_classes(self, class_names: Sequence[str] | None) -> list[str]:
        with os.scandir(self.root) as entries:
            folders = sorted(
                entry.name for entry in entries if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=True)
            )
        if class_names is None:
            if not folders:
                raise DatasetError(
                    f"ImageFolder root {self.root!r} has no class folders. "
                    f"Put each class's images in its own sub-folder, e.g. {self.root}/cats/001.jpg."
                )
            return folders
        if isinstance(class_names, str):
            raise TypeError(f"class_names must be a list of folder names, got the string {class_names!r}.")
        names = [str(name) for name in class_names]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"class_names lists {duplicates} more than once.")
        missing = [name for name in names if not os.path.isdir(os.path.join(self.root, name))]
        if missing:
            raise DatasetError(
                f"class_names {missing} have no folder in {self.root!r} (found: {folders}). "
                "Fix the names or create the folders."
            )
        return names

    def _index(self, allow_empty_classes: bool) -> tuple[list[str], list[int]]:
        with os.scandir(self.root) as entries:
            loose = [
                entry.name
                for entry in entries
                if entry.is_file() and os.path.splitext(entry.name)[1][1:].lower() in IMAGE_EXTENSIONS
            ]
        if loose:
            warnings.warn(
                f"{len(loose)} image files directly in {self.root!r} are not in a class folder and are "
                f"ignored: {list_preview(sorted(loose), 5)}.",
                stacklevel=3,
            )
        files: list[str] = []
        labels: list[int] = []
        empty: list[str] = []
        for label, name in enumerate(self.class_names):
            found = list_image_files(os.path.join(self.root, name), follow_links=self.follow_links)
            if not found:
                empty.append(name)
            files.extend(os.path.join(name, path) for path in found)
            labels.extend([label] * len(found))
        if empty and not files:
            raise DatasetError(
                f"ImageFolder root {self.root!r} has no images (extensions: "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}) in its class folders {self.class_names}."
            )
        if empty:
            message = (
                f"class folders with no images in {self.root!r}: {[os.path.join(self.root, name) for name in empty]}."
            )
            if not allow_empty_classes:
                raise DatasetError(
                    f"{message} Add images, leave the class out with class_names=..., or pass "
                    "allow_empty_classes=True to keep it (its index stays reserved)."
                )
            warnings.warn(f"{message} They are kept as classes with no samples.", stacklevel=3)
        return files, labels

    def __len__(self) -> int:
        return len(self._files)

    def __repr__(self) -> str:
        return (
            f"ImageFolder({self.root!r}, {len(self)} images, {len(self.class_names)} classes, "
            f"image_size={self.image_size}, label_mode={self.label_mode!r})"
        )

    @property
    def filenames(self) -> list[str]:
        """Paths relative to `root`, in index order (as Keras's `DirectoryIterator.filenames`)."""
        return self._files.tolist()

    @property
    def filepaths(self) -> list[str]:
        """Paths joined with `root`, in index order."""
        return [os.path.join(self.root, name) for name in self._files]

    @property
    def labels(self) -> np.ndarray:
        """Class index of every sample, int64, in index order (Keras's `DirectoryIterator.classes`)."""
        return self._labels.copy()

    def describe(self, index: int) -> str:
        return os.path.join(self.root, self._files[index])

    def _target(self, index: int) -> np.ndarray:
        label = self._labels[index]
        if self.label_mode == "int":
            return np.asarray(label, dtype=np.int64)
        if self.label_mode == "binary":
            return np.asarray(label, dtype=np.float32)
        one_hot = np.zeros(len(self.class_names), dtype=np.float32)
        one_hot[label] = 1.0
        return one_hot

    def load(self, index: int, *, seed: int, epoch: int, with_targets: bool) -> tuple[np.ndarray, np.ndarray | None]:
        image = read_image(self.describe(index), self.color_mode)
        image = resize_image(image, self.image_size, self.interpolation)
        image = self._transform({"image": image}, seed=seed, epoch=epoch, index=index)["image"]
        target = self._target(index) if with_targets and self.has_targets else None
        return image, target
