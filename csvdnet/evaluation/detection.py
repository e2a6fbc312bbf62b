"""Point detection and ordinal agreement: matching predicted to true points, weighted kappa.

Microbleeds and lacunes are judged by the distance between centres (VALDO 2021), and CMB / EPVS
heatmap peaks likewise; the total score by quadratic-weighted Cohen's kappa. Training
validation, the held-out check and ``csvdnet evaluate`` all use these definitions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import optimize, spatial

__all__ = ["MATCH_DISTANCE_MM", "match_pairs", "match_points", "quadratic_weighted_kappa"]

MATCH_DISTANCE_MM = 4.0
"""A predicted point within this distance of a true point finds it: about the radius of a
blooming microbleed plus one working voxel (1.5 mm) of localisation error."""


def match_points(predicted: np.ndarray, true: np.ndarray, spacing: Sequence[float],
                 max_distance_mm: float = MATCH_DISTANCE_MM) -> tuple[int, int, int]:
    """One-to-one matching of predicted to true points within ``max_distance_mm``.

    A minimum-cost assignment where pairs farther than the limit cost more than any set of
    valid pairs maximises the number of matches, then minimises their distances.

    Args:
        predicted: ``(N, 3)`` predicted points, voxel coordinates.
        true: ``(M, 3)`` true points, voxel coordinates of the same grid.
        spacing: Voxel size in mm along each axis (use ``(1, 1, 1)`` for world mm points).
        max_distance_mm: Farthest a match may be.

    Returns:
        ``(true positives, false positives, false negatives)``.
    """
    if len(predicted) == 0 or len(true) == 0:
        return 0, len(predicted), len(true)
    scale = np.asarray(spacing, float)
    distance = spatial.distance.cdist(np.asarray(predicted, float) * scale,
                                      np.asarray(true, float) * scale)
    matched = len(match_pairs(distance, max_distance_mm)[0])
    return matched, len(predicted) - matched, len(true) - matched


def match_pairs(distance: np.ndarray, max_distance_mm: float = MATCH_DISTANCE_MM
                ) -> tuple[np.ndarray, np.ndarray]:
    """The matched pairs of a one-to-one matching (the rule of :func:`match_points`).

    Args:
        distance: ``(N predicted, M true)`` distances in mm (any distance: between centres, or
            from a point to the nearest part of an object).
        max_distance_mm: Farthest a match may be.

    Returns:
        ``(predicted indices, true indices)`` of the matched pairs, in predicted order.
    """
    distance = np.asarray(distance, float)
    if distance.size == 0:
        return np.zeros(0, int), np.zeros(0, int)
    too_far = distance > max_distance_mm
    rows, cols = optimize.linear_sum_assignment(np.where(too_far, 1e9, distance))
    keep = ~too_far[rows, cols]
    return rows[keep], cols[keep]


def quadratic_weighted_kappa(true: Sequence[int], predicted: Sequence[int],
                             num_classes: int) -> float:
    """Cohen's kappa with quadratic disagreement weights ``(i - j)^2 / (K - 1)^2``.

    1 for perfect agreement; 0 for chance-level; 1 if both raters use one and the same class
    (no disagreement possible), 0 if they use one class each that differ.
    """
    observed = np.zeros((num_classes, num_classes))
    np.add.at(observed, (np.asarray(true, int), np.asarray(predicted, int)), 1.0)
    classes = np.arange(num_classes)
    weights = (classes[:, None] - classes[None, :]) ** 2 / (num_classes - 1) ** 2
    expected = np.outer(observed.sum(1), observed.sum(0)) / max(observed.sum(), 1.0)
    chance = float(np.sum(weights * expected))
    if chance == 0.0:
        return float(np.sum(weights * observed) == 0.0)
    return 1.0 - float(np.sum(weights * observed)) / chance
