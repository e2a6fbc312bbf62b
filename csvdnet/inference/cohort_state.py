"""A cohort run's output folder: checked writable, locked for one run, and its record in
``OUT/.csvdnet/`` (``run.json``, the lock, each finished subject's row and each failure, one
small JSON file each), with what makes two runs' results comparable (:func:`run_identity`)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from csvdnet.errors import CsvdnetOutputError
from csvdnet.fsutil import FolderLocked, check_writable, folder_lock, write_text_atomic
from csvdnet.inference import outputs
from csvdnet.inference.cohort_errors import _os_reason

__all__ = ["STATE_DIR", "check_output_folder", "output_lock", "run_identity"]


STATE_DIR = ".csvdnet"
"""``OUT/.csvdnet/``: the run's record (``run.json``), lock, and each subject's row / failure."""


def check_output_folder(out: str | Path) -> Path:
    """Create ``out`` if needed and check that files can be written in it, before any work.

    Raises:
        CsvdnetOutputError: It cannot be created or written (read-only, immutable, permission,
            full disk), naming the folder and the reason.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CsvdnetOutputError(out, "is a file, not an output folder")
    try:
        return check_writable(out)
    except OSError as exc:
        raise CsvdnetOutputError(out, f"cannot write into the output folder: "
                                      f"{_os_reason(exc)}") from None


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    """Hold ``OUT/.csvdnet/lock`` for the run: one run per output folder.

    Raises:
        CsvdnetOutputError: Another live run holds it (its pid, host and start are named).
    """
    try:
        with folder_lock(out / STATE_DIR / "lock", " ".join(sys.argv)) as lock:
            yield lock
    except FolderLocked as exc:
        holder = exc.holder
        raise CsvdnetOutputError(
            out, f"in use by another csvdnet run (pid {holder.get('pid')} on "
                 f"{holder.get('host')}, since {holder.get('since')}): one run per output "
                 f"folder; wait for it or choose another --out (a killed run's lock is taken "
                 f"over by itself)") from None
    except OSError as exc:
        raise CsvdnetOutputError(out / STATE_DIR / "lock",
                                 f"cannot be written: {_os_reason(exc)}") from None


def run_identity(predictor: Any) -> dict[str, Any]:
    """What makes two runs' results comparable: the model (id, sha256), rule sets, options."""
    return {"model": predictor.info.id, "sha256": predictor.info.sha256,
            "rule_sets": list(predictor.rule_sets), "tta": bool(getattr(predictor, "tta", False)),
            "regions": str(getattr(predictor, "regions", "registered"))}


def _state_file(out: Path, kind: str, subject_id: str) -> Path:
    return out / STATE_DIR / kind / f"{subject_id}.json"


def _save_state(out: Path, kind: str, subject_id: str, record: dict[str, str]) -> None:
    path = _state_file(out, kind, subject_id)
    try:
        write_text_atomic(path, json.dumps(record) + "\n")
    except OSError as exc:
        raise CsvdnetOutputError(path, f"cannot be written: {_os_reason(exc)}") from None


def _load_states(out: Path, kind: str) -> dict[str, dict[str, str]]:
    folder = out / STATE_DIR / kind
    records = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable: the subject is redone, never trusted
        if isinstance(record, dict) and record.get("subject"):
            records[str(record["subject"])] = record
    return records


def _identity_problem(out: Path, subject_id: str, bids: bool, identity: dict[str, Any],
                      recorded: dict[str, Any] | None) -> str | None:
    """Why a finished subject in ``out`` was not made by a run of ``identity``, or None."""
    try:
        report = json.loads(outputs.report_path(out, subject_id, bids).read_text("utf-8"))
        sha256, rules = report["model"]["sha256"], sorted(report["scores"])
    except (OSError, ValueError, KeyError, TypeError):
        return "its report.json cannot be read"
    if sha256 != identity["sha256"]:
        return (f"it was predicted by model {report['model'].get('id')} (sha256 "
                f"{str(sha256)[:12]}…), this run's is {identity['model']} (sha256 "
                f"{identity['sha256'][:12]}…)")
    if rules != sorted(identity["rule_sets"]):
        return (f"it was scored with rule sets {', '.join(rules)}, this run's are "
                f"{', '.join(identity['rule_sets'])}")
    if recorded is not None and recorded.get("tta") != identity["tta"]:
        return (f"it was predicted with tta={recorded.get('tta')}, this run uses "
                f"tta={identity['tta']}")
    if recorded is not None and recorded.get("regions", "registered") != identity["regions"]:
        return (f"its regions were {recorded.get('regions', 'registered')}, this run's are "
                f"{identity['regions']}")
    return None
