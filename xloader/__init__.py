"""xloader: image batches that are bit-identical in Keras 3 and PyTorch.

The core (this package) imports neither framework: `xloader.keras` and `xloader.torch` are the
adapters, imported explicitly.
"""

from xloader.batch_transforms import CutMix, MixUp, RandomChoice
from xloader.batching import Batch, Batches, BatchTransform, LoaderOptions
from xloader.cache import DecodedCache
from xloader.errors import BadImageError, DatasetError, SampleError, WorkerDiedError, XLoaderError
from xloader.sampling import EpochPlan, class_balanced_weights
from xloader.shards import PackResult, TarShards, pack
from xloader.source import (
    SupportsEpochOrder,
    SupportsFusedNormalize,
    SupportsImageTargets,
    SupportsPaths,
    SupportsSampleKeys,
)
from xloader.sources import (
    ArrayDataset,
    FileList,
    ImageFolder,
    ImageManifest,
    ImageMaskFolder,
    MultiMaskFolder,
    RLEMasks,
    Source,
    Subset,
    load_file,
    rle_decode,
    rle_encode,
    split,
)
from xloader.storage import StorageError
from xloader.transforms import Transform

__version__ = "0.1.0"

__all__ = [
    "ArrayDataset",
    "BadImageError",
    "Batch",
    "BatchTransform",
    "Batches",
    "CutMix",
    "DatasetError",
    "DecodedCache",
    "EpochPlan",
    "FileList",
    "ImageFolder",
    "ImageManifest",
    "ImageMaskFolder",
    "LoaderOptions",
    "MixUp",
    "MultiMaskFolder",
    "PackResult",
    "RLEMasks",
    "RandomChoice",
    "SampleError",
    "Source",
    "StorageError",
    "Subset",
    "SupportsEpochOrder",
    "SupportsFusedNormalize",
    "SupportsImageTargets",
    "SupportsPaths",
    "SupportsSampleKeys",
    "TarShards",
    "Transform",
    "WorkerDiedError",
    "XLoaderError",
    "class_balanced_weights",
    "load_file",
    "pack",
    "rle_decode",
    "rle_encode",
    "split",
    "__version__",
]
