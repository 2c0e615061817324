"""The package's shape: the core imports no framework, public names exist, adapters subclass the real thing."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import xloader

PACKAGE_DIR = Path(xloader.__file__).parent
FRAMEWORKS = ("keras", "torch", "tensorflow", "jax", "albumentations")
# The Keras adapter may also ask the backend's own framework where it runs (rank, world size).
ADAPTERS = {
    "keras.py": {"keras", "jax", "torch"},
    "keras_demo.py": {"keras"},
    "torch.py": {"torch"},
    "torch_demo.py": {"torch"},
    "torch_options.py": {"torch"},
    "torch_workers.py": {"torch"},
}


def test_import_xloader_loads_no_framework():
    code = (
        "import json, sys, xloader, xloader.sources, xloader.testing, xloader.synthetic; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def _imported_top_level_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_adapters_import_their_framework():
    # Lazy (function-level) imports count too: the AST walk sees every import statement.
    offenders = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR).as_posix()
        allowed = set(ADAPTERS.get(relative, set()))
        if relative.startswith("cli/"):
            allowed.add("albumentations")  # the command line builds and loads augmentation pipelines
        # albumentations is allowed lazily nowhere in the core: transforms come from the user.
        found = (_imported_top_level_modules(path) & set(FRAMEWORKS)) - allowed
        if found:
            offenders[relative] = sorted(found)
    assert offenders == {}


def test_all_names_exist_and_are_documented():
    assert len(xloader.__all__) == len(set(xloader.__all__))
    for name in xloader.__all__:
        value = getattr(xloader, name)
        if name != "__version__":
            assert getattr(value, "__doc__", None), f"xloader.{name} has no docstring"


def test_version_matches_the_installed_metadata():
    from importlib.metadata import version

    assert xloader.__version__ == version("xloader")


def test_keras_adapter_is_a_real_pydataset():
    keras = pytest.importorskip("keras")
    import xloader.keras

    assert issubclass(xloader.keras.PyDataset, keras.utils.PyDataset)


def test_torch_adapter_is_a_real_dataloader():
    torch = pytest.importorskip("torch")
    import xloader.torch

    assert issubclass(xloader.torch.DataLoader, torch.utils.data.DataLoader)


def test_errors_are_exceptions_users_can_catch_by_kind():
    assert issubclass(xloader.BadImageError, xloader.XLoaderError)
    assert issubclass(xloader.DatasetError, ValueError)
    assert issubclass(xloader.SampleError, xloader.XLoaderError)
    error = xloader.BadImageError("cannot decode a.jpg: empty file.", path="a.jpg", reason="empty file")
    assert (error.path, error.reason) == ("a.jpg", "empty file")


def test_no_test_module_shadows_a_framework():
    tests_dir = Path(__file__).parent
    assert not {path.stem for path in tests_dir.glob("*.py")} & set(FRAMEWORKS)
