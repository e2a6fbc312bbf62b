"""Ordinal decoding in numpy: the CORAL head's class and probabilities, without TensorFlow.

The numpy twin of :func:`csvdnet.models.coral_head.ordinal_decode`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ordinal_class", "ordinal_probabilities"]


def ordinal_probabilities(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class and cumulative probabilities from CORAL cumulative logits (numpy, no TensorFlow).

    The class probabilities are exactly those of the TF decoding
    (:func:`csvdnet.models.coral_head.ordinal_decode`): differences of consecutive
    ``sigmoid(logits)``, clipped at 0 and renormalised, which only matters for logits that are
    not rank-consistent (the CORAL head never gives such logits). The cumulative probabilities
    returned are those of the class probabilities, ``P(y > k) = sum_{j > k} P(y = j)``: equal to
    ``sigmoid(logits)`` for rank-consistent logits and non-increasing in every case, so a report
    never shows two that disagree.

    Args:
        logits: ``(K - 1,)`` cumulative logits (or ``(B, K - 1)``).

    Returns:
        ``(class probabilities (K,), cumulative probabilities (K - 1,))`` (with the batch axis
        first when given one).
    """
    sigmoid = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    upper = np.concatenate([np.ones_like(sigmoid[..., :1]), sigmoid], axis=-1)
    lower = np.concatenate([sigmoid, np.zeros_like(sigmoid[..., :1])], axis=-1)
    probabilities = np.maximum(upper - lower, 0.0)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    cumulative = np.clip(1.0 - np.cumsum(probabilities, axis=-1)[..., :-1], 0.0, 1.0)
    return probabilities, cumulative


def ordinal_class(logits: np.ndarray) -> int | np.ndarray:
    """Predicted class of CORAL logits: the number of ``sigmoid(logits)`` above 0.5.

    The numpy twin of the class from :func:`csvdnet.models.coral_head.ordinal_decode`; for
    rank-consistent logits it is also the number of cumulative probabilities of
    :func:`ordinal_probabilities` above 0.5.
    """
    counts = np.sum(np.asarray(logits, dtype=np.float64) > 0.0, axis=-1)
    return int(counts) if np.ndim(counts) == 0 else counts
