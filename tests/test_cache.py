"""The decoded cache: bit-identical batches in both adapters, fresh after a file changes, no torn
entry after a killed writer, a clear message when the dataset does not fit."""

from __future__ import annotations

import gc
import glob
import multiprocessing
import os
import shutil
import signal

import cv2
import numpy as np
import pytest
from PIL import Image

import xloader as xl
import xloader.cache
from xloader._cache_file import CacheFile
from xloader.cache import files_key, image_sample

SIZE = (24, 24)


class FlipAndShift:
    """A random transform with no albumentations import: flips and adds a per-sample offset.
    With `die_flag`, the first call in a worker process that renames that file away kills its
    own process (the loader may compute a first batch in the parent)."""

    def __init__(self, die_flag: str | None = None):
        self.die_flag, self.parent = die_flag, os.getpid()

    def set_random_state(self, random_generator, py_random) -> None:
        self.rng = random_generator

    def __call__(self, **data):
        if self.die_flag is not None and os.getpid() != self.parent:
            try:
                os.rename(self.die_flag, self.die_flag + ".used")  # exactly one caller wins
                os.kill(os.getpid(), signal.SIGKILL)
            except FileNotFoundError:
                pass
        image = data["image"]
        if self.rng.random() < 0.5:
            image = image[:, ::-1]
        return {"image": (image.astype(np.int16) + int(self.rng.integers(0, 9))).clip(0, 255).astype(np.uint8)}


@pytest.fixture()
def root(tmp_path, class_root) -> str:
    """A private copy of the session's 28-image folder (tests here change files)."""
    return shutil.copytree(class_root, tmp_path / "images")


def cache_argument(kind: str, tmp_path) -> str:
    return "memory" if kind == "memory" else str(tmp_path / "cache")


def reference(root, epochs=3, **options):
    batches = xl.Batches(xl.ImageFolder(root, image_size=SIZE, **options), batch_size=4, shuffle=True, seed=7)
    return [[batches.get_batch(epoch, b) for b in range(len(batches))] for epoch in range(epochs)]


def assert_epochs(got, want, nchw):
    for epoch, (got_epoch, want_epoch) in enumerate(zip(got, want, strict=True)):
        assert len(got_epoch) == len(want_epoch), f"epoch {epoch}"
        for (x, y), (ex, ey) in zip(got_epoch, want_epoch, strict=True):
            np.testing.assert_array_equal(np.asarray(x), ex.transpose(0, 3, 1, 2) if nchw else ex)
            np.testing.assert_array_equal(np.asarray(y), ey)


def torch_epochs(source, epochs=3, **options):
    from xloader.torch import DataLoader

    loader = DataLoader(source, batch_size=4, shuffle=True, seed=7, num_workers=2, **options)
    out = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        out.append([(x.numpy().copy(), y.numpy().copy()) for x, y in loader])
    return out


def keras_epochs(source, epochs=3, processes=True, **options):
    from xloader.keras import PyDataset

    out = []
    with PyDataset(
        source, batch_size=4, shuffle=True, seed=7, workers=2, use_multiprocessing=processes, **options
    ) as ds:
        for _ in range(epochs):
            out.append([tuple(np.array(part) for part in ds[b]) for b in range(len(ds))])
            ds.on_epoch_end()
    return out


def cache_file(source, with_masks=False):
    """The source's cache file (of images, or of images and masks), as this process maps it."""
    sample = source._cached_sample(0) if with_masks else image_sample(source.decoder, source.describe(0))
    return source.decoded_cache._open(source, sample.options, sample.nbytes)


def published(source, with_masks=False) -> int:
    """How many entries of the source's cache file are complete."""
    seq = cache_file(source, with_masks)._seq
    return int(((seq > 0) & (seq % 2 == 0)).sum())


@pytest.mark.parametrize("kind", ["memory", "directory"])
def test_torch_two_workers_three_epochs_equal_uncached(root, tmp_path, kind):
    want = reference(root, transform=FlipAndShift())
    source = xl.ImageFolder(root, image_size=SIZE, transform=FlipAndShift(), cache=cache_argument(kind, tmp_path))
    assert_epochs(torch_epochs(source), want, nchw=True)
    assert published(source) == 28  # filled by the workers, under fork, for the parent too


@pytest.mark.parametrize(("kind", "start"), [("memory", "forkserver"), ("directory", "fork")])
def test_keras_two_processes_three_epochs_equal_uncached(root, tmp_path, kind, start):
    want = reference(root, transform=FlipAndShift())
    source = xl.ImageFolder(root, image_size=SIZE, transform=FlipAndShift(), cache=cache_argument(kind, tmp_path))
    assert_epochs(keras_epochs(source, multiprocessing_context=start), want, nchw=False)
    assert published(source) == 28  # filled by the workers (forkserver: they found the file by name)


