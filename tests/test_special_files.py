"""Only regular files are indexed or read (issue 19): named pipes, sockets and devices, directly
or through a link, never block or flood a read; `FileList` ids stay inside `root`; the number
of validation threads is a setting.

Every scenario that could hang if the rule broke runs in a subprocess with a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import cv2
import numpy as np
import pytest

import xloader as xl
from xloader.decoding import read_bytes
from xloader.index import _walk
from xloader.validation import validation_workers

PNG = cv2.imencode(".png", np.full((4, 6, 3), 90, np.uint8))[1].tobytes()


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocking open() in the main thread."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def special_folder(folder) -> None:
    """real.jpg and a link to it, a dangling link, a FIFO, a socket, a link to /dev/zero and one
    to the FIFO, all named .jpg, and a sub-folder."""
    os.makedirs(folder / "sub")
    (folder / "real.jpg").write_bytes(PNG)
    os.symlink(folder / "real.jpg", folder / "link_to_real.jpg")
    os.symlink(folder / "missing.jpg", folder / "dangling.jpg")
    os.mkfifo(folder / "pipe.jpg")
    os.symlink(folder / "pipe.jpg", folder / "link_to_pipe.jpg")
    os.symlink("/dev/zero", folder / "zero.jpg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "socket.jpg"))
    server.close()  # the socket file stays


LISTED = ["dangling.jpg", "link_to_real.jpg", "real.jpg"]  # a dangling link fails at read, by name


@pytest.mark.parametrize("follow_links", [False, True])
def test_listing_leaves_out_pipes_sockets_devices_and_links_to_them_in_c_and_python(tmp_path, follow_links):
    special_folder(tmp_path / "c")
    directory = str(tmp_path / "c")
    files, subdirectories = _walk._scan_directory_python(directory, follow_links, "", _walk.IMAGE_EXTENSIONS)
    assert (files, subdirectories) == (LISTED, ["sub"])
    if _walk._fastlist is not None:
        extensions = tuple(sorted(e.encode() for e in _walk.IMAGE_EXTENSIONS))
        assert _walk._fastlist.scan_directory(directory, follow_links, extensions, "") == (LISTED, ["sub"])
    with deadline(10):
        assert _walk.list_image_files(directory, follow_links=follow_links) == LISTED


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("pipe.jpg", "a named pipe (FIFO)"),
        ("link_to_pipe.jpg", "a named pipe (FIFO)"),
        ("zero.jpg", "a character device"),
        ("socket.jpg", "a socket"),
        ("sub", "a directory"),
    ],
)
def test_read_bytes_checks_the_file_type_before_opening(tmp_path, name, kind):
    special_folder(tmp_path / "c")
    path = str(tmp_path / "c" / name)
    reason = f"it is {kind}, not a regular file; only regular files are read"
    with deadline(10), pytest.raises(xl.BadImageError, match=re.escape(f"cannot read {path}: {reason}.")) as caught:
        read_bytes(path)
    assert (caught.value.path, caught.value.reason) == (path, reason)
    assert read_bytes(str(tmp_path / "c" / "link_to_real.jpg")) == PNG


SCENARIO = textwrap.dedent(
    """
    import json, os, subprocess, sys, time, warnings
    import xloader as xl

    root = sys.argv[1]
    folder = os.path.join(root, "cats")
    times, out = {}, {}

    def timed(name, function):
        start = time.monotonic()
        try:
            out[name] = function()
        except Exception as error:
            out[name] = f"{type(error).__name__}: {error}"
        times[name] = time.monotonic() - start

    timed("raise", lambda: xl.ImageFolder(root, image_size=None).filenames)
    def skipping():
        dataset = xl.ImageFolder(root, image_size=None, on_bad_file="skip")
        return dataset.filenames, [os.path.basename(path) for path, _ in dataset.skipped]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        timed("skip", skipping)
    timed("iterate", lambda: [int(y[0]) for _, y in xl.Batches(xl.ImageFolder(root, image_size=None), batch_size=1)])
    os.mkfifo(os.path.join(folder, "pipe.npy"))
    ids = ["real.jpg", "pipe.jpg", "zero.jpg", "pipe.npy"]
    timed("file_list_raise", lambda: xl.Batches(xl.FileList(ids, [0, 1, 2, 3], root=folder), batch_size=3).get_batch(0, 0)[1].tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        timed("file_list_skip", lambda: xl.FileList(ids, [0, 1, 2, 3], root=folder, on_bad_file="skip").skipped)
    command = [sys.executable, "-m", "xloader", "inspect", root, "--json"]
    timed("inspect", lambda: json.loads(subprocess.run(command, capture_output=True, text=True, timeout=60).stdout))
    print(json.dumps({"times": times, "out": out}))
    """
)


def test_a_fifo_and_a_dev_zero_link_in_a_class_folder_never_hang(tmp_path):
    special_folder(tmp_path / "photos" / "cats")
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(tmp_path / "photos")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    slow = {name: seconds for name, seconds in result["times"].items() if seconds >= 10}
    assert slow == {}
    out = result["out"]
    expected = [os.path.join("cats", name) for name in LISTED]
    assert out["raise"] == expected
    assert out["skip"] == [expected[1:], ["dangling.jpg"]]
    # The dangling link is listed and fails by name, as a file deleted after indexing does.
    assert out["iterate"].startswith("BadImageError: cannot read ") and "dangling.jpg: file not found" in out["iterate"]
    folder = str(tmp_path / "photos" / "cats")
    assert out["file_list_raise"].startswith(
        f"BadImageError: cannot read {folder}/pipe.jpg: it is a named pipe (FIFO), not a regular file"
    )
    assert out["file_list_skip"] == [
        [f"{folder}/pipe.jpg", "it is a named pipe (FIFO), not a regular file; only regular files are read"],
        [f"{folder}/zero.jpg", "it is a character device, not a regular file; only regular files are read"],
        [f"{folder}/pipe.npy", "it is a named pipe (FIFO), not a regular file; only regular files are read"],
    ]
    report = out["inspect"]
    assert (report["num_samples"], report["ok"]) == (3, False)
    assert [(bad["path"], bad["reason"]) for bad in report["bad_files"]] == [
        (
            f"{folder}/dangling.jpg",
            "file not found (was it moved or deleted after the dataset was indexed?)",
        )
    ]


# --- FileList ids stay inside root -----------------------------------------------------------------


def test_file_list_ids_that_leave_root_are_refused(tmp_path):
    root = str(tmp_path / "data")
    expected = (
        f"ids must stay inside root {root!r} once joined to it; 2 do not: "
        f"{'../../../../../../../../../../etc/passwd'!r} leads to '/etc/passwd', '/etc/hostname' leads to "
        "'/etc/hostname'. Remove '..' steps and absolute paths from the ids, or pass root=None and give full paths as ids."
    )
    with pytest.raises(xl.DatasetError) as caught:
        xl.FileList(["a", "../../../../../../../../../../etc/passwd", "/etc/hostname"], root=root)
    assert str(caught.value) == expected
    inside = xl.FileList(["a/../b", "c..d", "./e"], root=root, suffix=".npy")
    assert [inside.describe(i) for i in range(3)] == [
        os.path.join(root, n) for n in ["a/../b.npy", "c..d.npy", "./e.npy"]
    ]
    assert xl.FileList(["../x.npy"]).describe(0) == "../x.npy"  # without root, ids are paths as given


# --- validation threads --------------------------------------------------------------------------------


def test_validation_threads_default_to_one_per_core_and_follow_the_setting(monkeypatch):
    monkeypatch.delenv("XLOADER_VALIDATION_WORKERS", raising=False)
    assert validation_workers() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("XLOADER_VALIDATION_WORKERS", "3")
    assert validation_workers() == 3
    assert validation_workers(5) == 5  # the argument wins
    monkeypatch.setenv("XLOADER_VALIDATION_WORKERS", "lots")
    with pytest.raises(
        ValueError,
        match=re.escape("XLOADER_VALIDATION_WORKERS must be a positive int (validation threads), got 'lots'."),
    ):
        validation_workers()
    with pytest.raises(
        ValueError, match=re.escape("workers must be a positive int or None (one thread per core), got 0.")
    ):
        validation_workers(0)


def test_skip_validation_runs_on_the_configured_threads(tmp_path, monkeypatch):
    names: set[str] = set()

    def slow_load(path):
        names.add(threading.current_thread().name)
        time.sleep(0.01)
        return np.zeros((2, 2, 3), np.uint8)

    monkeypatch.setenv("XLOADER_VALIDATION_WORKERS", "3")
    xl.FileList([str(i) for i in range(30)], load=slow_load, on_bad_file="skip")
    assert sorted(names) == [f"xloader-validate_{i}" for i in range(3)]


def test_an_error_stops_validation_after_the_samples_in_flight(monkeypatch):
    calls = []

    def failing_load(path):
        calls.append(path)
        if path == "0":
            raise ZeroDivisionError("a bug in my loader")
        time.sleep(0.005)
        return np.zeros((2, 2, 3), np.uint8)

    monkeypatch.setenv("XLOADER_VALIDATION_WORKERS", "2")
    with pytest.raises(xl.SampleError, match="a bug in my loader"):
        xl.FileList([str(i) for i in range(1000)], load=failing_load, on_bad_file="skip")
    assert sorted(calls, key=int) == ["0", "1", "2", "3"]  # 2 threads x 2 submitted ahead; pool.map ran all 1000
