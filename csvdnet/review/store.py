"""``review.json``: one reviewer's decisions on one subject, written atomically at each change.

Where: ``PRED_DIR/<subject>/review/<reviewer>/review.json`` (a second reviewer of the same subject
writes beside the first, never over it). Every change (a decision, an added finding, a grade)
rewrites the whole file through :func:`csvdnet.fsutil.write_text_atomic` (temporary file, fsync,
rename, folder fsync) before the server answers, so a kill -9 of the server, or a closed browser,
loses no decision the page showed as saved.

Format (``"format": "csvdnet-review"``, ``"version": 1``)::

    subject, reviewer            who reviewed what
    model: {id, sha256}          the model whose findings were reviewed (from report.json)
    report_created               report.json's "created": a newer predict run is a new review
    started, updated             UTC ISO 8601 times
    decisions: {finding id: {decision: accept | reject | unsure, at}}
    added: [{id: "added:<n>", task, world: [x, y, z] mm, radius_mm (null for cmb / epvs points),
             region, side, at}]
    grades: {fazekas_pv, fazekas_deep, epvs_bg_grade}: only the grades the reviewer set; a grade
             not set is measured from the reviewed findings as predict measures it
    log: [{at, what}]            every change in order (an audit trail)

A finding id is ``<task>:<index>`` (the index column of predict's TSVs) or ``added:<n>``; a
decision ``reject`` on an added finding withdraws it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from pathlib import Path
from typing import Any

from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import write_text_atomic

__all__ = ["DECISIONS", "GRADES", "ReviewStore", "check_reviewer", "review_path"]

DECISIONS = ("accept", "reject", "unsure")
GRADES = {"fazekas_pv": (0, 3), "fazekas_deep": (0, 3), "epvs_bg_grade": (0, 4)}
ADDABLE = {"cmb": None, "epvs": None, "lacune": 3.0, "rssi": 4.0, "wmh": 3.0}
"""Tasks a reviewer can add and the default sphere radius (mm; None = a point)."""
_REVIEWER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def check_reviewer(name: str) -> str:
    if not _REVIEWER.match(name or ""):
        raise CsvdnetInputError("--reviewer", f"{name!r} is not a reviewer name (letters, digits, "
                                              ". _ -, up to 64)")
    return name


def review_path(pred_dir: Path, subject_id: str, reviewer: str) -> Path:
    return pred_dir / subject_id / "review" / reviewer / "review.json"


def reviewers_of(pred_dir: Path, subject_id: str) -> list[str]:
    return sorted(p.parent.name for p in (pred_dir / subject_id / "review").glob("*/review.json"))


def read_review(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CsvdnetInputError(path, f"not a readable review.json ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != "csvdnet-review":
        raise CsvdnetInputError(path, "is not a csvdnet review.json (format csvdnet-review)")
    if data.get("version") != 1:
        raise CsvdnetInputError(path, f"review.json version {data.get('version')!r} is not 1")
    return data


class ReviewStore:
    """One reviewer's reviews of a predict folder; thread-safe, each change durable."""

    def __init__(self, pred_dir: Path, reviewer: str):
        self.pred_dir = Path(pred_dir)
        self.reviewer = check_reviewer(reviewer)
        self._lock = threading.Lock()
        self._cache: dict[str, dict[str, Any]] = {}

    def path(self, subject_id: str) -> Path:
        return review_path(self.pred_dir, subject_id, self.reviewer)

    def get(self, subject_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._get(subject_id)

    def _get(self, subject_id: str) -> dict[str, Any] | None:
        if subject_id not in self._cache:
            path = self.path(subject_id)
            if not path.is_file():
                return None
            self._cache[subject_id] = read_review(path)
        return self._cache[subject_id]

    def _new(self, subject_id: str, report: dict[str, Any]) -> dict[str, Any]:
        model = report.get("model") or {}
        return {"format": "csvdnet-review", "version": 1, "subject": subject_id,
                "reviewer": self.reviewer,
                "model": {"id": model.get("id"), "sha256": model.get("sha256")},
                "report_created": report.get("created"), "started": now(), "updated": None,
                "decisions": {}, "added": [], "grades": {}, "log": []}

    def change(self, subject_id: str, report: dict[str, Any], what: dict[str, Any],
               known_ids: set[str]) -> dict[str, Any]:
        """Apply one change and write the file before returning the new review.

        ``what``: ``{"decide": id, "decision": d}``, ``{"add": task, "world": [x, y, z],
        "region": r, "side": s[, "radius_mm": r]}``, ``{"grade": name, "value": v | None}`` or
        ``{"confirm": true}`` (a subject without findings was seen).

        Raises:
            ValueError: the change is not valid (unknown finding, decision, task or grade).
        """
        with self._lock:
            current = self._get(subject_id) or self._new(subject_id, report)
            review = json.loads(json.dumps(current))  # apply to a copy: a failed write keeps it
            at = now()
            if "decide" in what:
                fid, decision = str(what["decide"]), what.get("decision")
                added = {a["id"] for a in review["added"]}
                if fid not in known_ids and fid not in added:
                    raise ValueError(f"no finding {fid!r} in {subject_id}")
                if decision not in DECISIONS:
                    raise ValueError(f"decision {decision!r} is not one of {DECISIONS}")
                review["decisions"][fid] = {"decision": decision, "at": at}
                entry = f"{fid} {decision}"
            elif "add" in what:
                task = what["add"]
                if task not in ADDABLE:
                    raise ValueError(f"cannot add a {task!r} finding")
                world = [float(v) for v in what["world"]]
                if len(world) != 3:
                    raise ValueError("world must be [x, y, z]")
                radius = ADDABLE[task]
                if radius is not None and what.get("radius_mm") is not None:
                    radius = float(what["radius_mm"])
                    if not 0.5 <= radius <= 15.0:
                        raise ValueError("radius_mm must be within 0.5-15 mm")
                n = 1 + max((int(a["id"].split(":")[1]) for a in review["added"]), default=0)
                fid = f"added:{n}"
                review["added"].append({"id": fid, "task": task, "world": world,
                                        "radius_mm": radius, "region": str(what.get("region")),
                                        "side": str(what.get("side")), "at": at})
                review["decisions"][fid] = {"decision": "accept", "at": at}
                entry = f"{fid} added ({task})"
            elif "grade" in what:
                name, value = what["grade"], what.get("value")
                if name not in GRADES:
                    raise ValueError(f"{name!r} is not an adjustable grade")
                if value is None:
                    review["grades"].pop(name, None)
                else:
                    lo, hi = GRADES[name]
                    if (isinstance(value, bool) or not isinstance(value, int)
                            or not lo <= value <= hi):
                        raise ValueError(f"{name} must be an integer {lo}-{hi}")
                    review["grades"][name] = value
                entry = f"{name} = {value}"
            elif what.get("confirm") is True:
                entry = "confirmed"  # a subject without findings: the reviewer saw it
            else:
                raise ValueError("a change is a decision, an added finding, a grade or confirm")
            review["updated"] = at
            review["log"].append({"at": at, "what": entry})
            write_text_atomic(self.path(subject_id), json.dumps(review, indent=1) + "\n")
            self._cache[subject_id] = review
            return review


def status_of(review: dict[str, Any] | None, finding_ids: list[str]) -> str:
    """``not started`` / ``in progress`` / ``done`` (every model finding has a decision)."""
    if review is None or not review["log"]:
        return "not started"
    decided = review["decisions"]
    return "done" if all(fid in decided for fid in finding_ids) else "in progress"
