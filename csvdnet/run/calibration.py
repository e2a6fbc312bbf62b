"""The run's calibration record, ``<run>/calibration.json``: its name, format and reader.

:func:`csvdnet.evaluation.calibrate.calibrate_run` writes it; :func:`csvdnet.run.record.run_config`
applies it on top of the run's ``inference`` section, so predict, export and the held-out check
use the calibrated thresholds and smallest sizes. This module imports no TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from csvdnet.errors import CsvdnetInputError

__all__ = ["CALIBRATION_FILE", "CALIBRATION_FORMAT", "load_calibration"]

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = "csvdnet-calibration"


def load_calibration(run_dir: str | Path) -> dict[str, Any] | None:
    """``<run>/calibration.json``, or None when the run has none.

    Raises:
        CsvdnetInputError: The file exists but is not a calibration record.
    """
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise CsvdnetInputError(path, f"not valid JSON ({error})") from None
    if not isinstance(record, dict) or record.get("format") != CALIBRATION_FORMAT:
        raise CsvdnetInputError(path, f"not a {CALIBRATION_FORMAT} record")
    for key in ("thresholds", "min_lesion_mm3", "peak_ridge"):
        if key == "peak_ridge" and key not in record:
            continue  # written before ridge fractions were calibrated
        values = record.get(key)
        if not isinstance(values, Mapping) or not all(
                isinstance(v, (int, float)) for v in values.values()):
            raise CsvdnetInputError(path, f"{key} must map tasks to numbers")
    return record
