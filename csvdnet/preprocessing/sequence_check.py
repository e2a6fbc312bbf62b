"""Does each sequence look like what it is named? A check of tissue contrasts inside the brain.

Sequences are filed by hand in hospitals, and a FLAIR exported as ``t1.nii.gz`` (with the T1 as
``flair.nii.gz``) is rated by any network without complaint: the WMH volume changes several-fold
and nothing says why. :func:`check_sequences` looks at the preprocessed working-grid volume
(every channel co-registered and z-scored inside the brain mask,
:func:`csvdnet.preprocessing.preprocess_subject_and_mask`) and describes the channels by what
their tissue contrasts make of the in-brain intensities, without any segmentation:

- each channel's distribution inside the brain (:data:`QUANTILES` of its z-scores): CSF, a
  minority of the brain, is a dark tail on FLAIR, T1 and b1000 DWI and a bright tail on T2 and
  SWI; white matter, the majority, sits above grey matter on T1 and below it on the others;
- how each pair of channels co-varies (their correlation inside the brain): T1 against T2 is
  strongly negative (CSF and white matter reversed), FLAIR against DWI positive, and so on.

Every assignment of the sequence names to the channels is scored by the distance of these
features to each sequence's signature (``sequence_signatures.json`` beside this module: mean and
spread of every feature over the 20 subjects of a synthetic cohort, written by
``benchmarks/bench_sequence_check.py --fit``), in standard scores. When another assignment fits
better than the files' own names by more than the signatures' ``margin``, the check says which
channel looks like which sequence. It costs a few hundredths of a second per subject
(``benchmarks/RESULTS.md``).

Limits: only channels with a signature (flair, t1, t2, swi, dwi) take part, at least two of
them. The signatures are measured on the synthetic profiles; real scanners' contrasts vary more
(field strength, TE/TR/TI, fat suppression, SWI phase processing), so a real cohort may need
signatures measured on its own correctly filed subjects (``bench_sequence_check.py --fit`` on
them). A swap of two sequences whose contrasts differ little (T2 and SWI both show CSF bright,
FLAIR and b1000 DWI both show it dark) rests on the size of those contrasts, the most
scanner-dependent part. The check warns; it is no proof that the names are right.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["QUANTILES", "SIGNATURES_PATH", "SequenceCheck", "channel_features",
           "check_sequences", "fit_signatures", "load_signatures", "reload_signatures"]

QUANTILES = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)
"""Quantiles of each channel's in-brain z-scores that describe its distribution."""
SIGNATURES_PATH = Path(__file__).with_name("sequence_signatures.json")
"""The installed signatures (:func:`fit_signatures` output with a ``measured_on`` record)."""
_SAMPLE = 60_000
"""In-brain voxels the features are computed on (a regular subsample)."""
_MIN_VOXELS = 2_000
"""Fewer sampled brain voxels than this describe no contrast: the check is skipped."""
_SPREAD_FLOOR = 0.05
"""Smallest spread a signature feature is given: no feature is trusted beyond this precision."""


@dataclasses.dataclass(frozen=True)
class SequenceCheck:
    """What :func:`check_sequences` found.

    Attributes:
        checked: The channels that took part (those with a signature).
        looks_like: Channel -> the sequence it looks like, for the channels that do not look like
            their names; empty when the names fit (or the check could not run).
        margin: How much better (summed squared standard scores) the best other naming fits
            than the files' names: negative when the names fit best; None when the check could
            not run.
        skipped: Why the check could not run, or None.
    """

    checked: tuple[str, ...]
    looks_like: dict[str, str]
    margin: float | None
    skipped: str | None = None

    @property
    def swapped(self) -> bool:
        """Whether some channel looks like another sequence than its name."""
        return bool(self.looks_like)

    def message(self) -> str | None:
        """One sentence for a report's flags, or None when the names fit."""
        if not self.looks_like:
            return None
        parts = ", ".join(f"the {channel} image looks like {_display(seq)}"
                          for channel, seq in self.looks_like.items())
        return (f"sequence check: {parts} (tissue contrasts inside the brain): were the files "
                "swapped or misnamed? The ratings are unreliable until the names are right")


def _display(sequence: str) -> str:
    return {"flair": "FLAIR", "swi": "SWI", "dwi": "DWI"}.get(sequence, sequence.upper())


