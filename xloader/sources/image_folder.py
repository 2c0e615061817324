"""`ImageFolder`: classification from `root/<class>/**/<image>` (Keras's flow_from_directory job).

The split follows NOTE [ Validation splits ] (xloader/index/subset.py).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence

import numpy as np

from xloader import storage
from xloader._checks import check_bool, check_choice, check_class_names, check_directory, check_fraction, list_preview
from xloader._strings import StringTable
from xloader._targets import check_binary_classes
from xloader.cache import DecodedCache
from xloader.decoding import DEFAULT_MAX_PIXELS, ColorMode
from xloader.errors import DatasetError
from xloader.index._sample_index import SampleIndex
from xloader.index._walk import IMAGE_EXTENSIONS, list_image_files
from xloader.index.subset import check_split_seed, validation_mask
from xloader.sources._base import ImageSource, TransformedSource, class_target

__all__ = ["ImageFolder"]

LABEL_MODES = ("int", "categorical", "binary", "input", None)
# Keras's class_mode names that mean one of LABEL_MODES.
_LABEL_MODE_ALIASES = {"sparse": "int"}
# Sub-folders that are splits, not classes, when they are all a root holds besides train/ (as xloader inspect reads them).
_SPLIT_FOLDERS = frozenset({"train", "val", "validation", "test"})
SUBSETS = ("training", "validation")


def _check_label_mode(label_mode: object) -> str | None:
    if isinstance(label_mode, str) and label_mode in _LABEL_MODE_ALIASES:
        return _LABEL_MODE_ALIASES[label_mode]
    if label_mode not in LABEL_MODES:
        raise ValueError(
            "label_mode must be one of 'int' (Keras's 'sparse'), 'categorical', 'binary', 'input' or None; "
            f"got {label_mode!r}."
        )
    return None if label_mode is None else str(label_mode)


def _check_fraction(validation_split: object) -> float:
    return check_fraction(
        "validation_split",
        validation_split,
        " It is the fraction of each class's images kept for validation, e.g. 0.2; "
        "leave it out (None) to use every image.",
    )


_BOTH_HINT = "for both subsets, use train, val = ImageFolder.split(root, validation_split=..., ...)"


def _check_split(validation_split: object, subset: object, split_seed: object) -> tuple[float | None, int | None]:
    """Validate the split options together; return (validation_split, split_seed) normalised."""
    if subset == "both":
        raise ValueError(f"subset='both' gives two datasets, which a constructor cannot return; {_BOTH_HINT}.")
    if subset is not None:
        check_choice("subset", subset, SUBSETS)
    if validation_split is None:
        if subset is not None:
            raise ValueError(
                f"subset={subset!r} needs a validation_split, e.g. validation_split=0.2. "
                "Leave subset out to use every image."
            )
        if split_seed is not None:
            raise ValueError(
                f"split_seed={split_seed!r} has no effect without a validation_split. "
                "Pass validation_split=... and subset=..., or leave split_seed out."
            )
        return None, None
    fraction = _check_fraction(validation_split)
    seed = check_split_seed(split_seed, "split_seed")
    if subset is None:
        raise ValueError(
            f"validation_split={validation_split!r} needs subset='training' or subset='validation'; {_BOTH_HINT}."
        )
    return fraction, seed


class ImageFolder(ImageSource):
    """Images in one sub-folder per class: `root/cats/**/*.jpg`, `root/dogs/**/*.jpg`.

    The options of Keras's `ImageDataGenerator.flow_from_directory` with the same meaning, for
    the same tree the same `class_indices`, `filenames` order, labels and batches per epoch
    (docs/migration.md lists the deliberate differences).

    Each sample is `x`: a uint8 (H, W, C) image (C = 3, 4, 1 for `color_mode` rgb, rgba,
    grayscale) resized to `image_size`, then passed through `transform(image=x)` (whose output
    dtype wins, e.g. float32 after `A.Normalize`), and `y`, as `label_mode` asks:

    - `"int"` (Keras's `"sparse"`, accepted as an alias): int64 class index (default; for
      `sparse_categorical_crossentropy`, `nn.CrossEntropyLoss`);
    - `"categorical"`: float32 one-hot, shape (num_classes,);
    - `"binary"`: float32 0.0 / 1.0 (exactly two classes);
    - `"input"`: the transformed image itself, same shape and dtype as `x` (autoencoders);
    - `None`: no labels (batches are `x` only).

    Classes are the sorted sub-folder names (hidden ones, starting with ".", are skipped), or
    `class_names` in the order given, so a validation folder can share the training indices.
    Files are found recursively, in the order of Keras's `flow_from_directory`; extensions
    png, jpg, jpeg, bmp, ppm, tif, tiff, case-insensitive; hidden files skipped. Images directly
    in `root` are ignored with a warning.

    Args:
        root: the folder holding the class folders.
        image_size: (height, width) every image is resized to, or None to keep file sizes
            (then every image, after `transform`, must have the same size to be batched).
        transform: an albumentations `Compose` (or any `xloader.transforms.Transform`).
        class_names: the classes to use, in index order; each must be a folder in `root`.
        color_mode: "rgb" (3 channels), "rgba" (4) or "grayscale" (1).
        label_mode: "int" (or "sparse"), "categorical", "binary", "input" or None, as above.
        interpolation: resize filter: "nearest" (exactly Pillow's, so Keras's), "bilinear"
            (default), "bicubic", "area", "lanczos" (OpenCV's).
        keep_aspect_ratio: crop each image to the aspect ratio of `image_size`, centred, before
            resizing it (Keras's crop, to the pixel); needs an `image_size`.
        follow_links: follow symbolic links to folders while searching. Links to files are always
            listed if they lead to a regular file; named pipes, devices and sockets never are.
        validation_split: fraction of each class's files set apart for validation, in (0, 1);
            needs `subset`. For both subsets at once, use `ImageFolder.split`.
        subset: "training" or "validation": which side of `validation_split` this dataset is.
        split_seed: None (default) splits as Keras does, by position in each class's file list;
            an int splits by a keyed hash of each path (NOTE [ Validation splits ]).
        allow_empty_classes: keep a class folder with no images (with a warning) instead of
            raising, so class indices stay the same as in a folder where it is not empty.
        on_bad_file: "raise" (default): an unreadable image raises `BadImageError` naming it when
            its sample is loaded; "skip": every image (of the subset) is decoded once now and bad
            ones are left out, listed with reasons in `.skipped` (NOTE [ Bad-file policy ]). The
            split is made before, so a bad file never moves another across it.
        max_pixels: refuse images that declare more pixels than this (decompression bombs;
            NOTE [ Pixel limit ]); None: no limit.
        cache: keep decoded, resized images: None (default), "memory" (this run, shared by all
            workers), a directory (kept across runs) or a `DecodedCache` (NOTE [ Decoded cache ]).
        downscale_on_decode: decode JPEGs at 1/2, 1/4 or 1/8 size when that still covers
            `image_size` (faster for large photos; close to, not equal to, a full decode:
            NOTE [ Reduced-size decode ]). Needs an `image_size`.
        storage_options: fsspec options when `root` is a URL (`s3://`, `gs://`, `memory://`,
            `file://`), e.g. `{"endpoint_url": ...}`; see docs/remote.md.

    Raises:
        FileNotFoundError: `root` does not exist.
        TypeError, ValueError: an option of the wrong type or an unknown value; the message
            lists the choices.
        DatasetError: `root` has no class folders or no images, a class folder has no images,
            a `class_names` entry has no folder, or the chosen subset has no image at all.

    Example:
        >>> train = ImageFolder("data/train", image_size=(224, 224),  # doctest: +SKIP
        ...                     validation_split=0.2, subset="training")
        >>> train.class_names, len(train)  # doctest: +SKIP
        (['cats', 'dogs'], 1600)
        >>> train, val = ImageFolder.split("data/train", validation_split=0.2, image_size=(224, 224))  # doctest: +SKIP
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
        keep_aspect_ratio: bool = False,
        follow_links: bool = False,
        validation_split: float | None = None,
        subset: str | None = None,
        split_seed: int | None = None,
        allow_empty_classes: bool = False,
        on_bad_file: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        cache: str | os.PathLike[str] | DecodedCache | None = None,
        downscale_on_decode: bool = False,
        storage_options: dict | None = None,
    ):
        super().__init__(transform)
        self._mounts = storage.mount(root, storage_options=storage_options)  # NOTE [ Remote storage ]
        self.root = check_directory(root, "ImageFolder root")
        self._configure_images_from(self.root, locals())
        self.label_mode = _check_label_mode(label_mode)
        self.follow_links = check_bool("follow_links", follow_links)
        check_bool("allow_empty_classes", allow_empty_classes)
        self.validation_split, self.split_seed = _check_split(validation_split, subset, split_seed)
        self.subset = subset

        self.class_names = self._find_classes(class_names)
        self.class_indices = {name: index for index, name in enumerate(self.class_names)}
        check_binary_classes(self.label_mode, self.class_names, repr(self.root))
        self.has_targets = self.label_mode is not None
        self.y_is_image = self.label_mode == "input"

        files, labels = self._list_files(allow_empty_classes)
        self._index = SampleIndex(files=StringTable(files), labels=labels)
        if subset is not None:
            self._keep_subset(stacklevel=3)
        self._apply_bad_file_policy(on_bad_file)

    @classmethod
    def split(
        cls,
        root: str | os.PathLike[str],
        *,
        validation_split: float,
        split_seed: int | None = None,
        **options: object,
    ) -> tuple[ImageFolder, ImageFolder]:
        """Both subsets of `root`, `(training, validation)`: Keras's `subset="both"`.

        The same as `ImageFolder(root, validation_split=..., subset="training", **options)` and
        `subset="validation"`, but the folders are listed once. Both share every option,
        `transform` included (as in Keras, where one `ImageDataGenerator` serves both); to
        augment only the training images, build the two with `subset=` and different transforms.

        Args:
            root, validation_split, split_seed: as in `ImageFolder`.
            **options: any other `ImageFolder` argument (`image_size` is required).

        Returns:
            `(training, validation)`: disjoint, together every image, with the same classes.
        """
        if "subset" in options:
            raise TypeError("ImageFolder.split returns both subsets, (training, validation); do not pass subset.")
        if "seed" in options:
            raise TypeError(
                "ImageFolder.split takes split_seed= for the split (xl.split(source, seed=...) calls it seed); "
                "the shuffle seed goes to the loader: Batches, PyDataset or DataLoader(seed=...)."
            )
        fraction, seed = _check_fraction(validation_split), check_split_seed(split_seed, "split_seed")
        on_bad_file = options.pop("on_bad_file", "raise")  # applied per subset, after the split
        every = cls(root, **options)  # type: ignore[arg-type]
        parts = every._subset("training", fraction, seed), every._subset("validation", fraction, seed)
        for part in parts:
            part._apply_bad_file_policy(on_bad_file, stacklevel=3)
        return parts

    def _subset(self, subset: str, validation_split: float, split_seed: int | None) -> ImageFolder:
        part = copy.copy(self)
        TransformedSource.__init__(part, self.transform)  # its own per-thread transform copies
        part.validation_split, part.split_seed, part.subset = validation_split, split_seed, subset
        part.skipped = []
        part._keep_subset(stacklevel=4)
        return part

    def _keep_subset(self, stacklevel: int) -> None:
        """Restrict the index to `self.subset` of `self.validation_split` (NOTE [ Validation splits ])."""
        assert self.validation_split is not None and self.subset is not None
        labels = self._index.labels
        keys = [self.sample_key(i) for i in range(len(self))]
        in_validation = validation_mask(keys, labels, self.validation_split, self.split_seed)
        keep = in_validation if self.subset == "validation" else ~in_validation
        counts = np.bincount(labels, minlength=len(self.class_names))
        kept = np.bincount(labels[keep], minlength=len(self.class_names))
        if not keep.any():
            raise DatasetError(
                f"the {self.subset} subset of {self.root!r} is empty: validation_split={self.validation_split} "
                f"of classes with {sorted(set(counts[counts > 0].tolist()))} images leaves it no image. "
                "Use a different validation_split or more images."
            )
        lost = [name for name, total, left in zip(self.class_names, counts, kept, strict=True) if total and not left]
        if lost:
            warnings.warn(
                f"classes {lost} of {self.root!r} have images but none in the {self.subset} subset "
                f"(validation_split={self.validation_split}); they are kept as classes with no samples "
                "here, so class indices do not shift.",
                stacklevel=stacklevel,
            )
        self._index = self._index.take(keep)

    def _find_classes(self, class_names: Sequence[str] | None) -> list[str]:
        with storage.scandir(self.root) as entries:
            folders = sorted(
                entry.name for entry in entries if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=True)
            )
        if class_names is None:
            if not folders:
                raise DatasetError(
                    f"ImageFolder root {self.root!r} has no class folders. "
                    f"Put each class's images in its own sub-folder, e.g. {self.root}/cats/001.jpg."
                )
            if "train" in folders and len(folders) > 1 and set(folders) <= _SPLIT_FOLDERS:
                warnings.warn(
                    f"ImageFolder root {self.root!r} has the class folders {folders}, which look like dataset "
                    f"splits: did you mean ImageFolder({os.path.join(self.root, 'train')!r}, ...) and one per "
                    "split? If they are classes, pass class_names= to say so.",
                    stacklevel=3,  # the caller of ImageFolder(...)
                )
            return folders
        names = check_class_names(class_names)
        assert names is not None
        missing = [name for name in names if not storage.isdir(os.path.join(self.root, name))]
        if missing:
            raise DatasetError(
                f"class_names {missing} have no folder in {self.root!r} (found: {folders}). "
                "Fix the names or create the folders."
            )
        return names

    def _list_files(self, allow_empty_classes: bool) -> tuple[list[str], np.ndarray]:
        with storage.scandir(self.root) as entries:
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
        counts: list[int] = []
        for name in self.class_names:
            found = list_image_files(
                os.path.join(self.root, name), follow_links=self.follow_links, prefix=name + os.sep
            )
            files.extend(found)
            counts.append(len(found))
        empty = [name for name, count in zip(self.class_names, counts, strict=True) if not count]
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
        return files, np.repeat(np.arange(len(counts), dtype=np.int64), counts)

    def __repr__(self) -> str:
        subset = f", subset={self.subset!r}, validation_split={self.validation_split}" if self.subset else ""
        return (
            f"ImageFolder({self.root!r}, {len(self)} images, {len(self.class_names)} classes, "
            f"image_size={self.image_size}, label_mode={self.label_mode!r}{subset})"
        )

    @property
    def labels(self) -> np.ndarray:
        """Class index of every sample, int64, in index order (Keras's `DirectoryIterator.classes`)."""
        return self._index.labels.copy()

    def _target(self, index: int) -> np.ndarray:
        return class_target(self.label_mode, self._index.labels[index], len(self.class_names))
