"""When a report tells the reader that the network's own total contradicts the rules (issue 25).

``report.json`` ``agreement`` records whether the ordinal head's total equals the Staals total of
the measured markers. A head whose class probabilities are near uniform (the shipped model 2:
0.10-0.33 on every held-out subject) differs from the rules on half the subjects without
knowing anything, and a banner on every other report teaches the reader to ignore it. The flag
and the banner are therefore shown only when the head **contradicts** the rules: its total
differs and it gives the rules' total a probability below :data:`CONTRADICTION_PROBABILITY`.
``agreement`` itself is unchanged.
"""

from __future__ import annotations

from typing import Sequence

CONTRADICTION_PROBABILITY = 0.1
"""The head contradicts the rules when it gives their total less than this probability."""


def head_contradicts(agreement: bool | None, class_probabilities: Sequence[float],
                     staals_total: int | None) -> bool:
    """Whether the report flags the ordinal head against the rules (see the module docstring).

    Args:
        agreement: ``report.json`` ``agreement`` (``None``: the Staals total is undecided).
        class_probabilities: The head's ``P(total = k)``, k = 0..4.
        staals_total: The Staals total of the measured markers, or None.
    """
    if agreement is not False or staals_total is None:
        return False
    return float(class_probabilities[staals_total]) < CONTRADICTION_PROBABILITY