def _sample(array: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """``(N, C)`` in-brain voxel values: every ``step``-th voxel along each axis, ``step``
    chosen to leave about :data:`_SAMPLE` of them."""
    count = int(brain.sum())
    step = max(1, int(round((count / _SAMPLE) ** (1 / 3))))
    values = array[::step, ::step, ::step][brain[::step, ::step, ::step]]
    return values.astype(np.float64)


def channel_features(array: np.ndarray, brain: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """The features the check compares: per-channel quantiles and channel correlations.

    Args:
        array: ``(X, Y, Z, C)`` preprocessed volume (z-scored inside the brain).
        brain: ``(X, Y, Z)`` bool brain region it was normalised in.

    Returns:
        ``(quantiles (C, len(QUANTILES)), correlations (C, C))``, or None when the brain holds
        too few voxels to describe.
    """
    values = _sample(array, brain)
    if len(values) < _MIN_VOXELS:
        return None
    # Each channel re-standardised on the sample: the features do not depend on how exactly
    # the preprocessing normalised (clipping, percentiles).
    std = values.std(axis=0)
    std[std == 0] = 1.0
    values = (values - values.mean(axis=0)) / std
    quantiles = np.quantile(values, QUANTILES, axis=0).T
    # Standardised columns: their correlation is the mean product (0 with a constant channel).
    correlations = values.T @ values / len(values)
    return quantiles, correlations


def fit_signatures(subjects: Sequence[tuple[np.ndarray, np.ndarray]],
                   channels: Sequence[str]) -> dict[str, Any]:
    """Measure the signatures on correctly named subjects.

    Args:
        subjects: ``(array, brain)`` of each subject, channels in ``channels`` order.
        channels: The channel names.

    Returns:
        The JSON-ready signatures: per sequence the mean and spread of each quantile, per pair
        of sequences those of their correlation, and the ``margin`` :func:`check_sequences`
        flags above: halfway between the largest ``cost(names) - cost(best other naming)`` of
        these correctly named subjects and the smallest of their pairwise channel swaps.
    """
    quantiles, correlations = [], []
    for array, brain in subjects:
        features = channel_features(array, brain)
        if features is not None:
            quantiles.append(features[0])
            correlations.append(features[1])
    q, r = np.array(quantiles), np.array(correlations)
    signatures: dict[str, Any] = {
        "channels": list(channels), "quantiles": list(QUANTILES), "subjects": len(q),
        "quantile_mean": {c: q[:, i].mean(axis=0).tolist() for i, c in enumerate(channels)},
        "quantile_spread": {c: q[:, i].std(axis=0).tolist() for i, c in enumerate(channels)},
        "correlation_mean": {f"{a}|{b}": float(r[:, i, j].mean())
                             for (i, a), (j, b) in itertools.combinations(enumerate(channels), 2)},
        "correlation_spread": {f"{a}|{b}": float(r[:, i, j].std())
                               for (i, a), (j, b) in itertools.combinations(enumerate(channels),
                                                                            2)},
    }
    names = tuple(channels)
    own = [_best_naming(qq, rr, names, signatures)[1] for qq, rr in zip(q, r)]
    swaps = []
    for i, j in itertools.combinations(range(len(names)), 2):
        order = list(range(len(names)))
        order[i], order[j] = j, i
        swaps += [_best_naming(qq[order], rr[np.ix_(order, order)], names, signatures)[1]
                  for qq, rr in zip(q, r)]
    # The threshold sits halfway between the worst fit of correct names and the best-hidden
    # swap seen on these subjects.
    signatures["identity_margin_max"] = float(max(own))
    signatures["swap_margin_min"] = float(min(swaps))
    signatures["margin"] = (signatures["identity_margin_max"] + signatures["swap_margin_min"]) / 2
    return signatures


def load_signatures(path: Path = SIGNATURES_PATH) -> dict[str, Any] | None:
    """The signatures file's content, or None when csvdnet has none."""
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def _signatures() -> dict[str, Any] | None:
    return load_signatures()


def reload_signatures() -> None:
    """Forget the signatures read so far (after ``--fit`` wrote new ones)."""
    _signatures.cache_clear()


def _tables(signatures: dict[str, Any], names: tuple[str, ...]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Signature tables over ``names``: quantile mean and spread ``(S, Q)``, correlation mean
    and spread ``(S, S)`` (spreads floored at :data:`_SPREAD_FLOOR`)."""
    q_mean = np.array([signatures["quantile_mean"][n] for n in names])
    q_spread = np.maximum(np.array([signatures["quantile_spread"][n] for n in names]),
                          _SPREAD_FLOOR)
    r_mean, r_spread = np.eye(len(names)), np.ones((len(names), len(names)))
    for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
        key = f"{a}|{b}" if f"{a}|{b}" in signatures["correlation_mean"] else f"{b}|{a}"
        r_mean[i, j] = r_mean[j, i] = signatures["correlation_mean"][key]
        r_spread[i, j] = r_spread[j, i] = max(signatures["correlation_spread"][key],
                                              _SPREAD_FLOOR)
    return q_mean, q_spread, r_mean, r_spread


def _namings_costs(quantiles: np.ndarray, correlations: np.ndarray, names: tuple[str, ...],
                   signatures: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Every naming of the channels (``(P, C)`` indices into ``names``, the files' own first)
    and its cost: summed squared standard scores of the features against the signatures."""
    q_mean, q_spread, r_mean, r_spread = _tables(signatures, names)
    count = len(names)
    namings = np.array(list(itertools.permutations(range(count))))
    # per_channel[k, s]: cost of channel k's quantiles if it were sequence s
    per_channel = (((quantiles[:, None, :] - q_mean[None]) / q_spread[None]) ** 2).sum(axis=2)
    costs = per_channel[np.arange(count)[None, :], namings].sum(axis=1)
    for i, j in itertools.combinations(range(count), 2):
        a, b = namings[:, i], namings[:, j]
        costs = costs + ((correlations[i, j] - r_mean[a, b]) / r_spread[a, b]) ** 2
    return namings, costs


def _best_naming(quantiles: np.ndarray, correlations: np.ndarray, names: tuple[str, ...],
                 signatures: dict[str, Any]) -> tuple[tuple[str, ...], float]:
    """The other naming of the channels that fits best, and by how much it beats ``names``
    (negative: ``names`` fit better than any other naming)."""
    namings, costs = _namings_costs(quantiles, correlations, names, signatures)
    best = 1 + int(np.argmin(costs[1:]))  # namings[0] is the identity
    return tuple(names[k] for k in namings[best]), float(costs[0] - costs[best])


def check_sequences(array: np.ndarray, brain: np.ndarray, channels: Sequence[str],
                    signatures: dict[str, Any] | None = None) -> SequenceCheck:
    """Check that each channel looks like the sequence it is named (module docstring).

    Args:
        array: ``(X, Y, Z, C)`` preprocessed volume, channels in ``channels`` order (a blanked
            missing channel is all zeros and takes no part).
        brain: ``(X, Y, Z)`` bool brain region the channels were normalised in.
        channels: Channel names.
        signatures: The signatures to compare with (default: csvdnet's, measured on synthetic
            cohorts).

    Returns:
        The finding; ``skipped`` says why nothing was checked (no signatures, fewer than two
        known channels, a brain too small to describe).
    """
    signatures = signatures if signatures is not None else _signatures()
    if signatures is None:
        return SequenceCheck((), {}, None, "no sequence signatures installed")
    features = channel_features(array, brain)
    if features is None:
        return SequenceCheck((), {}, None, "too few brain voxels to describe the contrasts")
    quantiles, correlations = features
    # A blanked (missing) channel is constant: its quantiles are all 0 after standardising.
    known = [k for k, name in enumerate(channels)
             if name in signatures["quantile_mean"] and np.ptp(quantiles[k]) > 0]
    names = tuple(channels[k] for k in known)
    if len(known) < 2:
        return SequenceCheck(names, {}, None, "fewer than two sequences with a signature")
    best, margin = _best_naming(quantiles[known], correlations[np.ix_(known, known)], names,
                                signatures)
    if margin <= signatures["margin"]:
        return SequenceCheck(names, {}, margin)
    looks_like = {name: other for name, other in zip(names, best) if name != other}
    return SequenceCheck(names, looks_like, margin)
