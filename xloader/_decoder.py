"""The one decode path of every image source: bytes -> decoded, resized, colour-converted uint8.

# NOTE [ One sample's path ]
Every file-backed source turns an index row into a sample the same way:

    index row -> bytes (`decoding.read_bytes`: the one read of the package)
              -> `ImageDecoder.decode`: decoded, colour-converted, resized uint8 (H, W, C)
              -> the transform, with the (seed, epoch, index) stream -> written into the batch

Everything before the transform is a pure function of the file's bytes and the decoder's
options (`ImageDecoder.options_key` names them all), so the storage the bytes come from, a packed
shard, or a cache of decoded samples can stand in for a step without changing a bit of a batch.
docs/architecture.md draws it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xloader._checks import check_bool, check_choice, check_image_size
from xloader._reduced_decode import DownscaleTarget, check_downscale
from xloader.decoding import (
    COLOR_MODES,
    DEFAULT_MAX_PIXELS,
    ColorMode,
    check_interpolation,
    check_max_pixels,
    decode_image,
    read_bytes,
    resize_image,
)

__all__ = ["ImageDecoder"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageDecoder:
    """How a source decodes its images, checked once: every image option lives here.

    Attributes:
        image_size: (height, width) every image is resized to, or None to keep file sizes.
        color_mode: "rgb" (3 channels), "rgba" (4) or "grayscale" (1).
        interpolation: resize filter: "nearest" (Pillow's, so Keras's), "bilinear", "bicubic",
            "area", "lanczos".
        keep_aspect_ratio: crop to the aspect ratio of `image_size`, centred, before resizing.
        max_pixels: refuse images that declare more pixels than this (NOTE [ Pixel limit ]).
        downscale_on_decode: decode JPEGs at 1/2, 1/4 or 1/8 size when that still covers
            `image_size` (NOTE [ Reduced-size decode ]); needs an `image_size`.

    Raises:
        TypeError, ValueError: an option of the wrong type or value, named with the choices.
    """

    image_size: tuple[int, int] | None
    color_mode: ColorMode = "rgb"
    interpolation: str = "bilinear"
    keep_aspect_ratio: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    downscale_on_decode: bool = False
    _key: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the given values in place
        set_(self, "image_size", check_image_size(self.image_size))
        check_choice("color_mode", self.color_mode, COLOR_MODES)
        set_(self, "interpolation", check_interpolation(self.interpolation))
        set_(self, "keep_aspect_ratio", check_bool("keep_aspect_ratio", self.keep_aspect_ratio))
        set_(self, "max_pixels", check_max_pixels(self.max_pixels))
        if self.keep_aspect_ratio and self.image_size is None:
            raise ValueError(
                "keep_aspect_ratio=True needs an image_size: it crops each image to that size's aspect ratio."
            )
        set_(self, "downscale_on_decode", check_downscale(self.downscale_on_decode, self.image_size))
        object.__setattr__(  # made once: asked for every sample
            self,
            "_key",
            f"size={self.image_size};color={self.color_mode};interp={self.interpolation};"
            f"aspect={self.keep_aspect_ratio};max_pixels={self.max_pixels};downscale={self.downscale_on_decode}",
        )

    def decode(self, path: str) -> np.ndarray:
        """The image file at `path` as uint8 (H, W, C), resized; `BadImageError` naming it if it cannot be."""
        return self.decode_bytes(read_bytes(path), path)

    def decode_bytes(self, data: bytes, path: str) -> np.ndarray:
        """`decode` for bytes already read from any storage; `path` names them in errors."""
        return self.resize(self._decode(data, path))

    def unresized(self, path: str) -> np.ndarray:
        """The image decoded at its file size, or reduced with `downscale_on_decode` (a mask
        source resizes image and mask together, and does not take that option)."""
        return self._decode(read_bytes(path), path)

    def unresized_bytes(self, data: bytes, path: str) -> np.ndarray:
        """`unresized` for bytes already read from any storage; `path` names them in errors."""
        return self._decode(data, path)

    def _decode(self, data: bytes, path: str) -> np.ndarray:
        target = DownscaleTarget(self.image_size, self.keep_aspect_ratio) if self.downscale_on_decode else None  # type: ignore[arg-type]
        return decode_image(data, path, self.color_mode, max_pixels=self.max_pixels, downscale_for=target)

    def resize(self, image: np.ndarray) -> np.ndarray:
        return resize_image(image, self.image_size, self.interpolation, keep_aspect_ratio=self.keep_aspect_ratio)

    def options_key(self) -> str:
        """Every option that shapes a decoded image, as text: a cache key's second half."""
        return self._key
