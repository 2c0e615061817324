"""What the subcommands share: find the layout of a path, load a transform, build the source."""

from __future__ import annotations

import os
import runpy
from typing import Any

from xloader.source import Source
from xloader.sources import ImageFolder, ImageManifest, ImageMaskFolder

LAYOUTS = {
    "class_folders": "class folders (root/<class>/<image>)",
    "image_mask_pairs": "images/ and masks/ paired by file stem",
    "manifest": "a CSV manifest (filename and class columns, paths relative to the CSV's folder)",
}


def find_layout(path: str) -> str:
    """ "manifest" for a .csv file, "image_mask_pairs" if `path` holds images/ and masks/ folders,
    else "class_folders".

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not a folder.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist.")
    if os.path.isfile(path) and path.lower().endswith(".csv"):
        return "manifest"
    if not os.path.isdir(path):
        raise ValueError(
            f"{path!r} is neither a folder nor a .csv file: give a folder of class folders, one holding "
            "images/ and masks/, or a CSV manifest."
        )
    if os.path.isdir(os.path.join(path, "images")) and os.path.isdir(os.path.join(path, "masks")):
        return "image_mask_pairs"
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
    path: str, *, image_size: tuple[int, int] | None, transform: Any, unpaired: str = "skip"
) -> tuple[str, Source]:
    """(layout, source) for `path`; image/mask folders skip (and report) unpaired files."""
    layout = find_layout(path)
    size = tuple(image_size) if image_size else None
    if layout == "image_mask_pairs":
        source = ImageMaskFolder(
            os.path.join(path, "images"),
            os.path.join(path, "masks"),
            image_size=size,
            transform=transform,
            unpaired=unpaired,
        )
    elif layout == "manifest":
        source = ImageManifest(path, image_size=size, transform=transform)
    else:
        source = ImageFolder(path, image_size=size, transform=transform)
    return layout, source
