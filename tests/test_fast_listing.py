"""The C directory listing (xloader/index/_fastlist.c) gives exactly the Python listing's result.

Every other indexing test (against Keras's own order, links, loops, bad names) runs the C path
where it is built; these compare the two paths directly, on names chosen to split them if either
one sorted, filtered or classified differently.
"""

from __future__ import annotations

import errno
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xloader.index import _walk

fastlist = _walk._fastlist
needs_c = pytest.mark.skipif(fastlist is None, reason="the C listing is not built here")
EXTENSIONS = tuple(sorted(extension.encode() for extension in _walk.IMAGE_EXTENSIONS))


def c_scan(directory: str, follow_links: bool, prefix: str = "") -> tuple[list[str], list[str]]:
    return fastlist.scan_directory(directory, follow_links, EXTENSIONS, prefix)


def python_scan(directory: str, follow_links: bool, prefix: str = "") -> tuple[list[str], list[str]]:
    return _walk._scan_directory_python(directory, follow_links, prefix, _walk.IMAGE_EXTENSIONS)


def both(directory: str, follow_links: bool, prefix: str = "") -> tuple[list[str], list[str]]:
    """The C result, after checking it equals Python's (sub-directories in any order)."""
    files, subdirectories = c_scan(directory, follow_links, prefix)
    expected_files, expected_subdirectories = python_scan(directory, follow_links, prefix)
    assert files == expected_files
    assert sorted(subdirectories) == sorted(expected_subdirectories)
    return files, subdirectories


def test_the_c_listing_is_built_and_used_where_ci_requires_it():
    """CI (.ci/run) requires it; elsewhere a machine without a C compiler falls back to Python."""
    if fastlist is None and os.environ.get("XLOADER_REQUIRE_C_LISTING") != "1":
        pytest.skip("xloader/index/_fastlist.c is not built here (no C compiler?): files are listed in Python")
    assert fastlist is not None, "xloader/index/_fastlist.c was not compiled: pip install -e . needs a C compiler"
    assert _walk._c_listing_applies(_walk.IMAGE_EXTENSIONS)


