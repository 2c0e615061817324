"""What the subcommands share: find the layout of a path, load a transform, build the source."""

from __future__ import annotations

import os
import runpy
import warnings
from collections import Counter
from typing import Any, Literal

from xloader import storage
from xloader.shards import TarShards, is_packed
from xloader.source import Source
from xloader.sources import IMAGE_EXTENSIONS, ImageFolder, ImageManifest, ImageMaskFolder

LAYOUTS = {
    "class_folders": "class folders (root/<class>/<image>)",
    "image_mask_pairs": "images and masks paired by file stem",
    "manifest": "a CSV manifest (filename and class columns, paths relative to the CSV's folder)",
    "split_root": "a split root",
    "shards": "tar shards written by xloader pack (xloader-index.npz)",
}
# Sub-folders that make a folder a split root (torchvision's --data-path, Keras's train/validation).
SPLIT_NAMES = ("train", "val", "validation", "test")


def find_splits(path: str) -> list[str]:
    """The split folders of `path` (in SPLIT_NAMES order) if it holds `train/` and at least one
    of `val/`, `validation/`, `test/`; else []."""
    found = [name for name in SPLIT_NAMES if storage.isdir(os.path.join(path, name))]
    return found if "train" in found and len(found) >= 2 else []


def parse_image_size(values: Any) -> tuple[int, int] | None:
    """`--image-size`: "H W" (or one number for a square), or "none" to keep each file's size.

    Raises:
        ValueError: anything else (the message shows the value and both forms).
    """
    if values is None or isinstance(values, tuple):
        return values
    if [v.lower() for v in values] == ["none"]:
        return None
    try:
        numbers = [int(v) for v in values]
    except ValueError:
        numbers = []
    if len(numbers) == 1:
        numbers *= 2
    if len(numbers) != 2 or min(numbers) < 1:
        raise ValueError(
            f"--image-size {' '.join(values)}: give H W (e.g. 224 224), one side for a square, or none to keep file sizes."
        )
    return numbers[0], numbers[1]


def ignored_files(*folders: str) -> dict[str, int]:
    """Files under `folders` that no source reads: {"hidden": names starting with "." (macOS
    `._x.png` AppleDouble files, `.DS_Store`; a hidden folder counts once), "not images": other
    extensions than the image ones}."""
    counts: Counter[str] = Counter(hidden=0, **{"not images": 0})
    for folder in folders:
        for _directory, subdirectories, files in os.walk(folder):
            counts["hidden"] += sum(name.startswith(".") for name in subdirectories)
            subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
            for name in files:
                if name.startswith("."):
                    counts["hidden"] += 1
                elif os.path.splitext(name)[1][1:].lower() not in IMAGE_EXTENSIONS:
                    counts["not images"] += 1
    return dict(counts)


def find_layout(path: str, masks: str | None = None, storage_options: dict | None = None) -> str:
    """ "manifest" for a .csv file; "image_mask_pairs" with `masks` (then `path` is the images
    folder) or if `path` holds images/ and masks/ folders; "shards" for a folder written by
    `xloader pack`; "split_root" if it holds train/ and val/, validation/ or test/
    (`find_splits`); else "class_folders". A URL is listed with `storage_options` (NOTE [ Remote
    storage ]).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not a folder.
    """
    storage.mount(
        storage.parent(path) if path.lower().endswith(".csv") else path, masks, storage_options=storage_options
    )
    if not storage.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist.")
    if storage.isfile(path) and path.lower().endswith(".csv"):
        return "manifest"
    if not storage.isdir(path):
        raise ValueError(
            f"{path!r} is neither a folder nor a .csv file: give a folder of class folders, one holding "
            "images/ and masks/, or a CSV manifest."
        )
    if masks is not None:
        if not storage.isdir(masks):
            raise FileNotFoundError(f"--masks {masks!r} is not a folder.")
        return "image_mask_pairs"
    if is_packed(path):
        return "shards"
    if storage.isdir(os.path.join(path, "images")) and storage.isdir(os.path.join(path, "masks")):
        return "image_mask_pairs"
    if find_splits(path):
        return "split_root"
    if storage.isdir(os.path.join(path, "images")):
        images = os.path.join(path, "images")
        warnings.warn(
            f"{path} holds images/ but no masks/, so its sub-folders are read as classes. For segmentation, "
            f"give the images folder and the masks folder: xloader inspect {images} --masks MASKS_DIR "
            f"(Oxford Pets: --masks {os.path.join(path, 'annotations', 'trimaps')}).",
            stacklevel=2,
        )
    return "class_folders"


def load_transform(spec: str | None) -> Any:
    """The augmentation in `spec`: a .py file defining `transform`, or a serialized albumentations
    pipeline (.json, .yaml, .yml). None gives None."""
    if spec is None:
        return None
    if not os.path.isfile(spec):
        raise FileNotFoundError(f"transform file {spec!r} does not exist.")
    extension = os.path.splitext(spec)[1].lower()
    if extension == ".py":
        namespace = runpy.run_path(spec)
        if "transform" not in namespace:
            raise ValueError(f"{spec} defines no `transform`; add e.g. transform = A.Compose([...]).")
        return namespace["transform"]
    if extension in (".json", ".yaml", ".yml"):
        import albumentations as A

        return A.load(spec, data_format="json" if extension == ".json" else "yaml")
    raise ValueError(f"transform file {spec!r}: expected a .py, .json, .yaml or .yml file.")


def open_dataset(
    path: str,
    *,
    image_size: tuple[int, int] | None,
    transform: Any,
    unpaired: Literal["raise", "skip", "background"] = "skip",
    masks: str | None = None,
    storage_options: dict | None = None,
) -> tuple[str, Source]:
    """(layout, source) for `path`, a local path or a URL (with `masks`: the images folder paired
    with that masks folder); image/mask folders skip (and report) unpaired files.

    Raises:
        ValueError: `path` is a split root: open each split (`find_splits`) instead.
    """
    layout = find_layout(path, masks, storage_options)
    size = (int(image_size[0]), int(image_size[1])) if image_size else None
    source: Source
    if layout == "split_root":
        splits = find_splits(path)
        raise ValueError(
            f"{path} is a split root ({', '.join(s + '/' for s in splits)}): give one split, e.g. "
            f"{os.path.join(path, splits[0])}. (xloader inspect reports every split.)"
        )
    if layout == "image_mask_pairs":
        images_dir, masks_dir = (
            (path, masks) if masks is not None else (os.path.join(path, d) for d in ("images", "masks"))
        )
        source = ImageMaskFolder(
            images_dir,
            masks_dir,
            image_size=size,
            transform=transform,
            unpaired=unpaired,
            storage_options=storage_options,
        )
    elif layout == "shards":
        source = TarShards(path, image_size=size, transform=transform, storage_options=storage_options)
    elif layout == "manifest":
        source = ImageManifest(path, image_size=size, transform=transform, storage_options=storage_options)
    else:
        source = ImageFolder(path, image_size=size, transform=transform, storage_options=storage_options)
    return layout, source