def test_keras_threads_and_a_second_run_read_the_directory_cache(root, tmp_path):
    want = reference(root, epochs=2)
    first = xl.ImageFolder(root, image_size=SIZE, cache=tmp_path / "cache")
    assert_epochs(keras_epochs(first, epochs=2, processes=False), want, nchw=False)
    second = xl.ImageFolder(root, image_size=SIZE, cache=tmp_path / "cache")
    assert published(second) == 28
    assert_epochs(torch_epochs(second, epochs=2), want, nchw=True)
    assert len(glob.glob(str(tmp_path / "cache" / "*.cache"))) == 1


def test_a_touched_file_is_decoded_again(root, tmp_path):
    path = os.path.join(root, "astronaut", "astronaut.0.jpg")
    index = xl.ImageFolder(root, image_size=SIZE).filepaths.index(path)
    first = xl.ImageFolder(root, image_size=SIZE, cache=tmp_path / "cache")
    old = first.load(index, seed=0, epoch=0, with_targets=False)[0]
    np.testing.assert_array_equal(first.load(index, seed=0, epoch=0, with_targets=False)[0], old)
    stat = os.stat(path)
    cv2.imwrite(path, np.full((50, 70, 3), 200, np.uint8))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = xl.ImageFolder(root, image_size=SIZE, cache=tmp_path / "cache")
    new = second.load(index, seed=0, epoch=0, with_targets=False)[0]
    np.testing.assert_array_equal(new, np.full((24, 24, 3), 200, np.uint8))
    np.testing.assert_array_equal(first.load(index, seed=0, epoch=0, with_targets=False)[0], new)


def test_another_decode_option_gets_another_file(root, tmp_path):
    for interpolation in ("bilinear", "area"):
        source = xl.ImageFolder(root, image_size=SIZE, interpolation=interpolation, cache=tmp_path / "cache")
        want = xl.ImageFolder(root, image_size=SIZE, interpolation=interpolation)
        for index in (0, 27):
            np.testing.assert_array_equal(
                source.load(index, seed=0, epoch=0, with_targets=False)[0],
                want.load(index, seed=0, epoch=0, with_targets=False)[0],
            )
    assert len(glob.glob(str(tmp_path / "cache" / "*.cache"))) == 2