@needs_c
def test_names_sort_in_python_str_order_and_extensions_match_any_case(tmp_path):
    names = [
        "b.jpg",
        "B.JPG",
        "a.Jpeg",
        "é.png",
        "z.png",
        "Z.png",
        "日本.tif",
        "🐱.tiff",
        "e\u0301.png",
        "10.bmp",
        "9.ppm",
    ]
    names += ["x.jpg.txt", "noextension", "jpg", "trailing.", ".hidden.jpg", "photo.jpgx", "a.\u212apg"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    files, _ = both(str(tmp_path), follow_links=False)
    assert files == sorted(
        ["b.jpg", "B.JPG", "a.Jpeg", "é.png", "z.png", "Z.png", "日本.tif", "🐱.tiff", "e\u0301.png", "10.bmp", "9.ppm"]
    )


@needs_c
def test_a_name_that_is_not_utf8_decodes_like_fsdecode_and_sorts_like_python(tmp_path):
    base = os.fsencode(str(tmp_path))
    for name in [b"\xff.jpg", b"a.jpg", b"\xc3\xa9.jpg", b"\xed\xa0\x80.png", b"z.png"]:
        with open(os.path.join(base, name), "wb"):
            pass
    files, _ = both(str(tmp_path), follow_links=False)
    assert os.fsdecode(b"\xff.jpg") in files and files == sorted(files)
    files, _ = both(str(tmp_path), follow_links=False, prefix="cats/é/")
    assert files[0].startswith("cats/é/") and files == sorted(files)


@needs_c
def test_many_names_sharing_long_prefixes_sort_like_python(tmp_path):
    """Beyond 32 names the C sort is a radix sort on 8-byte chunks: prefixes of 8, 16 and 24
    shared bytes, names ending inside a chunk, and digits that order differently by length."""
    rng = random.Random(0)
    names = [
        f"IMG_2024_{rng.randrange(10 ** rng.randrange(1, 9))}{rng.choice(['', '_x', 'é', 'Z'])}.jpg" for _ in range(900)
    ]
    names += [f"IMG_2024_shared_prefix_{i}.png" for i in range(100)] + ["IMG.png", "IMG_2024.png", "I.jpg"]
    names = list(set(names))
    rng.shuffle(names)
    for name in names:
        (tmp_path / name).write_bytes(b"")
    files, _ = both(str(tmp_path), follow_links=False, prefix="p/")
    assert files == ["p/" + name for name in sorted(names)]


@needs_c
def test_links_dangling_links_and_hidden_directories(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "real" / "x.png").write_bytes(b"")
    os.symlink(tmp_path / "real", tmp_path / "linked")  # a link to a directory
    os.symlink(tmp_path / "real", tmp_path / "folder.png")  # a directory whatever its name says
    os.symlink(tmp_path / "real" / "x.png", tmp_path / "file_link.png")
    os.symlink(tmp_path / "missing.png", tmp_path / "dangling.png")  # listed: it fails at decode, by name
    assert both(str(tmp_path), follow_links=False) == (["dangling.png", "file_link.png"], ["real"])
    files, subdirectories = both(str(tmp_path), follow_links=True)
    assert sorted(subdirectories) == ["folder.png", "linked", "real"]


@needs_c
def test_the_whole_walk_is_the_same_through_either_listing(tmp_path, monkeypatch):
    for folder in ["a", "a/b", "a-c", "a/b/c", "z"]:
        (tmp_path / folder).mkdir()
        for index in range(3):
            (tmp_path / folder / f"{index}.jpg").write_bytes(b"")
    os.symlink("..", tmp_path / "a" / "b" / "loop")  # a loop, listed once when followed
    for follow_links in (False, True):
        fast = _walk.list_image_files(tmp_path, follow_links=follow_links, prefix="class/")  # a Path works too
        monkeypatch.setattr(_walk, "_fastlist", None)
        slow = _walk.list_image_files(str(tmp_path), follow_links=follow_links, prefix="class/")
        monkeypatch.undo()
        assert fast == slow and len(fast) == len(set(fast))
        assert fast[:4] == ["class/a/0.jpg", "class/a/1.jpg", "class/a/2.jpg", "class/a-c/0.jpg"]


@needs_c
def test_errors_are_the_oserrors_python_raises_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        c_scan(str(tmp_path / "absent"), False)
    assert raised.value.filename == str(tmp_path / "absent")
    os.symlink("self", tmp_path / "self")  # stat says ELOOP: not a dangling link, an error
    failures = []
    for scan in (c_scan, python_scan):
        with pytest.raises(OSError) as raised:
            scan(str(tmp_path), False)
        failures.append((type(raised.value), raised.value.errno, raised.value.filename))
    assert failures[0] == failures[1] == (OSError, errno.ELOOP, str(tmp_path / "self"))


@needs_c
def test_extensions_the_c_test_cannot_judge_like_python_are_left_to_python():
    assert not _walk._c_listing_applies(frozenset({"jpg", "mkv"}))  # U+212A lowers to "k"
    assert not _walk._c_listing_applies(frozenset({"jpg", "jpé"}))
    assert not _walk._c_listing_applies(frozenset({"jpg", "abcdefghijlmnopq"}))  # 16 characters
    assert not _walk._c_listing_applies(frozenset(["jpg"] + [f"e{i}" for i in range(32)]))
    assert _walk._c_listing_applies(frozenset(["jpg"] + [f"e{i}" for i in range(31)]))


@needs_c
@pytest.mark.parametrize("prefix", ["\udcc3", "\udcc3\udca9/", "\ud800/", "a\x00/", "é/", "cats/"])
def test_any_prefix_is_joined_as_python_joins_it(tmp_path, prefix):
    """A prefix from an undecodable folder name holds surrogate escapes; joined as bytes they
    could merge with a name's first byte into another character."""
    (tmp_path / "x.jpg").write_bytes(b"")
    with open(os.path.join(os.fsencode(str(tmp_path)), b"\xa9.jpg"), "wb"):
        pass
    files, _ = both(str(tmp_path), follow_links=False, prefix=prefix)
    assert files == sorted(prefix + name for name in ["x.jpg", os.fsdecode(b"\xa9.jpg")])


@needs_c
def test_an_entry_path_too_long_to_stat_fails_as_in_python(tmp_path, monkeypatch):
    """DirEntry stats a link by its whole path: past PATH_MAX that is ENAMETOOLONG, in both."""
    deep = str(tmp_path)
    while len(deep) < 3800:
        deep = os.path.join(deep, "a" * 200)
    os.makedirs(deep)
    (tmp_path / "f.jpg").write_bytes(b"")
    monkeypatch.chdir(deep)  # the link's whole path is too long to create it by
    os.symlink(tmp_path / "f.jpg", "L" * 250 + ".jpg")
    failures = []
    for scan in (c_scan, python_scan):
        with pytest.raises(OSError) as raised:
            scan(deep, False)
        failures.append((raised.value.errno, raised.value.filename))
    assert failures[0] == failures[1] and failures[0][0] == errno.ENAMETOOLONG


names = st.text(alphabet=st.sampled_from("aAzZ09._-éÉ日🐱\u0301\u212a"), min_size=1, max_size=12)
suffixes = st.sampled_from(["", ".jpg", ".JPG", ".Png", ".tiff", ".txt", ".jpeg.", "."])


@needs_c
@settings(max_examples=60, deadline=None)
@given(st.sets(st.tuples(names, suffixes).map("".join), max_size=80))
def test_any_set_of_names_lists_the_same(tmp_path_factory, chosen):
    directory = tmp_path_factory.mktemp("names")
    for name in chosen:
        if name not in (".", ".."):
            (directory / name).write_bytes(b"")
    both(str(directory), follow_links=False)
