"""Golden batch digests: the exact bytes of a few batches per source, pinned in the repository.

Parity tests compare loaders with each other, so a change shared by all of them (OpenCV's resize,
albumentations' sampling, libjpeg's decode) would pass them all. These digests pin what the
batches *are*, from files committed in tests/golden_data/, and record the versions that made them.

    python tests/golden.py --write     # regenerate after an intended change (say why in the commit)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib import metadata

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np

import xloader as xl

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "golden_data")
DIGESTS = os.path.join(DATA, "digests.json")
PACKAGES = ("numpy", "opencv-python-headless", "pillow", "albumentations", "albucore")


def make_files() -> None:
    """Write the committed inputs: 12 JPEG crops of two photos in 2 classes, masks, CSVs."""
    import cv2
    from PIL import Image
    from skimage import data as photos

    rng = np.random.default_rng(0)
    sources = [photos.chelsea(), photos.astronaut()]
    rle_rows, manifest_rows = ["image_id,class,rle"], ["filename,class"]
    for i in range(12):
        photo = sources[i % 2]
        top, left = rng.integers(0, 200, size=2)
        crop = np.ascontiguousarray(photo[top : top + 40, left : left + 48, :3])
        cls = ["cat", "person"][i % 2]
        for folder in (f"classes/{cls}", "images"):
            os.makedirs(os.path.join(DATA, folder), exist_ok=True)
            cv2.imwrite(os.path.join(DATA, folder, f"{i:02d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        mask = (crop.mean(axis=2) // 86).astype(np.uint8)  # classes 0, 1, 2 by brightness
        os.makedirs(os.path.join(DATA, "masks"), exist_ok=True)
        Image.fromarray(mask, mode="L").save(os.path.join(DATA, "masks", f"{i:02d}.png"))
        manifest_rows.append(f"classes/{cls}/{i:02d}.jpg,{cls}")
        for k, name in ((1, "mid"), (2, "bright")):
            rle_rows.append(f"{i:02d},{name},{xl.rle_encode(mask == k)}")
    for name, rows in (("manifest.csv", manifest_rows), ("masks.csv", rle_rows)):
        with open(os.path.join(DATA, name), "w") as file:
            file.write("\n".join(rows) + "\n")


def augmentation(normalize: bool):
    import albumentations as A

    steps = [A.HorizontalFlip(p=0.5), A.Affine(rotate=(-20, 20), scale=(0.9, 1.1), p=0.8), A.RandomBrightnessContrast(p=0.5)]
    return A.Compose(steps + ([A.Normalize()] if normalize else []))


def golden_loaders() -> dict[str, xl.Batches]:
    size = (24, 32)
    seg = {"image_size": size, "transform": augmentation(False)}
    sources = {
        "image_folder_augmented": xl.ImageFolder(f"{DATA}/classes", image_size=size, transform=augmentation(True)),
        "image_folder_nearest_aspect": xl.ImageFolder(
            f"{DATA}/classes", image_size=size, interpolation="nearest", keep_aspect_ratio=True, label_mode="categorical"
        ),
        "image_mask_folder_one_hot": xl.ImageMaskFolder(
            f"{DATA}/images", f"{DATA}/masks", num_classes=3, mask_mode="one_hot", **seg
        ),
        "manifest_grayscale": xl.ImageManifest(f"{DATA}/manifest.csv", image_size=size, color_mode="grayscale"),
        "rle_multi_hot": xl.RLEMasks(f"{DATA}/images", f"{DATA}/masks.csv", mask_mode="multi_hot", **seg),
        "array_augmented": xl.ArrayDataset(
            np.stack([np.full((8, 8, 3), i * 20, np.uint8) for i in range(12)]), np.arange(12), transform=augmentation(False)
        ),
    }
    return {name: xl.Batches(source, batch_size=5, shuffle=True, seed=11) for name, source in sources.items()}


def digest(batches: xl.Batches) -> str:
    sha = hashlib.sha256()
    for epoch in range(2):
        for b in range(len(batches)):
            batch = batches.get_batch(epoch, b)
            for array in batch if isinstance(batch, tuple) else (batch,):
                sha.update(f"{array.dtype.str}{array.shape}".encode())
                sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in PACKAGES}


if __name__ == "__main__":
    if "--make-files" in sys.argv:
        make_files()
    if "--write" in sys.argv:
        record = {"versions": versions(), "digests": {n: digest(b) for n, b in golden_loaders().items()}}
        with open(DIGESTS, "w") as file:
            json.dump(record, file, indent=2, sort_keys=True)
            file.write("\n")
        print(json.dumps(record, indent=2))
