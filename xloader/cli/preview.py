"""`xloader preview PATH --out grid.png`: samples as the model sees them, epoch after epoch."""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from xloader.cli._open import load_transform, open_dataset

# Distinct colours for mask classes 1.. (class 0, background, is left uncoloured).
_PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
    ],
    dtype=np.uint8,
)


def displayable(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 picture of a sample's image: float images (e.g. after Normalize) are
    stretched to 0..255 per image; grey and RGBA images become RGB."""
    if image.dtype != np.uint8:
        image = image.astype(np.float64)
        low, high = float(image.min()), float(image.max())
        image = np.zeros_like(image) if high <= low else (image - low) / (high - low) * 255.0
        image = np.rint(image).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`image` with mask classes > 0 blended in colour (half opacity)."""
    if mask.ndim == 3:  # one-hot or stacked masks: show the class index map
        mask = mask.argmax(axis=2)
    coloured = image.copy()
    labelled = mask > 0
    colours = _PALETTE[(mask[labelled].astype(np.int64) - 1) % len(_PALETTE)]
    coloured[labelled] = (image[labelled].astype(np.uint16) + colours) // 2
    return coloured


def tile(x: np.ndarray, y: np.ndarray | None, is_mask: bool, size: int) -> np.ndarray:
    picture = displayable(x)
    if is_mask and y is not None:
        picture = overlay(picture, np.asarray(y))
    return cv2.resize(picture, (size, size), interpolation=cv2.INTER_NEAREST)


def run(args: argparse.Namespace) -> int:
    layout, source = open_dataset(
        args.path, image_size=args.image_size, transform=load_transform(args.transform), masks=args.masks
    )
    rows = min(args.samples, len(source))
    tile_size, gap = 160, 4
    grid = np.full((rows * (tile_size + gap) + gap, args.epochs * (tile_size + gap) + gap, 3), 255, np.uint8)
    is_mask = layout == "image_mask_pairs"
    # Spread the rows over the dataset, so classes stored one after another all show up.
    indices = np.linspace(0, len(source) - 1, rows).round().astype(int)
    for row, index in enumerate(indices.tolist()):
        for epoch in range(args.epochs):
            x, y = source.load(index, seed=args.seed, epoch=epoch, with_targets=source.has_targets)
            top, left = gap + row * (tile_size + gap), gap + epoch * (tile_size + gap)
            grid[top : top + tile_size, left : left + tile_size] = tile(x, y, is_mask, tile_size)
    if not cv2.imwrite(args.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {args.out!r} (a .png path in an existing folder is needed).")
    print(f"wrote {args.out}: {rows} samples (rows) x {args.epochs} epochs (columns), seed {args.seed}")
    return 0
