"""`MultiMaskFolder`: several binary masks per image, one file per object or per class."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal, Unpack

import numpy as np

from xloader import storage
from xloader._checks import check_choice, check_class_names, list_preview
from xloader._strings import StringTable
from xloader._targets import merge_binary_masks
from xloader.decoding import is_image_file
from xloader.errors import DatasetError
from xloader.index._sample_index import Ragged, SampleIndex
from xloader.index._walk import IMAGE_EXTENSIONS, list_image_files
from xloader.sources._masks import (
    MaskOptions,
    MaskSource,
    files_by_stem,
    mask_format,
    read_binary_mask,
    relative_stem,
)

__all__ = ["MultiMaskFolder"]

Layout = Literal["by_image", "by_class"]


def class_of_file(stem: str, class_names: list[str]) -> str | None:
    """The class a mask file's name (without extension) gives: the name itself, or the longest
    class name it starts with followed by "_" (`car_2` is a `car`); None if neither."""
    if stem in class_names:
        return stem
    matches = [name for name in class_names if stem.startswith(name + "_")]
    return max(matches, key=len) if matches else None


class MultiMaskFolder(MaskSource):
    """Images with several binary mask files each, merged into one mask per image.

    Two layouts (`layout=` is required):

        layout="by_image"                    layout="by_class"
        images/0001.jpg                      images/0001.jpg
        masks/0001/car.png                   masks/car/0001.png
        masks/0001/road.png                  masks/road/0001.png
        masks/0002/car_1.png                 masks/car/0002.png
        masks/0002/car_2.png

    A mask file is binary: every non-zero pixel belongs to its object or class. With "by_image",
    the files in `masks_dir/<image path without extension>/` are that image's masks; their
    classes come from their names when `class_names` is given (`car.png`, or `car_<anything>.png`
    for several objects of one class), else every file is an object of a single class (the Data
    Science Bowl 2018 layout, one file per nucleus; see also `from_sample_folders`). An empty
    folder means no objects. With "by_class", the sub-folders of `masks_dir` are the classes
    (sorted, or `class_names`), and an image without a file in a class folder has none of it.

    Class `class_names[k]` has index k + 1; index 0 is the background (pixels in no mask).
    Where masks of several classes overlap, the highest class index wins ("index" and
    "one_hot"); "multi_hot" keeps them all.

    Each sample: `x` uint8 (H, W, C); `y` by `mask_mode`: "index" (H, W) class indices, "one_hot"
    (H, W, num_classes) with channel 0 the background, "multi_hot" (H, W, num_classes - 1) with
    channel k for class k + 1. Image and mask are resized to `image_size` (masks with nearest
    neighbour) and go through `transform(image=x, mask=y)` in one call; `y`'s dtype and shape do
    not depend on the transform's random choices.

    The options it shares with `ImageMaskFolder` (`mask_mode`, `mask_dtype`, `unpaired`,
    `color_mode`, `interpolation`, `follow_links`, `on_bad_file`, `max_pixels`, `cache`) are
    keyword arguments typed by `xloader.sources._masks.MaskOptions`, with the same defaults.

    Args:
        images_dir: folder of images (searched recursively).
        masks_dir: folder of masks, laid out as `layout` says. PNG: masks must be lossless.
        layout: "by_image" or "by_class", as above.
        image_size: (height, width), or None to keep file sizes.
        transform: an albumentations `Compose` (or any `xloader.Transform`); it must resample
            masks with nearest neighbour (the default), else `ValueError`.
        class_names: the classes in index order. "by_class": None uses the sorted folder names;
            given, each needs a folder and every folder must be listed. "by_image": None means
            one class for every file; given, every file's name must name a class.
        mask_mode: "index" (default), "one_hot" or "multi_hot".
        mask_dtype: "index": "uint8" (default) or "int64"; "one_hot", "multi_hot": "uint8"
            (default) or "float32".
        unpaired: images without any mask, and masks (or mask folders) without an image.
            "raise" (default): `DatasetError` listing them. "skip": left out, warned, listed in
            `.skipped`. "background": images without masks are kept with an empty mask; masks
            without images are skipped.
        color_mode, interpolation, follow_links: as in `ImageMaskFolder`.
        cache: as in `ImageMaskFolder`, but images only: masks are made at each load.
        storage_options: fsspec options when the folders are URLs (docs/remote.md).
        on_bad_file, max_pixels: as in `ImageMaskFolder` ("skip" decodes every image and mask
            once now and leaves the bad ones out, listed in `.skipped`).

    Attributes:
        class_names: the classes in index order (None: one class, index 1).
        num_classes: the number of classes, background included.
        image_files: image paths relative to `images_dir`, in index order.
        skipped: (path, reason) of every file `unpaired` left out.

    Raises:
        FileNotFoundError: a folder does not exist.
        DatasetError: no images, unpaired files (with `unpaired="raise"`), a mask file whose name
            is not a class, a class folder missing or not listed, files directly in `masks_dir`.
        BadImageError: at load time, a file that cannot be decoded or a mask whose size differs
            from its image's (the message names both).

    Example:
        >>> seg = MultiMaskFolder("images", "masks", layout="by_class", image_size=(256, 256),
        ...                       mask_mode="multi_hot")  # doctest: +SKIP
        >>> x, y = seg.load(0, seed=0, epoch=0, with_targets=True)  # doctest: +SKIP
        >>> y.shape, y.dtype  # doctest: +SKIP
        ((256, 256, 2), dtype('uint8'))
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        masks_dir: str | os.PathLike[str],
        *,
        layout: Layout,
        image_size: tuple[int, int] | None,
        transform: object = None,
        class_names: Sequence[str] | None = None,
        storage_options: dict | None = None,
        **options: Unpack[MaskOptions],
    ):
        check_choice("layout", layout, ("by_image", "by_class"))
        self.layout: str = layout
        self._mounts = storage.mount(images_dir, masks_dir, storage_options=storage_options)  # NOTE [ Remote storage ]
        self._configure_masks(
            images_dir, masks_dir, ("images_dir", "masks_dir"), image_size=image_size, transform=transform, **options
        )
        names = check_class_names(class_names)
        images = files_by_stem(self.images_dir, self._list(self.images_dir), "images_dir")
        if layout == "by_image":
            self.class_names = names
            found = self._index_by_image(images)
        else:
            self.class_names = self._class_folders(names)
            found = self._index_by_class(images)
        self._finish(images, *found)

    @classmethod
    def from_sample_folders(
        cls,
        root: str | os.PathLike[str],
        *,
        image_size: tuple[int, int] | None,
        images: str = "images",
        masks: str = "masks",
        transform: object = None,
        class_names: Sequence[str] | None = None,
        storage_options: dict | None = None,
        **options: Unpack[MaskOptions],
    ) -> MultiMaskFolder:
        """One folder per sample, as in the Data Science Bowl 2018's `stage1_train`:

            root/<id>/images/<id>.png      the image (exactly one)
            root/<id>/masks/*.png          its masks, classes as in layout="by_image"

        `images` and `masks` name the two sub-folders. Other options as in the constructor
        (`follow_links` applies inside each sample folder).

        Raises:
            DatasetError: a sample folder without exactly one image, or without a masks folder
                (unless `unpaired` is "skip" or "background"); otherwise as the constructor.
        """
        source = cls.__new__(cls)
        source.layout = "sample_folders"
        source._mounts = storage.mount(root, storage_options=storage_options)  # NOTE [ Remote storage ]
        source._configure_masks(root, root, ("root", "root"), image_size=image_size, transform=transform, **options)
        source.class_names = check_class_names(class_names)
        for name, value in (("images", images), ("masks", masks)):
            if not isinstance(value, str) or not value or os.sep in value or value.startswith("."):
                raise ValueError(f"{name} must be the name of a sub-folder of each sample folder, got {value!r}.")
        top = source.images_dir
        found: dict[str, str] = {}
        groups: dict[str, list[str]] = {}
        no_mask: list[str] = []
        with storage.scandir(top) as entries:
            sample_names = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
        for sample in sample_names:
            image_folder = os.path.join(top, sample, images)
            files = source._list(image_folder) if storage.isdir(image_folder) else []
            if len(files) != 1:
                raise DatasetError(
                    f"sample folder {os.path.join(top, sample)!r} has {len(files)} images in {images}/"
                    f"{' (' + list_preview(files) + ')' if files else ''}; each sample folder needs exactly one."
                )
            found[sample] = os.path.join(sample, images, files[0])
            mask_folder = os.path.join(top, sample, masks)
            if storage.isdir(mask_folder):
                groups[sample] = [os.path.join(sample, masks, f) for f in source._list(mask_folder)]
            else:
                no_mask.append(os.path.join(top, found[sample]))
        if not found:
            raise DatasetError(f"root {top!r} has no sample folders (<id>/{images}/<image>).")
        source._finish(found, groups, no_mask, [])
        return source

    def _list(self, folder: str) -> list[str]:
        return list_image_files(folder, follow_links=self.follow_links)

    def _stray_files(self, files: list[str]) -> None:
        if files:
            where = (
                "masks_dir/<image path without extension>/<mask>"
                if self.layout == "by_image"
                else "masks_dir/<class>/<image path without extension>.<ext>"
            )
            shown = [os.path.join(self.masks_dir, f) for f in files]
            raise DatasetError(
                f"masks_dir {self.masks_dir!r} has {len(files)} mask files directly in it ({list_preview(shown)}); with "
                f"layout={self.layout!r} masks are {where}. Move them, or use ImageMaskFolder for one mask per image."
            )

    def _index_by_image(self, images: dict[str, str]) -> tuple[dict[str, list[str]], list[str], list[str]]:
        """({image stem: mask paths}, images without masks, mask folders without images)."""
        groups: dict[str, list[str]] = {}
        for path in self._list(self.masks_dir):
            groups.setdefault(os.path.dirname(path), []).append(path)
        self._stray_files(groups.pop("", []))
        no_image = [os.path.join(self.masks_dir, folder) for folder in groups if folder not in images]
        for folder in list(groups):
            if folder not in images:
                del groups[folder]
        no_mask = []
        for stem, path in images.items():
            if stem not in groups:
                if storage.isdir(os.path.join(self.masks_dir, stem)):
                    groups[stem] = []  # an empty folder: the image has no objects
                else:
                    no_mask.append(os.path.join(self.images_dir, path))
        return groups, no_mask, no_image

    def _class_folders(self, names: list[str] | None) -> list[str]:
        with storage.scandir(self.masks_dir) as entries:
            visible = [e for e in entries if not e.name.startswith(".")]
        folders = sorted(e.name for e in visible if e.is_dir())
        self._stray_files(sorted(e.name for e in visible if e.is_file() and is_image_file(e.name, IMAGE_EXTENSIONS)))
        if names is None:
            if not folders:
                raise DatasetError(f"masks_dir {self.masks_dir!r} has no class folders (masks_dir/<class>/<image>).")
            return folders
        missing = [n for n in names if n not in folders]
        if missing:
            raise DatasetError(
                f"class_names lists {', '.join(map(repr, missing))} but masks_dir {self.masks_dir!r} has no such folder "
                f"(its class folders: {folders}). Fix class_names, or create the folder."
            )
        unknown = [f for f in folders if f not in names]
        if unknown:
            raise DatasetError(
                f"masks_dir {self.masks_dir!r} has class folders that are not in class_names: "
                f"{', '.join(map(repr, unknown))}. Add them to class_names, or move them out of masks_dir "
                "(their pixels would otherwise silently become background)."
            )
        return names

    def _index_by_class(self, images: dict[str, str]) -> tuple[dict[str, list[str]], list[str], list[str]]:
        groups: dict[str, list[str]] = {}
        no_image: list[str] = []
        assert self.class_names is not None
        for name in self.class_names:
            folder = os.path.join(self.masks_dir, name)
            stems = files_by_stem(folder, self._list(folder), "class folder")
            for stem, path in stems.items():
                if stem in images:
                    groups.setdefault(stem, []).append(os.path.join(name, path))
                else:
                    no_image.append(os.path.join(folder, path))
        no_mask = [os.path.join(self.images_dir, images[s]) for s in images if s not in groups]
        return groups, no_mask, no_image

    def _class_of(self, mask_path: str) -> str | None:
        """The class of a mask file (relative to `masks_dir`); None: not a class."""
        if self.layout == "by_class":
            return mask_path.split(os.sep, 1)[0]
        if self.class_names is None:
            return ""
        return class_of_file(os.path.basename(relative_stem(mask_path)), self.class_names)

    def _finish(
        self,
        images: dict[str, str],
        groups: dict[str, list[str]],
        no_mask: list[str],
        no_image: list[str],
    ) -> None:
        """Settle unpaired files, check classes, and store the index in flat arrays."""
        if not images:
            raise DatasetError(f"images_dir {self.images_dir!r} has no images.")
        self.num_classes = 2 if self.class_names is None else len(self.class_names) + 1
        self.mask_format = mask_format(*self._mask_options, self.num_classes)
        rule = {
            "by_image": "An image's masks are in masks_dir/<image path without extension>/ (an empty folder: no objects).",
            "by_class": "Masks pair with images by name without extension (masks/car/a.png with images/a.jpg).",
            "sample_folders": "Each sample folder needs a masks folder (an empty one: no objects).",
        }[self.layout]
        self._settle_unpaired(no_mask, no_image, rule)
        index = {name: i + 1 for i, name in enumerate(self.class_names or [""])}
        unknown = [
            os.path.join(self.masks_dir, p) for files in groups.values() for p in files if self._class_of(p) is None
        ]
        if unknown:
            raise DatasetError(
                f"{len(unknown)} mask files are not named after a class in {self.class_names}: {list_preview(unknown)}. "
                "Name each file <class>.png, or <class>_<anything>.png for several objects of one class, "
                "or pass class_names=None if every file is an object of one class."
            )
        keep_all = self.unpaired == "background"
        stems = sorted(s for s in images if s in groups or keep_all)
        if not stems:
            raise DatasetError(f"no image in {self.images_dir!r} has a mask in {self.masks_dir!r}.")
        masks: list[str] = []
        classes: list[int] = []
        counts: list[int] = []
        for stem in stems:
            # Sorted by class, then path: merging writes higher classes last, so they win overlaps.
            pairs = sorted((index[self._class_of(p)], p) for p in groups.get(stem, []))  # type: ignore[index]
            classes.extend(c for c, _ in pairs)
            masks.extend(p for _, p in pairs)
            counts.append(len(pairs))
        self._index = SampleIndex(
            files=StringTable(images[s] for s in stems),
            masks=Ragged.from_counts(counts, paths=StringTable(masks), classes=np.array(classes, dtype=np.int32)),
        )
        self._apply_bad_file_policy(self._on_bad_file, stacklevel=4)

    def __repr__(self) -> str:
        return (
            f"MultiMaskFolder({self.images_dir!r}, {self.masks_dir!r}, layout={self.layout!r}, {len(self)} images, "
            f"image_size={self.image_size}, classes={self.class_names}, mask_mode={self.mask_format.mode!r})"
        )

    def mask_files(self, index: int) -> list[str]:
        """Mask paths of sample `index`, relative to `masks_dir`, in the order they are merged."""
        masks = self._index.masks
        return [masks.columns["paths"][i] for i in masks.span(index)]

    def paths_of(self, indices: Sequence[int]) -> list[str]:
        """The image files (unless the decoded cache holds them) and every mask file of the
        samples at `indices` (`SupportsPaths`): a batch's remote objects are fetched together."""
        masks = self._index.masks
        paths = masks.columns["paths"]
        mask_paths = [os.path.join(self.masks_dir, paths[i]) for index in indices for i in masks.span(index)]
        return super().paths_of(indices) + mask_paths

    def mask_classes(self, index: int) -> list[int]:
        """The class index of each of `mask_files(index)` (1 for the first class; 0 is background)."""
        return self._index.masks.row(index, "classes").tolist()

    def _mask(self, index: int, image_shape: tuple[int, ...]) -> np.ndarray:
        image_path = self.describe(index)
        masks = self._index.masks
        paths, classes = masks.columns["paths"], masks.columns["classes"]
        return merge_binary_masks(
            self.mask_format,
            image_shape,
            (
                (int(classes[i]), read_binary_mask(os.path.join(self.masks_dir, paths[i]), image_path, image_shape))
                for i in masks.span(index)
            ),
        )
