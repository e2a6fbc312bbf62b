"""A tiny synthetic subject written as a vendor-like DICOM study (tests/test_dicom_*)."""

from __future__ import annotations

from pathlib import Path

from csvdnet.dicom.vendor import VendorStudy, write_study


def tiny_subject(root: Path, seed: int = 3) -> Path:
    """One ``tiny``-profile synthetic subject folder (``csvdnet synth``)."""
    from csvdnet.synth import generate_cohort

    generate_cohort(root, 1, seed, profile="tiny", progress=False)
    return next(p for p in sorted(root.iterdir()) if p.is_dir())


def tiny_study(subject: Path, out: Path, **kwargs) -> VendorStudy:
    """``subject`` written as one DICOM study under ``out`` (see csvdnet.dicom.vendor)."""
    return write_study(subject, out, **kwargs)


def series_files(study: VendorStudy, name: str) -> list[Path]:
    """The files of the study's series written for protocol ``name``."""
    return next(files for protocol, files in study.series.values() if protocol == name)
