"""Shared fixtures: small real-photo datasets generated once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# In-process Keras tests use the torch backend; each backend is tested in its own process by test_parity.
os.environ.setdefault("KERAS_BACKEND", "torch")

import pytest

from xloader.synthetic import make_image_folder, make_segmentation_folders


@pytest.fixture(scope="session")
def class_root(tmp_path_factory) -> str:
    """4 classes x 7 JPEG crops of scikit-image photos (28 images, 96-160 px)."""
    return make_image_folder(tmp_path_factory.mktemp("classes"), images_per_class=7)


@pytest.fixture(scope="session")
def seg_dirs(tmp_path_factory) -> tuple[str, str]:
    """22 JPEG images with palette-PNG class-index masks (classes 0, 1, 2)."""
    return make_segmentation_folders(tmp_path_factory.mktemp("seg"), count=22)
