"""Agreement of two reviewers of one predict folder, as ``csvdnet evaluate`` measures raters.

On the subjects both finished (every finding decided): for each grade and total (Fazekas PV and
deep, basal ganglia EPVS grade, Staals and CAA-SVD totals) the quadratic-weighted kappa of
:func:`csvdnet.evaluation.detection.quadratic_weighted_kappa` (the one ``csvdnet evaluate``
reports) and the share of exact agreement; for the model's findings both decided, Cohen's
(unweighted) kappa of accept / reject / unsure.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from csvdnet.errors import CsvdnetInputError
from csvdnet.evaluation.detection import quadratic_weighted_kappa
from csvdnet.review.rating import RatingCache, reviewed_rating
from csvdnet.review.store import DECISIONS, read_review, review_path, reviewers_of, status_of
from csvdnet.review.subject import ReviewSubject, list_subjects

__all__ = ["agreement"]

_ORDINAL = {"fazekas_pv": 4, "fazekas_deep": 4, "epvs_bg_grade": 5, "staals-2014": 5,
            "caa-svd-2016": 7}


def _cohen_kappa(a: list[str], b: list[str]) -> float | None:
    if not a:
        return None
    from sklearn.metrics import cohen_kappa_score  # loads only when used

    if len(set(a) | set(b)) == 1:
        return 1.0  # one and the same class throughout: no disagreement possible
    return float(cohen_kappa_score(a, b, labels=list(DECISIONS)))


def agreement(pred_dir: Path, reviewers: tuple[str, str] | None = None) -> dict[str, Any]:
    """Kappa of two reviewers (default: the two who reviewed most subjects).

    Raises:
        CsvdnetInputError: fewer than two reviewers, or no subject both finished.
    """
    subjects = list_subjects(pred_dir)
    if reviewers is None:
        counts = Counter(r for s in subjects for r in reviewers_of(pred_dir, s))
        if len(counts) < 2:
            raise CsvdnetInputError(pred_dir, "agreement needs two reviewers; found "
                                              f"{', '.join(counts) or 'none'}")
        reviewers = tuple(sorted(n for n, _ in counts.most_common(2)))
    first, second = reviewers
    values: dict[str, tuple[list[int], list[int]]] = {k: ([], []) for k in _ORDINAL}
    decisions: tuple[list[str], list[str]] = ([], [])
    both = 0
    cache = RatingCache()
    for sid in subjects:
        paths = [review_path(pred_dir, sid, r) for r in (first, second)]
        if not all(p.is_file() for p in paths):
            continue
        subject = ReviewSubject.load(pred_dir, sid)
        ids = [f.id for f in subject.findings]
        reviews = [read_review(p) for p in paths]
        if any(status_of(r, ids) != "done" for r in reviews):
            continue
        both += 1
        rated = [reviewed_rating(subject, r, cache) for r in reviews]
        for name in _ORDINAL:
            pair = [r["totals"].get(name) if name in r["totals"] else r["ratings"].get(name)
                    for r in rated]
            if None not in pair:
                values[name][0].append(int(pair[0]))
                values[name][1].append(int(pair[1]))
        for fid in ids:
            decisions[0].append(reviews[0]["decisions"][fid]["decision"])
            decisions[1].append(reviews[1]["decisions"][fid]["decision"])
    if both == 0:
        raise CsvdnetInputError(pred_dir, f"no subject finished by both {first} and {second}")
    items: dict[str, dict[str, Any]] = {}
    for name, (a, b) in values.items():
        items[name] = {"n": len(a), "agreement": float(np.mean(np.equal(a, b))) if a else 0.0,
                       "kappa": quadratic_weighted_kappa(a, b, _ORDINAL[name]) if a else None,
                       "weights": "quadratic"}
    a, b = decisions
    items["finding decisions"] = {"n": len(a), "agreement": float(np.mean(np.equal(a, b)))
                                  if a else 0.0, "kappa": _cohen_kappa(a, b),
                                  "weights": "none"}
    return {"reviewers": [first, second], "subjects": both, "items": items}
