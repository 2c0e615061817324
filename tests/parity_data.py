"""The datasets and augmentations the parity tests share (imported by tests and by keras_probe.py)."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import xloader as xl


def augmentation(task: str):
    import albumentations as A

    steps = [
        A.HorizontalFlip(p=0.5),
        A.Affine(translate_percent=(-0.06, 0.06), scale=(0.9, 1.1), rotate=(-30, 30), p=0.7),
    ]
    if task == "classification":
        steps += [A.RandomBrightnessContrast(p=0.5), A.Normalize()]  # float32 output
    else:
        steps += [A.RandomBrightnessContrast(p=0.5)]  # uint8 image, uint8 mask
    return A.Compose(steps)


def build_source(spec: dict, augment: bool = True):
    """The source a parity spec describes; `spec["source"]` picks the class (default by task)."""
    transform = augmentation(spec["task"]) if augment else None
    size = tuple(spec["image_size"])
    kind = spec.get("source", "ImageFolder" if spec["task"] == "classification" else "ImageMaskFolder")
    extra = spec.get("source_options", {})
    source = _whole_source(spec, kind, size, transform, extra)
    if "split" in spec:
        part = spec["split"]
        return xl.split(source, validation_split=part["validation_split"], seed=part["seed"])[part["part"]]
    return source


def _whole_source(spec: dict, kind: str, size: tuple, transform, extra: dict):
    if kind == "ImageFolder":
        return xl.ImageFolder(spec["root"], image_size=size, transform=transform, **extra)
    if kind == "ImageManifest":
        return xl.ImageManifest(spec["csv"], image_size=size, transform=transform, **extra)
    if kind == "ImageMaskFolder":
        return xl.ImageMaskFolder(spec["images_dir"], spec["masks_dir"], image_size=size, transform=transform, **extra)
    if kind == "MultiMaskFolder":
        return xl.MultiMaskFolder(spec["images_dir"], spec["masks_dir"], image_size=size, transform=transform, **extra)
    if kind == "RLEMasks":
        return xl.RLEMasks(spec["images_dir"], spec["csv"], image_size=size, transform=transform, **extra)
    raise ValueError(f"unknown parity source {kind!r}")


def loader_options(spec: dict) -> dict:
    """The loader options of a parity spec, with its `batch_transform` built: a list of
    ["MixUp" or "CutMix", alpha] for `num_classes` classes, one picked per batch if several."""
    options = dict(spec["options"])
    if "batch_transform" in spec:
        recipes = [
            getattr(xl, name)(alpha=alpha, num_classes=spec["num_classes"]) for name, alpha in spec["batch_transform"]
        ]
        options["batch_transform"] = recipes[0] if len(recipes) == 1 else xl.RandomChoice(recipes)
    return options