def _die_while_filling(source, index: int) -> None:
    def fill_half_then_die(self, offset, image, mask):
        self._bytes[offset : offset + image.nbytes // 2] = 255
        os.kill(os.getpid(), signal.SIGKILL)

    CacheFile._fill = fill_half_then_die  # this forked child only
    source.load(index, seed=0, epoch=0, with_targets=False)


def test_a_writer_killed_mid_entry_leaves_nothing_a_reader_accepts(root, tmp_path):
    source = xl.ImageFolder(root, image_size=SIZE, cache=tmp_path / "cache")
    for index in range(3):
        source.load(index, seed=0, epoch=0, with_targets=False)
    child = multiprocessing.get_context("fork").Process(target=_die_while_filling, args=(source, 3))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    file = cache_file(source)
    assert int(file._seq[3]) == 1  # being written: odd
    assert file.get(3, files_key((source.describe(3),))) is None
    assert file.get(2, files_key((source.describe(2),))) is not None
    fresh = xl.ImageFolder(root, image_size=SIZE, cache=tmp_path / "cache")
    want = xl.ImageFolder(root, image_size=SIZE).load(3, seed=0, epoch=0, with_targets=False)[0]
    np.testing.assert_array_equal(fresh.load(3, seed=0, epoch=0, with_targets=False)[0], want)  # rewritten
    assert int(file._seq[3]) == 4  # written as 3, published as 4
    np.testing.assert_array_equal(file.get(3, files_key((source.describe(3),)))[0], want)


def test_a_worker_killed_in_the_first_epoch_then_a_restart_gives_the_unbroken_batches(root, tmp_path):
    from xloader.torch import DataLoader

    flag = str(tmp_path / "die")
    open(flag, "w").close()
    want = reference(root, transform=FlipAndShift())
    dying = xl.ImageFolder(root, image_size=SIZE, transform=FlipAndShift(flag), cache=tmp_path / "cache")
    with pytest.raises(RuntimeError, match="DataLoader worker .* exited unexpectedly|killed by signal"):
        list(DataLoader(dying, batch_size=4, shuffle=True, seed=7, num_workers=2, timeout=60))
    assert os.path.exists(flag + ".used")
    restarted = xl.ImageFolder(root, image_size=SIZE, transform=FlipAndShift(flag), cache=tmp_path / "cache")
    assert_epochs(torch_epochs(restarted), want, nchw=True)


def test_memory_cache_file_is_removed_with_its_source(root):
    source = xl.ImageFolder(root, image_size=SIZE, cache="memory")
    source.load(0, seed=0, epoch=0, with_targets=False)
    pattern = os.path.join("/dev/shm", source.decoded_cache.prefix + "*")
    assert len(glob.glob(pattern)) == 1
    path = glob.glob(pattern)[0]
    assert (os.getpid(), path) in xloader.cache._OPEN
    del source
    gc.collect()
    assert glob.glob(pattern) == []
    assert (os.getpid(), path) not in xloader.cache._OPEN  # unmapped too: the memory is freed


def test_a_dataset_over_max_bytes_is_refused_with_the_figures(root, tmp_path):
    source = xl.ImageFolder(root, image_size=SIZE, cache=xl.DecodedCache(tmp_path / "c", max_bytes=10_000))
    with pytest.raises(
        xl.DatasetError,
        match=r"^the decoded cache of 28 samples of 1,728 bytes needs 56,576 bytes, over max_bytes=10,000\. "
        r"Pass a larger max_bytes, a smaller image_size, or cache=None\.$",
    ):
        source.load(0, seed=0, epoch=0, with_targets=False)


def test_variable_sizes_are_cached_until_full_then_decoded_with_one_warning(root, tmp_path):
    plain = xl.ImageFolder(root, image_size=None)
    source = xl.ImageFolder(root, image_size=None, cache=xl.DecodedCache(tmp_path / "c", max_bytes=200_000))
    with pytest.warns(UserWarning, match=r"the decoded cache .*\.cache is full \(\d[\d,]* bytes of images\)"):
        for index in range(len(source)):
            source.load(index, seed=0, epoch=0, with_targets=False)
    stored = published(source)
    assert 0 < stored < 28
    for index in range(len(source)):  # from the cache or decoded again: the same pixels
        np.testing.assert_array_equal(
            source.load(index, seed=0, epoch=0, with_targets=False)[0],
            plain.load(index, seed=0, epoch=0, with_targets=False)[0],
        )


def test_image_mask_folder_caches_images_and_masks_and_sees_a_changed_mask(seg_dirs, tmp_path):
    images, masks = shutil.copytree(seg_dirs[0], tmp_path / "i"), shutil.copytree(seg_dirs[1], tmp_path / "m")
    plain = xl.ImageMaskFolder(images, masks, image_size=SIZE, num_classes=3, mask_mode="one_hot")
    cached = xl.ImageMaskFolder(
        images, masks, image_size=SIZE, num_classes=3, mask_mode="one_hot", cache=tmp_path / "c"
    )

    def assert_same():
        for index in range(len(plain)):
            x, y = cached.load(index, seed=0, epoch=0, with_targets=True)
            ex, ey = plain.load(index, seed=0, epoch=0, with_targets=True)
            np.testing.assert_array_equal(x, ex)
            np.testing.assert_array_equal(y, ey)

    for _ in range(2):
        assert_same()
    assert published(cached, with_masks=True) == len(plain)
    mask_path = os.path.join(masks, "0003.png")
    stat = os.stat(mask_path)
    Image.fromarray(np.full((40, 60), 2, np.uint8)).save(mask_path)  # a new mask, of the wrong size
    os.utime(mask_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    index = cached.image_files.index("0003.jpg")
    with pytest.raises(xl.BadImageError, match="0003.png"):  # decoded again, so checked again
        cached.load(index, seed=0, epoch=0, with_targets=True)
    image = cv2.imread(os.path.join(images, "0003.jpg"))
    Image.fromarray(np.full(image.shape[:2], 2, np.uint8)).save(mask_path)
    x, y = cached.load(index, seed=0, epoch=0, with_targets=True)
    np.testing.assert_array_equal(y, np.broadcast_to(np.array([0, 0, 1], np.uint8), (24, 24, 3)))
    assert_same()


def test_every_image_source_takes_a_cache(class_root, seg_dirs, tmp_path):
    from test_subsets import every_source

    with pytest.warns(UserWarning):  # MultiMaskFolder and RLEMasks skip the images without masks
        plain = every_source(class_root, seg_dirs, tmp_path)
    images_dir, _ = seg_dirs
    size, cache = (24, 32), str(tmp_path / "c")
    with pytest.warns(UserWarning):
        cached = {
            "MultiMaskFolder": xl.MultiMaskFolder(
                images_dir, str(tmp_path / "by_class"), layout="by_class", image_size=size, unpaired="skip", cache=cache
            ),
            "RLEMasks": xl.RLEMasks(
                images_dir, str(tmp_path / "masks.csv"), image_size=size, unpaired="skip", cache=cache
            ),
        }
    cached["ImageManifest"] = xl.ImageManifest(
        str(tmp_path / "train.csv"), base_dir=class_root, image_size=size, cache="memory", downscale_on_decode=True
    )
    uncached_reduced = xl.ImageManifest(
        str(tmp_path / "train.csv"), base_dir=class_root, image_size=size, downscale_on_decode=True
    )
    for name, source in cached.items():
        want = uncached_reduced if name == "ImageManifest" else plain[name]
        for _ in range(2):  # filling, then reading
            for index in range(len(source)):
                x, y = source.load(index, seed=0, epoch=0, with_targets=True)
                ex, ey = want.load(index, seed=0, epoch=0, with_targets=True)
                np.testing.assert_array_equal(x, ex)
                np.testing.assert_array_equal(y, ey)
        assert published(source) == len(source), name


def test_cache_argument_errors(root):
    with pytest.raises(TypeError, match=r"^cache must be None, 'memory' or a directory path, got 3\.$"):
        xl.ImageFolder(root, image_size=SIZE, cache=3)
    with pytest.raises(ValueError, match=r"^max_bytes must be a positive int \(bytes\) or None, got 0\.$"):
        xl.DecodedCache("memory", max_bytes=0)
    a_file = os.path.join(root, "astronaut", "astronaut.0.jpg")
    with pytest.raises(
        ValueError, match=r"^cache '.*astronaut\.0\.jpg' is a file; pass a directory \(made if missing\) or 'memory'\.$"
    ):
        xl.ImageFolder(root, image_size=SIZE, cache=a_file)


def test_bad_files_skipped_through_a_cache(root, tmp_path):
    bad = os.path.join(root, "coffee", "coffee.3.jpg")
    with open(bad, "wb") as file:
        file.write(b"not an image")
    with pytest.warns(UserWarning, match="1 of 28 files cannot be read"):
        source = xl.ImageFolder(root, image_size=SIZE, on_bad_file="skip", cache=tmp_path / "c")
    assert len(source) == 27
    assert bad not in source.filepaths
    assert published(source) == 0  # the pruned index has its own, new file; filled as samples load
    source.load(0, seed=0, epoch=0, with_targets=False)
    assert published(source) == 1


def test_threads_filling_the_same_entries_at_once_agree_with_uncached(root):
    from concurrent.futures import ThreadPoolExecutor

    plain = xl.ImageFolder(root, image_size=SIZE)
    cached = xl.ImageFolder(root, image_size=SIZE, cache="memory")
    order = [index for _ in range(4) for index in range(len(plain))]  # every sample asked 4 times, at once

    def load(index):
        return index, cached.load(index, seed=0, epoch=0, with_targets=False)[0]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(load, order))
    for index, image in results:
        np.testing.assert_array_equal(image, plain.load(index, seed=0, epoch=0, with_targets=False)[0])
    assert published(cached) == 28
    assert len(cached.decoded_cache._files) == 1  # one open file for all threads


def _mapping_kib(pid: int, path: str) -> tuple[int, int]:
    """(Rss, Pss) in KiB of `pid`'s mappings of `path`, from /proc/<pid>/smaps."""
    rss = pss = 0
    inside = False
    with open(f"/proc/{pid}/smaps") as file:
        for line in file:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
                inside = line.rstrip("\n").endswith(path) or line.rstrip("\n").endswith(path + " (deleted)")
            elif inside and fields[0] == "Rss:":
                rss += int(fields[1])
            elif inside and fields[0] == "Pss:":
                pss += int(fields[1])
    return rss, pss


@pytest.mark.parametrize("start", ["fork", "forkserver"])
def test_memory_cache_is_counted_once_across_workers(root, start):
    from xloader.cli._proc import process_tree
    from xloader.torch import DataLoader

    source = xl.ImageFolder(root, image_size=(96, 96), cache="memory")
    loader = DataLoader(
        source,
        batch_size=4,
        shuffle=True,
        seed=0,
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context=start,
    )
    for epoch in range(3):  # filled in the first pass; then each worker reads what the other wrote
        loader.set_epoch(epoch)
        for _batch in loader:
            pass
    path = cache_file(source).path
    mapped = {pid: _mapping_kib(pid, path) for pid in process_tree()}
    mapped = {pid: kib for pid, kib in mapped.items() if kib[0]}
    data_kib = 28 * 96 * 96 * 3 / 1024  # 756 KiB of images
    total_rss, total_pss = sum(r for r, _ in mapped.values()), sum(p for _, p in mapped.values())
    assert len(mapped) == 3  # the main process and both workers map the one file
    assert data_kib <= total_pss <= data_kib + 16  # counted once: + the header and table pages
    assert total_rss >= 1.5 * total_pss  # pages resident in several processes: shared, not copied
    del loader
