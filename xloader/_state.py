"""Loader state for exact resume: where a loader is, and proof it is the same loader.

# NOTE [ Resume is arithmetic ]
Batch `b` of epoch `e` is a pure function of the dataset, the options and (e, b), so a loader's
whole position is a few integers: the epoch, the next batch, and the position in the epoch's
order that all ranks together have reached (NOTE [ Elastic resume ]). A state also records the options
that shape batches and a fingerprint of the dataset index, so loading it into a loader built on
other data or with other options fails loudly instead of resuming into different batches. The
worker count, threads or processes and the framework are not part of the state: a run saved by
the torch adapter with 2 workers resumes in Keras with 0.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

STATE_VERSION = 2
# Version 1 (before sample-level shards) had no "position"; with one rank it meant the same batches.
_READABLE_VERSIONS = (1, 2)
# Options that change which samples a batch holds. `to_fit`, `rank`, `world_size` and
# `shard_mode` are not among them: prediction may resume a fit state, any rank may load the state
# rank 0 saved, and a run may resume on another number of ranks (NOTE [ Elastic resume ]).
_BATCH_SHAPING_OPTIONS = ("batch_size", "shuffle", "seed", "drop_last", "weights", "replacement")
_SAVED_OPTIONS = (*_BATCH_SHAPING_OPTIONS, "to_fit", "rank", "world_size", "shard_mode")


def weights_digest(weights: np.ndarray | None) -> str | None:
    """What a state keeps of `weights`: a digest of their float64 bytes (None without weights)."""
    return None if weights is None else hashlib.sha256(weights.tobytes()).hexdigest()[:32]


def make_state(
    options: Any, fingerprint: str, num_samples: int, epoch: int, next_batch: int, position: int
) -> dict[str, Any]:
    """The state dict: plain ints, strings, bools and None (JSON-ready). `position` is how much
    of the epoch's order all ranks together have read: NOTE [ Elastic resume ]."""
    saved = {name: getattr(options, name) for name in _SAVED_OPTIONS}
    saved["weights"] = weights_digest(options.weights)
    return {
        "version": STATE_VERSION,
        "epoch": epoch,
        "next_batch": next_batch,
        "position": position,
        "options": saved,
        "dataset": {"num_samples": num_samples, "fingerprint": fingerprint},
    }


def _field(mapping: dict[str, Any], key: str, kind: type, expected: str) -> Any:
    value = mapping[key]
    if kind is int and isinstance(value, np.integer):
        value = int(value)  # e.g. a state whose epoch came from a NumPy computation
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise TypeError(
            f"state[{key!r}] must be {expected}, got {value!r} ({type(value).__name__}). "
            "Pass the dict state_dict() returned (or its JSON round trip)."
        )
    return value


def _count(mapping: dict[str, Any], key: str) -> int:
    value = _field(mapping, key, int, "an int >= 0")
    if value < 0:
        raise ValueError(f"state[{key!r}] must be an int >= 0, got {value}.")
    return value


def check_state(state: object, expected: dict[str, Any]) -> tuple[int, int]:
    """Return (epoch, position) of `state` after checking it was made by a loader like `expected`.

    Raises:
        TypeError: `state` is not a dict, or one of its fields has the wrong type (named).
        ValueError: a missing key, another version, other options or another dataset; the
            message lists each difference as saved vs. here.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}.")
    missing = [key for key in ("version", "epoch", "next_batch", "options", "dataset") if key not in state]
    if missing:
        raise ValueError(f"state is missing {', '.join(missing)}: it was not made by an xloader state_dict().")
    version = _field(state, "version", int, "an int")
    if version not in _READABLE_VERSIONS:
        raise ValueError(f"state has version {version!r}; this xloader reads versions {_READABLE_VERSIONS}.")
    for key in ("options", "dataset"):
        _field(state, key, dict, "a dict")
    saved_options, saved_dataset = state["options"], state["dataset"]
    if version == 1:
        saved_options = {**saved_options, "weights": None, "replacement": True}
        if saved_options.get("world_size") != 1:
            raise ValueError(
                f"the state was saved by an older xloader on world_size={saved_options.get('world_size')!r} ranks, "
                "which split epochs by whole batches; this version splits by samples, so its position cannot be "
                "carried over. Resume from the start of the next epoch with set_epoch(state['epoch'] + 1)."
            )
    differences = []
    for name in _BATCH_SHAPING_OPTIONS:
        saved, here = saved_options.get(name), expected["options"][name]
        if saved != here:
            differences.append(f"{name}: saved {saved!r}, here {here!r}")
    for name in ("num_samples", "fingerprint"):
        saved, here = saved_dataset.get(name), expected["dataset"][name]
        if saved != here:
            differences.append(f"dataset {name}: saved {saved!r}, here {here!r}")
    if differences:
        raise ValueError(
            "the state was saved by a loader with other options or data, so resuming would not give "
            f"the batches of the saved run: {'; '.join(differences)}."
        )
    epoch, next_batch = _count(state, "epoch"), _count(state, "next_batch")
    if version == 1:
        return epoch, min(next_batch * expected["options"]["batch_size"], expected["dataset"]["num_samples"])
    position = _count(state, "position") if "position" in state else None
    if position is None or position > expected["dataset"]["num_samples"]:
        raise ValueError(
            f"state has position {state.get('position')!r}; expected an int from 0 to "
            f"{expected['dataset']['num_samples']} (the samples of the epoch read so far)."
        )
    return epoch, position
