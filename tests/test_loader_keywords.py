"""The loader keywords are spelled out in three signatures and handed on once
(NOTE [ One list of loader keywords ] in xloader/batching.py): the three must agree."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import xloader as xl
from xloader.batching import loader_keywords

# The adapters read these from the framework when given None (`Batches` takes 0 and 1).
FROM_THE_FRAMEWORK = {"rank", "world_size"}
BATCHES = inspect.signature(xl.Batches).parameters
OPTION_NAMES = ["batch_size", "shuffle", "seed", "drop_last", "to_fit", "rank", "world_size", "shard_mode",
                "weights", "replacement"]  # fmt: skip


def test_the_handed_on_keywords_are_the_loader_options_fields():
    arguments = {name: object() for name in [*OPTION_NAMES, "self", "dataset", "workers", "batch_transform"]}
    picked = loader_keywords(arguments)
    assert list(picked) == OPTION_NAMES
    assert all(picked[name] is arguments[name] for name in OPTION_NAMES)


@pytest.mark.parametrize("adapter", ["keras", "torch"])
def test_each_adapter_takes_every_batches_keyword_with_the_same_default(adapter):
    module = pytest.importorskip(f"xloader.{adapter}")
    cls = module.PyDataset if adapter == "keras" else module.DataLoader
    parameters = inspect.signature(cls).parameters
    for name in [*OPTION_NAMES, "batch_transform"]:
        assert parameters[name].kind == inspect.Parameter.KEYWORD_ONLY, name
        expected = None if name in FROM_THE_FRAMEWORK else BATCHES[name].default
        assert parameters[name].default == expected, name


def test_batches_hands_every_keyword_to_its_options():
    data = xl.ArrayDataset(np.arange(12).reshape(12, 1), np.arange(12))
    batches = xl.Batches(data, batch_size=5, shuffle=True, seed=np.int64(3), drop_last=True, to_fit=False,
                         rank=1, world_size=2, shard_mode="drop")  # fmt: skip
    options = batches.options
    assert (options.batch_size, options.shuffle, options.seed, options.drop_last, options.to_fit) == (5, True, 3, True, False)
    assert (options.rank, options.world_size, options.shard_mode, options.weights, options.replacement) == (
        1, 2, "drop", None, True,
    )  # fmt: skip
    assert type(options.seed) is int
