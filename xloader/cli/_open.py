"""What the subcommands share: find the layout of a path, load a transform, build the source."""

from __future__ import annotations

import os
import runpy
from typing import Any

from xloader.sources import ImageFolder, ImageMaskFolder
from xloader.sources._base import Source

LAYOUTS = {
    "class_folders": "class folders (root/<class>/<image>)",
    "image_mask_pairs": "images/ and masks/ paired by file stem",
}


def find_layout(path: str) -> str:
    """ "image_mask_pairs" if `path` holds images/ and masks/ folders, else "class_folders".

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not a folder.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist.")
    if not os.path.isdir(path):
        raise ValueError(
            f"{path!r} is not a folder: give a folder of class folders, or one holding images/ and masks/."
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
    else:
        source = ImageFolder(path, image_size=size, transform=transform)
    return layout, source
