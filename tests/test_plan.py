"""The epoch plan and `Batches`: golden orders, coverage, option checks, order independence."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from xloader import ArrayDataset, Batches, EpochPlan, LoaderOptions
from xloader._random import epoch_permutation, sample_generators

# Golden values: if one of these changes, every user's batches changed. That needs a new
# major version and a line in the changelog, not an updated literal.
GOLDEN_PERMUTATIONS = {
    (0, 0): [6, 2, 1, 5, 7, 0, 9, 3, 8, 4],
    (0, 1): [9, 0, 6, 7, 4, 3, 8, 5, 1, 2],
    (1, 0): [0, 2, 7, 9, 1, 3, 4, 8, 6, 5],
}


@pytest.mark.parametrize(("seed", "epoch"), sorted(GOLDEN_PERMUTATIONS))
def test_shuffle_order_is_the_golden_literal(seed, epoch):
    assert epoch_permutation(seed, epoch, 10).tolist() == GOLDEN_PERMUTATIONS[(seed, epoch)]
    plan = EpochPlan(10, batch_size=4, shuffle=True, seed=seed, drop_last=False)
    assert (
        np.concatenate([plan.batch_indices(epoch, b) for b in range(3)]).tolist() == GOLDEN_PERMUTATIONS[(seed, epoch)]
    )


def test_sample_random_state_is_the_golden_literal():
    numpy_generator, python_random = sample_generators(0, 0, 0)
    assert numpy_generator.integers(0, 1000, 5).tolist() == [5, 23, 432, 601, 146]
    assert python_random.random() == 0.14515533461573882


def test_seed_and_epoch_are_not_added():
    # seed 1 / epoch 0 and seed 0 / epoch 1 would coincide if the two were summed.
    assert epoch_permutation(1, 0, 100).tolist() != epoch_permutation(0, 1, 100).tolist()
    a, _ = sample_generators(1, 0, 0)
    b, _ = sample_generators(0, 1, 0)
    assert a.integers(0, 2**62) != b.integers(0, 2**62)


@pytest.mark.parametrize("num_samples", [1, 7, 10, 33])
@pytest.mark.parametrize("batch_size", [1, 3, 10, 64])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_once_per_epoch(num_samples, batch_size, drop_last, shuffle):
    if drop_last and num_samples < batch_size:
        with pytest.raises(ValueError, match="leave no batch. Use a smaller batch_size, or drop_last=False.$"):
            Batches(ArrayDataset(np.arange(num_samples)), batch_size=batch_size, drop_last=True)
        return
    plan = EpochPlan(num_samples, batch_size=batch_size, shuffle=shuffle, seed=3, drop_last=drop_last)
    expected_batches = num_samples // batch_size if drop_last else -(-num_samples // batch_size)
    assert len(plan) == expected_batches
    for epoch in range(3):
        served = np.concatenate([plan.batch_indices(epoch, b) for b in range(len(plan))])
        assert len(served) == len(set(served.tolist()))  # no duplicates
        if drop_last:
            assert len(served) == expected_batches * batch_size
            assert served.tolist() == plan.order(epoch)[: len(served)].tolist()
        else:
            assert sorted(served.tolist()) == list(range(num_samples))
        assert all(len(plan.batch_indices(epoch, b)) == batch_size for b in range(len(plan) - 1))


def test_unshuffled_order_is_dataset_order_every_epoch():
    plan = EpochPlan(5, batch_size=2, shuffle=False, seed=0, drop_last=False)
    for epoch in (0, 1, 7):
        assert [plan.batch_indices(epoch, b).tolist() for b in range(3)] == [[0, 1], [2, 3], [4]]


def test_epochs_have_different_orders():
    plan = EpochPlan(50, batch_size=50, shuffle=True, seed=0, drop_last=False)
    assert plan.batch_indices(0, 0).tolist() != plan.batch_indices(1, 0).tolist()


def test_batch_index_out_of_range_and_negative_epoch():
    plan = EpochPlan(10, batch_size=4, shuffle=True, seed=0, drop_last=False)
    with pytest.raises(IndexError, match="batch 3 is out of range: this loader has 3 batches per epoch"):
        plan.batch_indices(0, 3)
    with pytest.raises(IndexError):
        plan.batch_indices(0, -1)
    with pytest.raises(ValueError, match="epoch must be >= 0, got -1"):
        plan.batch_indices(-1, 0)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int >= 1, got 2.0"),
        ({"batch_size": True}, TypeError, "batch_size must be an int >= 1, got True"),
        ({"batch_size": 2, "seed": -1}, ValueError, "seed must be a non-negative int, got -1"),
        ({"batch_size": 2, "seed": "0"}, TypeError, "seed must be a non-negative int, got '0'"),
        ({"batch_size": 2, "shuffle": 1}, TypeError, "shuffle must be True or False, got 1"),
        ({"batch_size": 2, "drop_last": None}, TypeError, "drop_last must be True or False, got None"),
        ({"batch_size": 2, "to_fit": "yes"}, TypeError, "to_fit must be True or False, got 'yes'"),
    ],
)
def test_invalid_options_are_refused_with_the_value(options, error, message):
    with pytest.raises(error, match=message):
        LoaderOptions(**options)
    with pytest.raises(error, match=message):
        Batches(ArrayDataset(np.arange(4)), **options)


def test_options_are_frozen():
    options = LoaderOptions(batch_size=2)
    with pytest.raises(AttributeError):
        options.batch_size = 3  # type: ignore[misc]


def test_numpy_integer_seed_is_accepted():
    a = Batches(ArrayDataset(np.arange(10)), batch_size=4, shuffle=True, seed=np.int64(5))
    b = Batches(ArrayDataset(np.arange(10)), batch_size=4, shuffle=True, seed=5)
    np.testing.assert_array_equal(a.get_batch(2, 1), b.get_batch(2, 1))


def test_non_source_dataset_is_refused():
    with pytest.raises(TypeError, match="dataset must be an xloader source.*got list"):
        Batches([1, 2, 3], batch_size=2)


def _counting_transform():
    import albumentations as A

    return A.Compose([A.RandomBrightnessContrast(p=1.0), A.HorizontalFlip(p=0.5), A.Affine(rotate=(-20, 20), p=1.0)])


@pytest.fixture(scope="module")
def augmented_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(23, 16, 16, 3), dtype=np.uint8)
    return Batches(
        ArrayDataset(images, np.arange(23), transform=_counting_transform()), batch_size=5, shuffle=True, seed=11
    )


def test_batches_do_not_depend_on_call_order(augmented_batches):
    keys = [(epoch, b) for epoch in range(2) for b in range(len(augmented_batches))]
    forward = {key: augmented_batches.get_batch(*key) for key in keys}
    backward = {key: augmented_batches.get_batch(*key) for key in reversed(keys)}
    for key in keys:
        np.testing.assert_array_equal(forward[key][0], backward[key][0])
        np.testing.assert_array_equal(forward[key][1], backward[key][1])


def test_batches_from_threads_equal_serial(augmented_batches):
    keys = [(epoch, b) for epoch in range(3) for b in range(len(augmented_batches))] * 2
    serial = [augmented_batches.get_batch(*key) for key in keys]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda key: augmented_batches.get_batch(*key), keys))
    for (x_serial, y_serial), (x_thread, y_thread) in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(x_serial, x_thread)
        np.testing.assert_array_equal(y_serial, y_thread)


def test_augmentation_changes_with_epoch_not_with_position(augmented_batches):
    # Sample i gets the same augmentation wherever the shuffle puts it within an epoch,
    # and a new one in the next epoch.
    def augmented_sample(epoch, index):
        for b in range(len(augmented_batches)):
            x, y = augmented_batches.get_batch(epoch, b)
            if index in y.tolist():
                return x[y.tolist().index(index)]
        raise AssertionError(index)

    unshuffled = Batches(augmented_batches.dataset, batch_size=23, shuffle=False, seed=11)
    x0, y0 = unshuffled.get_batch(0, 0)
    np.testing.assert_array_equal(augmented_sample(0, 7), x0[7])
    assert not np.array_equal(augmented_sample(1, 7), x0[7])


def test_iteration_advances_the_epoch_after_a_full_pass():
    batches = Batches(ArrayDataset(np.arange(6), np.arange(6)), batch_size=4, shuffle=True, seed=0)
    first = [y.tolist() for _, y in batches]
    assert batches.epoch == 1
    second = [y.tolist() for _, y in batches]
    assert batches.epoch == 2
    assert first == [batches.batch_indices(0, b).tolist() for b in range(2)]
    assert second == [batches.batch_indices(1, b).tolist() for b in range(2)]
    batches.set_epoch(0)
    assert [y.tolist() for _, y in batches] == first
    np.testing.assert_array_equal(batches[1][1], batches.get_batch(1, 1)[1])


@pytest.mark.parametrize(
    ("bad_epoch", "error"), [(-1, ValueError), (1.0, TypeError), (True, TypeError), ("1", TypeError)]
)
def test_set_epoch_refuses_non_epochs(bad_epoch, error):
    batches = Batches(ArrayDataset(np.arange(6)), batch_size=4)
    with pytest.raises(error, match="epoch must be a non-negative int"):
        batches.set_epoch(bad_epoch)


def test_to_fit_false_gives_inputs_only():
    batches = Batches(ArrayDataset(np.arange(6) * 10, np.arange(6)), batch_size=4, to_fit=False)
    x = batches.get_batch(0, 1)
    assert isinstance(x, np.ndarray)
    assert x.tolist() == [40, 50]


def test_source_without_targets_gives_inputs_only():
    assert isinstance(Batches(ArrayDataset(np.arange(6)), batch_size=4).get_batch(0, 0), np.ndarray)
