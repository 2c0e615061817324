"""Image geometry shared by the decoder and the reduced-size decode: Keras's aspect-ratio crop."""

from __future__ import annotations

__all__ = ["aspect_crop_box"]


def aspect_crop_box(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The centred crop of an image of (`height`, `width`) to the aspect ratio of `size` =
    (target height, target width), as `(top, left, crop height, crop width)`.

    The arithmetic is Keras's `load_img(keep_aspect_ratio=True)`: integer division, the crop
    never larger than the image, the offset rounded down (a 1-pixel excess is cut at the end).
    A crop that rounds down to 0 pixels (a 2-pixel-high strip cropped to a tall aspect) keeps
    the one pixel row or column at Keras's offset, which is the one Keras samples.
    """
    target_height, target_width = size
    crop_height = min(height, (width * target_height) // target_width)
    crop_width = min(width, (height * target_width) // target_height)
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return top, left, max(crop_height, 1), max(crop_width, 1)
