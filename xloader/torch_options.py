"""How `xloader.torch.DataLoader` reads its options the way torch users write them: the shard
from `torch.distributed`, the seed from torch's RNG, and refusals that name the way to go.
"""

from __future__ import annotations

import multiprocessing
import sys
from typing import Any

import torch
import torch.distributed

from xloader import _opencv
from xloader._random import resolve_seed

__all__: list[str] = []  # helpers of xloader.torch; nothing public here

# What torch's DataLoader takes that xloader decides, and where each job goes instead.
RESERVED = {
    "sampler": "the order comes from shuffle= and seed= (set_epoch for each epoch)",
    "batch_sampler": "batches come from batch_size= and drop_last=",
    "collate_fn": (
        "batches are stacked by xloader; for batch-level augmentation (MixUp, CutMix) pass "
        "batch_transform=xloader.MixUp(...) (or any batch_transform(batch, generator) -> batch), "
        "which runs in the workers"
    ),
    "generator": "the randomness comes from seed= (None draws it once from torch's RNG)",
}


def check_torch_kwargs(torch_kwargs: dict[str, Any]) -> None:
    """Refuse torch options that would decide what xloader decides, saying where each job goes."""
    for name, instead in RESERVED.items():
        if name in torch_kwargs:
            raise TypeError(f"xloader.torch.DataLoader decides {name} itself: {instead}. Do not pass {name}=.")
    if torch_kwargs.get("in_order", True) is not True:
        raise ValueError(
            "in_order=False hands out batches in the order workers finish them, so the batch order "
            "would depend on timing and differ from Keras's; xloader.torch.DataLoader keeps in_order=True."
        )


def distributed_is_running() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def distributed_shard(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world_size): as given, else from `torch.distributed` when it is initialised, else (0, 1)."""
    if rank is not None and world_size is not None:
        return rank, world_size
    if not distributed_is_running():
        if rank is not None or world_size is not None:
            raise ValueError(
                f"pass both rank and world_size, or neither (read from torch.distributed); got rank={rank}, "
                f"world_size={world_size} and torch.distributed is not initialised."
            )
        return 0, 1
    return (
        torch.distributed.get_rank() if rank is None else rank,
        torch.distributed.get_world_size() if world_size is None else world_size,
    )


def _torch_draw() -> int:
    # What torch's DataLoader does for its base seed: one int64 from the default generator.
    return int(torch.empty((), dtype=torch.int64).random_().item())


def loader_seed(seed: int | None, world_size: object) -> tuple[int, bool]:
    """(seed, drawn): `seed`, or one drawn from torch's global RNG (`torch.manual_seed` fixes
    it) when None and not sharded: NOTE [ Unseeded loaders ] in `xloader/_random.py`."""
    return resolve_seed(seed, world_size, draw=_torch_draw)


def refuse_keras_iteration() -> None:
    """Raise if Keras's trainer is iterating the loader (`model.fit(xloader.torch.DataLoader)`).

    Keras 3.15 iterates a torch loader more than once per fit epoch (a build pass, and one
    eager `iter()` after each epoch: fit epoch e got xloader epoch 2e+1 on the torch backend,
    e+1 on JAX), so the model would silently train on other epochs than a torch loop does.
    """
    caller = sys._getframe(2).f_globals.get("__name__", "")
    if caller == "keras" or caller.startswith("keras."):
        raise TypeError(
            "xloader.torch.DataLoader cannot be iterated by Keras (model.fit, evaluate, predict): Keras "
            "iterates a torch loader more than once per epoch, so fit epoch e would train on another "
            "xloader epoch. Pass xloader.keras.PyDataset(source, batch_size=..., shuffle=..., seed=...) "
            "instead, with model.fit(..., shuffle=False): the same batches, bit for bit."
        )


def identity_collate(batch: Any) -> Any:
    """The collate_fn torch is given: batches arrive whole from the core."""
    return batch


class OptionView:
    """A loader attribute that reads the xloader option `name` (`loader.batches.options`);
    torch's `__init__` assigning its own value to it (e.g. `batch_size = None`) is ignored."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, loader: Any, owner: Any = None) -> Any:
        return self if loader is None else getattr(loader.batches.options, self.name)

    def __set__(self, loader: Any, value: Any) -> None:
        pass


class WorkerInit:
    """Pins OpenCV to one thread in a spawn/forkserver worker, then runs the user's
    `worker_init_fn`. A class rather than a closure so spawn can pickle it."""

    def __init__(self, user_fn: Any, pin_opencv: bool):
        self.user_fn = user_fn
        self.pin_opencv = pin_opencv

    def __call__(self, worker_id: int) -> None:
        if self.pin_opencv:  # NOTE [ OpenCV threads in workers ] (xloader/_opencv.py)
            _opencv.pin_one_thread()
        if self.user_fn is not None:
            self.user_fn(worker_id)


def start_method(context: Any) -> str:
    if context is None:
        return multiprocessing.get_start_method()
    return context if isinstance(context, str) else context.get_start_method()
