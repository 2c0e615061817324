"""Weighted sampling (`weights=`): WeightedRandomSampler's draws, deterministic, sharded,
resumable and the same in Keras's `fit` and a torch loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import xloader as xl

CHI2_1DOF_99 = 6.635  # the chi-square distribution's 99th percentile with one degree of freedom


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory) -> xl.ImageFolder:
    """90 images of class "common", 10 of class "rare" (9:1), 8x8 PNGs of distinct values."""
    root = tmp_path_factory.mktemp("imbalanced")
    for name, count in (("common", 90), ("rare", 10)):
        (root / name).mkdir()
        for i in range(count):
            value = i if name == "common" else 128 + i
            Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(root / name / f"{i:03d}.png")
    return xl.ImageFolder(str(root), image_size=(8, 8))


def test_class_balanced_weights_are_one_over_the_class_count(imbalanced):
    weights = xl.class_balanced_weights(imbalanced)
    np.testing.assert_array_equal(weights, np.r_[np.full(90, 1 / 90), np.full(10, 1 / 10)])
    assert not weights.flags.writeable
    np.testing.assert_array_equal(xl.class_balanced_weights([1, 1, 0]), [0.5, 0.5, 1.0])


def test_class_balanced_draws_are_balanced_within_the_chi_square_99_percent_bound(imbalanced):
    batches = xl.Batches(imbalanced, batch_size=25, seed=0, weights=xl.class_balanced_weights(imbalanced))
    labels = np.concatenate([y for epoch in range(20) for _, y in (batches.get_batch(epoch, b) for b in range(4))])
    counts = np.bincount(labels, minlength=2)
    expected = len(labels) / 2
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert counts.tolist() == [1006, 994]  # golden: a change of the draw stream shows here
    assert chi2 < CHI2_1DOF_99
    unweighted = np.concatenate([y for _, y in xl.Batches(imbalanced, batch_size=25)])
    assert np.bincount(unweighted).tolist() == [90, 10]


def test_draws_are_with_replacement_fixed_by_seed_and_epoch_and_without_replacement_a_permutation():
    data = xl.ArrayDataset(np.arange(6, dtype=np.int64))
    weights = [1, 1, 1, 1, 1, 5]
    plan = xl.Batches(data, batch_size=6, seed=0, weights=weights).plan
    assert [plan.order(e).tolist() for e in (0, 1)] == [[5, 2, 5, 5, 0, 5], [1, 4, 5, 5, 5, 5]]  # golden
    again = xl.Batches(data, batch_size=6, seed=0, weights=np.array(weights, np.float32)).plan
    np.testing.assert_array_equal(again.order(1), plan.order(1))
    without = xl.Batches(data, batch_size=6, seed=0, weights=weights, replacement=False).plan
    assert sorted(without.order(0).tolist()) == list(range(6))


def test_ranks_share_the_draws_by_position_as_distributed_sampler(imbalanced):
    weights = xl.class_balanced_weights(imbalanced)
    single = xl.Batches(imbalanced, batch_size=100, seed=3, weights=weights).batch_indices(2, 0)
    ranks = [xl.Batches(imbalanced, batch_size=10, seed=3, weights=weights, rank=r, world_size=3) for r in range(3)]
    for rank, batches in enumerate(ranks):
        mine = np.concatenate([batches.batch_indices(2, b) for b in range(len(batches))])
        np.testing.assert_array_equal(mine, np.r_[single, single[:2]][rank::3])  # pad wraps 2 draws


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"weights": [1.0] * 99},
            ValueError,
            "weights has 99 entries but the dataset has 100 samples; give one per sample.",
        ),
        (
            {"weights": [[1.0]] * 100},
            TypeError,
            "weights must be a 1-D sequence of numbers (one per sample), got list of shape (100, 1) and dtype float64.",
        ),
        ({"weights": ["a"] * 100}, TypeError, "weights must be a 1-D sequence of numbers (one per sample), got list."),
        ({"weights": [1.0] * 99 + [-1.0]}, ValueError, "weights must be finite and >= 0; weights[99] is -1.0."),
        ({"weights": [1.0] * 99 + [np.nan]}, ValueError, "weights must be finite and >= 0; weights[99] is nan."),
        ({"weights": [0] * 100}, ValueError, "weights are all zero: at least one sample needs a positive weight."),
        (
            {"weights": [0] + [1] * 99, "replacement": False},
            ValueError,
            "weights[0] is 0, but replacement=False draws every sample once per epoch. Remove the sample (xloader.Subset) or pass replacement=True.",
        ),
        (
            {"weights": [1] * 100, "shuffle": True},
            ValueError,
            "weights= draws each epoch's samples at random already; shuffle=True cannot be combined with it (as torch's sampler and shuffle options). Pass shuffle=False.",
        ),
    ],
)
def test_bad_weights_are_refused_with_the_value_and_the_fix(imbalanced, options, error, message):
    with pytest.raises(error) as raised:
        xl.Batches(imbalanced, batch_size=10, **options)
    assert str(raised.value) == message


def test_class_balanced_weights_need_integer_class_labels():
    with pytest.raises(TypeError) as raised:
        xl.class_balanced_weights(xl.ArrayDataset(np.zeros((3, 2))))
    assert str(raised.value) == (
        "ArrayDataset has no integer class labels to balance. Pass the class index of each sample as an array instead."
    )
    with pytest.raises(
        TypeError, match=r"^class labels must be 1-D non-negative integers, got shape \(2,\) and dtype float64\.$"
    ):
        xl.class_balanced_weights(np.array([0.0, 1.0]))


def test_keras_fit_trains_on_the_torch_loops_batches_and_a_resumed_loader_continues_exactly(imbalanced):
    import keras

    from xloader.keras import PyDataset
    from xloader.torch import DataLoader

    options = {"batch_size": 16, "seed": 5, "weights": xl.class_balanced_weights(imbalanced)}

    class Recorder(keras.Model):
        def __init__(self):
            super().__init__()
            self.head = keras.layers.Dense(2)
            self.recorded: list[tuple[np.ndarray, np.ndarray]] = []

        def call(self, x, training=False):
            return self.head(keras.ops.reshape(keras.ops.cast(x, "float32"), (-1, 192)))

        def train_step(self, *args):
            x, y = args[-1]
            self.recorded.append((keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y)))
            return super().train_step(*args)

    model = Recorder()
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with PyDataset(imbalanced, workers=2, **options) as ds:
        model.fit(ds, epochs=2, shuffle=False, verbose=0)
    loader = DataLoader(imbalanced, layout="NHWC", num_workers=0, **options)
    torch_batches = [(x.numpy(), y.numpy()) for _ in range(2) for x, y in loader]
    assert len(model.recorded) == len(torch_batches) == 14  # 7 batches an epoch, 2 epochs
    for (x, y), (x_torch, y_torch) in zip(model.recorded, torch_batches, strict=True):
        np.testing.assert_array_equal(y, y_torch)
        np.testing.assert_array_equal(x, x_torch)

    stopped = DataLoader(imbalanced, layout="NHWC", num_workers=2, **options)
    iterator = iter(stopped)
    for _ in range(3):
        next(iterator)
    state = json.loads(json.dumps(stopped.state_dict()))
    del iterator
    resumed = DataLoader(imbalanced, layout="NHWC", num_workers=0, **options)
    resumed.load_state_dict(state)
    rest = [(x.numpy(), y.numpy()) for x, y in resumed] + [(x.numpy(), y.numpy()) for x, y in resumed]
    assert len(rest) == 4 + 7
    for (x, y), (x_want, y_want) in zip(rest, torch_batches[3:], strict=True):
        np.testing.assert_array_equal(y, y_want)
        np.testing.assert_array_equal(x, x_want)


class AddNoise:
    """A transform: adds integers from the sample's generator (`xloader.Transform` protocol)."""

    def set_random_state(self, generator, py_random):
        self.generator = generator

    def __call__(self, **data):
        return {**data, "image": data["image"] + self.generator.integers(0, 1000, data["image"].shape)}


def test_a_sample_drawn_twice_in_an_epoch_is_augmented_differently_each_time():
    data = xl.ArrayDataset(np.zeros((4, 3), np.int64), np.arange(4), transform=AddNoise())
    weighted = xl.Batches(data, batch_size=4, seed=0, weights=[1, 1, 1, 1])
    assert weighted.plan.order(0).tolist() == [3, 0, 2, 3]  # golden: sample 3 drawn twice
    np.testing.assert_array_equal(weighted.plan.occurrences(0), [0, 0, 0, 1])
    x, _ = weighted.get_batch(0, 0)
    plain = xl.Batches(data, batch_size=4, seed=0).get_batch(0, 0)[0]
    np.testing.assert_array_equal(x[:3], plain[[3, 0, 2]])  # first draws: the unweighted stream
    assert x[0].tolist() != x[3].tolist()  # the second copy of sample 3 is augmented anew
