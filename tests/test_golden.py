"""Batches are exactly the pinned golden bytes (tests/golden.py says how they are made)."""

from __future__ import annotations

import json

import pytest
from golden import DIGESTS, digest, golden_loaders, versions


def test_batches_equal_the_golden_digests():
    with open(DIGESTS) as file:
        golden = json.load(file)
    changed = [name for name, batches in golden_loaders().items() if digest(batches) != golden["digests"][name]]
    if changed:
        pytest.fail(
            f"batches of {changed} differ from the golden digests, made with {golden['versions']}; installed: "
            f"{versions()}. A dependency changed a bit of a batch (or xloader did). If intended, regenerate with "
            "`python tests/golden.py --write` and say why in the commit."
        )
    assert sorted(golden["digests"]) == sorted(golden_loaders())
