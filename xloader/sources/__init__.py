"""Sources: what samples exist and how sample `i` becomes arrays."""

from xloader.index._walk import IMAGE_EXTENSIONS
from xloader.index.subset import Subset, split
from xloader.source import Source
from xloader.sources.arrays import ArrayDataset
from xloader.sources.file_list import FileList, load_file
from xloader.sources.image_folder import ImageFolder
from xloader.sources.image_mask_folder import ImageMaskFolder
from xloader.sources.manifest import ImageManifest
from xloader.sources.multi_mask import MultiMaskFolder
from xloader.sources.rle import RLEMasks, rle_decode, rle_encode

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArrayDataset",
    "FileList",
    "ImageFolder",
    "ImageManifest",
    "ImageMaskFolder",
    "MultiMaskFolder",
    "RLEMasks",
    "Source",
    "Subset",
    "load_file",
    "rle_decode",
    "rle_encode",
    "split",
]
