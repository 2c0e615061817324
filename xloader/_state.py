"""Loader state for exact resume: where a loader is, and proof it is the same loader.

# NOTE [ Resume is arithmetic ]
Batch `b` of epoch `e` is a pure function of the dataset, the options and (e, b), so a loader's
whole position is two integers: the epoch and the next batch. A state also records the options
that shape batches and a fingerprint of the dataset index, so loading it into a loader built on
other data or with other options fails loudly instead of resuming into different batches. The
worker count, threads or processes and the framework are not part of the state: a run saved by
the torch adapter with 2 workers resumes in Keras with 0.
"""

from __future__ import annotations

from typing import Any

STATE_VERSION = 1
# Options that change which samples a batch holds. `to_fit` and `rank` are not among them:
# prediction may resume a fit state, and any rank may load the state rank 0 saved.
_BATCH_SHAPING_OPTIONS = ("batch_size", "shuffle", "seed", "drop_last", "world_size", "shard_mode")


def make_state(options: Any, fingerprint: str, num_samples: int, epoch: int, next_batch: int) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "epoch": epoch,
        "next_batch": next_batch,
        "options": {name: getattr(options, name) for name in (*_BATCH_SHAPING_OPTIONS, "to_fit", "rank")},
        "dataset": {"num_samples": num_samples, "fingerprint": fingerprint},
    }


def check_state(state: object, expected: dict[str, Any], num_batches: int) -> tuple[int, int]:
    """Return (epoch, next_batch) of `state` after checking it was made by a loader like `expected`.

    Raises:
        TypeError: `state` is not a dict.
        ValueError: a missing key, another version, other options or another dataset; the
            message lists each difference as saved vs. here.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}.")
    missing = [key for key in ("version", "epoch", "next_batch", "options", "dataset") if key not in state]
    if missing:
        raise ValueError(f"state is missing {', '.join(missing)}: it was not made by an xloader state_dict().")
    if state["version"] != STATE_VERSION:
        raise ValueError(f"state has version {state['version']!r}; this xloader reads version {STATE_VERSION}.")
    differences = []
    for name in _BATCH_SHAPING_OPTIONS:
        saved, here = state["options"].get(name), expected["options"][name]
        if saved != here:
            differences.append(f"{name}: saved {saved!r}, here {here!r}")
    for name in ("num_samples", "fingerprint"):
        saved, here = state["dataset"].get(name), expected["dataset"][name]
        if saved != here:
            differences.append(f"dataset {name}: saved {saved!r}, here {here!r}")
    if differences:
        raise ValueError(
            "the state was saved by a loader with other options or data, so resuming would not give "
            f"the batches of the saved run: {'; '.join(differences)}."
        )
    epoch, next_batch = state["epoch"], state["next_batch"]
    if not (isinstance(epoch, int) and epoch >= 0 and isinstance(next_batch, int) and 0 <= next_batch <= num_batches):
        raise ValueError(
            f"state has epoch {epoch!r} and next_batch {next_batch!r}; expected 0 <= next_batch <= {num_batches}."
        )
    return epoch, next_batch
