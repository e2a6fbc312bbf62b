"""``scores.tsv`` and ``errors.tsv``: their columns, one subject's row, reading and writing them.

A cohort run (:mod:`csvdnet.inference.cohort`) keeps one ``scores.tsv`` row per finished
subject (every rating, each rule set's total, the ordinal total with its class probabilities,
the agreement flag, seconds, the report's flags and the model id); the tables are written
atomically, a failure naming the file.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, Sequence

from csvdnet.errors import CsvdnetOutputError
from csvdnet.fsutil import atomic_path
from csvdnet.inference.cohort_errors import _os_reason

__all__ = ["MEASUREMENT_COLUMNS", "QUANTITY_COLUMNS", "SCORE_COLUMNS", "score_columns",
           "score_row"]


MEASUREMENT_COLUMNS = ("fazekas_pv", "fazekas_deep", "epvs_bg_count", "epvs_bg_grade",
                       "epvs_cso_count", "epvs_cso_grade", "cmb_count", "cmb_lobar", "cmb_deep",
                       "cmb_infratentorial", "lacune_count", "rssi_count")
QUANTITY_COLUMNS = ("wmh_volume_ml", "wmh_periventricular_ml", "wmh_deep_ml",
                    "lacune_volume_ml", "rssi_volume_ml")


def _rule_column(rule_set: str) -> str:
    """``staals-2014`` -> ``staals_total``; ``caa-svd-2016`` -> ``caa_svd_total``."""
    stem = rule_set.rsplit("-", 1)[0] if rule_set[-4:].isdigit() else rule_set
    return stem.replace("-", "_") + "_total"


def score_columns(rule_sets: Sequence[str], classes: int) -> list[str]:
    """The columns of ``scores.tsv`` for these rule sets and ordinal classes."""
    return (["subject", *MEASUREMENT_COLUMNS, *QUANTITY_COLUMNS]
            + [_rule_column(r) for r in rule_sets]
            + ["ordinal_total"] + [f"ordinal_p{k}" for k in range(classes)]
            + ["agreement", "seconds", "flags", "model"])


SCORE_COLUMNS = score_columns(("staals-2014", "caa-svd-2016"), 5)
"""The columns with the default rule sets and a five-class ordinal head."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def score_row(result: Any) -> dict[str, str]:
    """One subject's ``scores.tsv`` row from its :class:`SubjectResult`."""
    m = result.measurements
    row = {"subject": result.subject}
    row.update({name: _cell(getattr(m, name, None)) for name in MEASUREMENT_COLUMNS})
    row.update({name: _cell(result.quantities.get(name)) for name in QUANTITY_COLUMNS})
    row.update({_rule_column(name): _cell(s.total) for name, s in result.scores.items()})
    row["ordinal_total"] = _cell(result.ordinal.total)
    row.update({f"ordinal_p{k}": _cell(p)
                for k, p in enumerate(result.ordinal.class_probabilities)})
    row["agreement"] = _cell(result.agreement)
    row["seconds"] = _cell(sum(result.timings.values()))
    row["flags"] = " | ".join(str(flag).replace("\t", " ") for flag in _report_flags(result))
    row["model"] = result.model.id
    return row


def _report_flags(result: Any) -> list[str]:
    """The flags ``report.json`` shows for ``result`` (the model's own flag first)."""
    from csvdnet.inference.report import report_flags

    return report_flags(result)


def _read_rows(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["subject"]: row for row in csv.DictReader(handle, delimiter="\t")
                if row.get("subject")}


def _write_rows(path: Path, columns: list[str], rows: Iterable[dict[str, str]]) -> None:
    """Write a TSV atomically; a failure is a :class:`CsvdnetOutputError` naming ``path``."""
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, columns, delimiter="\t", extrasaction="ignore",
                                        lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
    except OSError as exc:
        raise CsvdnetOutputError(path, f"cannot be written: {_os_reason(exc)}") from None
