"""Reduced-size JPEG decode (`downscale_on_decode=True`) against a full decode, on large photos.

    python benchmarks/reduced_decode.py [--images 6] [--repeats 3] [--size 224]

Data: the scikit-image photos (astronaut, coffee, chelsea, rocket, ...) upscaled with
bicubic interpolation to 4000x3000 and to 1920x1440 (landscape; portrait photos are
transposed first) and written as JPEG quality 90. Upscaled photos are smoother than a camera's,
so they compress better and the PSNR below is higher than on real photos of that size.

Per size, single process, per image (median over the repeats of the mean over the images):
- full: `ImageDecoder.decode`, read + decode + resize to size x size (bilinear, the sources'
  default);
- reduced: the same decoder with `downscale_on_decode=True` (decode at 1/2, 1/4 or 1/8 size);
- through ImageFolder: `load` of the whole sample, with and without `downscale_on_decode`;
- PSNR (dB, mean over the images) of each against the reference, a full decode + area resize
  (`cv2.INTER_AREA`, the filter that averages every source pixel).
Targets (issue 18): reduced at least 3x faster than full on 4000x3000, PSNR at least 30 dB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "cat",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle_left",
)


def make_photos(root: str, count: int, width: int, height: int) -> str:
    from skimage import data

    folder = os.path.join(root, f"{width}x{height}", "photos")
    os.makedirs(folder)
    for i in range(count):
        name = PHOTOS[i % len(PHOTOS)]
        photo = getattr(data, name)()
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, axis=-1)
        photo = photo[:, :, :3]
        if photo.shape[0] > photo.shape[1]:
            photo = photo.transpose(1, 0, 2)
        large = cv2.resize(np.ascontiguousarray(photo), (width, height), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(os.path.join(folder, f"{i:02d}.jpg"), large[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return os.path.dirname(folder)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / error))


def per_image_ms(function, paths: list[str], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            function(path)
        runs.append((time.perf_counter() - start) / len(paths) * 1000)
    return statistics.median(runs)


def run_size(root: str, size: int, repeats: int) -> dict:
    import xloader as xl
    from xloader._decoder import ImageDecoder

    folder = os.path.join(root, "photos")
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    full = ImageDecoder(image_size=(size, size)).decode
    reduced_decoder = ImageDecoder(image_size=(size, size), downscale_on_decode=True)
    reduced = reduced_decoder.decode
    area = ImageDecoder(image_size=(size, size), interpolation="area").decode

    plain = xl.ImageFolder(root, image_size=(size, size))
    fast = xl.ImageFolder(root, image_size=(size, size), downscale_on_decode=True)
    indices = {os.path.join(root, name): i for i, name in enumerate(plain.filenames)}

    def load(source):
        return lambda path: source.load(indices[path], seed=0, epoch=0, with_targets=False)

    reference = {path: area(path) for path in paths}
    return {
        "full_ms": per_image_ms(full, paths, repeats),
        "reduced_ms": per_image_ms(reduced, paths, repeats),
        "source_full_ms": per_image_ms(load(plain), paths, repeats),
        "source_reduced_ms": per_image_ms(load(fast), paths, repeats),
        "psnr_full_bilinear": statistics.mean(psnr(full(p), reference[p]) for p in paths),
        "psnr_reduced": statistics.mean(psnr(reduced(p), reference[p]) for p in paths),
        "decoded_shape": reduced_decoder.unresized(paths[0]).shape,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="reduced-size JPEG decode against full decode")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print(f"decode + resize to {args.size}x{args.size}, ms per image (median of {args.repeats}), PSNR vs full + area")
    print(
        f"{'photos':<10}{'decoded at':>14}{'full':>8}{'reduced':>9}{'speedup':>9}"
        f"{'source':>8}{'source+r':>9}{'speedup':>9}{'PSNR full':>10}{'PSNR red.':>10}"
    )
    with tempfile.TemporaryDirectory(prefix="xloader-reduced-") as work:
        for width, height in ((4000, 3000), (1920, 1440)):
            root = make_photos(work, args.images, width, height)
            r = run_size(root, args.size, args.repeats)
            shape = "x".join(str(v) for v in r["decoded_shape"][1::-1])
            print(
                f"{width}x{height:<5}{shape:>14}{r['full_ms']:8.1f}{r['reduced_ms']:9.1f}"
                f"{r['full_ms'] / r['reduced_ms']:8.1f}x{r['source_full_ms']:8.1f}{r['source_reduced_ms']:9.1f}"
                f"{r['source_full_ms'] / r['source_reduced_ms']:8.1f}x"
                f"{r['psnr_full_bilinear']:9.1f} {r['psnr_reduced']:9.1f}"
            )


if __name__ == "__main__":
    main()
