"""Sampling a video to T snippets (method.md §1): test indices, the released training draw."""

import numpy as np
import pytest

from case_fast.data.sampling import sample_test_indices, sample_train_indices
from case_fast.data.sampling import sample_train_batch, sample_train_indices_loop

D = 4           # per-stream width of the fixtures


@pytest.mark.parametrize("tv,T,expected", [
    (10, 5, [0, 2, 4, 6, 8]), (3, 5, [0, 0, 1, 1, 2]), (7, 7, list(range(7))), (1, 4, [0, 0, 0, 0]),
    (750, 750, list(range(750))), (1000, 4, [0, 250, 500, 750]), (5, 2, [0, 2])])
def test_sample_test_indices(tv, T, expected):
    got = sample_test_indices(tv, T)
    assert got.dtype == np.int64 and got.shape == (T,)
    assert got.tolist() == expected
    # the reference float formula gives the same indices
    assert got.tolist() == [int(i * tv / T) for i in range(T)]


def test_sample_train_indices_hand_cases():
    rng = np.random.RandomState(0)
    for _ in range(20):
        assert sample_train_indices(7, 7, rng).tolist() == list(range(7))     # T_v == T
        assert sample_train_indices(1, 5, rng).tolist() == [0] * 5            # T_v == 1
    state = rng.get_state()[1].copy()
    sample_train_indices(7, 7, rng), sample_train_indices(1, 5, rng)
    assert np.array_equal(rng.get_state()[1], state) and rng.get_state()[2] == 624  # no draw
    # T_v < T: lo = [0, 0, 1, 1, 2]; closed ranges [0] [0, 1] [1] [1, 2] [2]
    draws = np.stack([sample_train_indices(3, 5, rng) for _ in range(400)])
    for b, allowed in enumerate([{0}, {0, 1}, {1}, {1, 2}, {2}]):
        assert set(draws[:, b].tolist()) == allowed
    draws = np.stack([sample_train_indices(10, 3, rng) for _ in range(400)])
    assert draws.dtype == np.int64 and draws.shape == (400, 3)
    # closed ranges [0, 3] [3, 6] [6, 9]: a bin can pick the next bin's first index
    for b, (lo, hi) in enumerate([(0, 3), (3, 6), (6, 9)]):
        assert set(draws[:, b].tolist()) == set(range(lo, hi + 1))


def test_sample_train_batch_equals_the_per_bin_loop():
    """The vectorised sampler (one bounded draw for a whole batch) against the per-bin scalar
    reference, and the reference against the released code's draw (``choice(range(a, b + 1))``) on
    the same legacy stream: equal indices and the generator left in the same state."""
    lengths = np.random.default_rng(7)
    for t in (1, 2, 32, 256, 750):
        for _ in range(4):
            tv = lengths.integers(1, 5000, size=int(lengths.integers(1, 6))).tolist()
            tv += [t, max(1, t - 1), t + 1]
            seed = int(lengths.integers(2 ** 32))
            fast, loop, released = (np.random.RandomState(seed) for _ in range(3))
            got = sample_train_batch(tv, t, fast)
            want = np.stack([sample_train_indices_loop(v, t, loop) for v in tv])
            assert got.dtype == np.int64 and got.shape == (len(tv), t)
            np.testing.assert_array_equal(got, want)
            for row, v in zip(want, tv):   # the released random_perturb's draws, bin by bin
                if v == t:
                    continue
                s = np.arange(t) * v / t
                for i in range(t):
                    lo, hi = int(s[i]), (int(s[i + 1]) if i < t - 1 else v - 1)
                    assert row[i] == (released.choice(range(lo, hi + 1)) if hi > lo else lo)
            for a, b in ((fast, loop), (fast, released)):
                assert np.array_equal(a.get_state()[1], b.get_state()[1]) and a.get_state()[2] == b.get_state()[2]


def test_sample_train_indices_bins_large():
    rng = np.random.RandomState(1)
    for tv, T in [(2614, 750), (751, 750), (13, 750), (400, 50)]:
        lo = (np.arange(T) * tv) // T
        hi = np.append(lo[1:], tv - 1)
        for _ in range(5):
            idx = sample_train_indices(tv, T, rng)
            assert idx.shape == (T,) and idx.dtype == np.int64
            assert np.all(idx >= lo) and np.all(idx <= hi) and np.all(idx < tv)


def test_sampling_rejects_empty():
    with pytest.raises(ValueError):
        sample_test_indices(0, 5)
    with pytest.raises(ValueError):
        sample_train_indices(0, 5, np.random.RandomState(0))
