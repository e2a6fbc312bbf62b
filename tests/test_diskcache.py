"""The disk cache of derived arrays: computed once, read back, recomputed when damaged."""

from __future__ import annotations

import numpy as np

from csvdnet.diskcache import cache_dir, cached_arrays


def test_computed_once_then_read_and_recomputed_when_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("CSVDNET_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(6, dtype=np.int16).reshape(2, 3), "b": np.array([True, False])}

    first = cached_arrays("x.npz", ("a", "b"), compute)
    again = cached_arrays("x.npz", ("a", "b"), compute)
    assert len(calls) == 1
    for key in ("a", "b"):
        assert again[key].dtype == first[key].dtype and np.array_equal(again[key], first[key])
    assert len(cached_arrays("x.npz", ("a", "c"), compute)) == 2 and len(calls) == 2  # lacks c
    (tmp_path / "cache" / "x.npz").write_bytes(b"PK\x03\x04 cut short")
    cached_arrays("x.npz", ("a", "b"), compute)
    assert len(calls) == 3 and cached_arrays("x.npz", ("a", "b"), compute)["a"][1, 2] == 5


def test_an_unwritable_cache_only_means_computing_again(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CSVDNET_CACHE", str(blocker))
    calls = []
    for _ in range(2):
        out = cached_arrays("x.npz", ("a",), lambda: calls.append(1) or {"a": np.ones(2)})
        assert np.array_equal(out["a"], np.ones(2))
    assert len(calls) == 2
