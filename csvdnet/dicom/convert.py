"""DICOM series to NIfTI with ``dcm2niix``, each result checked against the DICOM headers.

:func:`convert_selection` converts each chosen channel (only its own images: a DWI's b1000
images apart from its b0 images) with the field's converter, ``dcm2niix`` (its PyPI wheel:
mosaic, enhanced multi-frame, compressed transfer syntaxes), keeping its BIDS sidecar JSON.
:func:`check_geometry` then compares the NIfTI with the headers: every sampled DICOM pixel's
world position (from ImagePositionPatient, ImageOrientationPatient, PixelSpacing; LPS turned
into the NIfTI's RAS) must land on a voxel centre of the NIfTI holding the same value, so an
LPS / RAS flip or a row / column mix-up stops the study instead of rating a mirrored brain.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom

from csvdnet.dicom.index import Instance, normal
from csvdnet.dicom.select import Selection
from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import atomic_dir

__all__ = ["ConversionError", "check_geometry", "convert_selection", "dcm2niix_binary",
           "run_dcm2niix"]

_POSITION_TOLERANCE = 0.05  # of a voxel
_SAMPLES = 24


class ConversionError(ValueError):
    """A series could not be converted, or its NIfTI disagrees with its DICOM headers."""


def dcm2niix_binary() -> str:
    """The ``dcm2niix`` executable: the PyPI wheel's (``dcm2niix`` package), else PATH's.

    Raises:
        CsvdnetInputError: Neither is there.
    """
    try:
        import dcm2niix  # the wheel ships the binary inside the package

        path = Path(dcm2niix.bin)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    except (ImportError, AttributeError, TypeError):
        pass
    found = shutil.which("dcm2niix")
    if found:
        return found
    raise CsvdnetInputError("dcm2niix", "the DICOM converter is not installed: "
                                        "pip install dcm2niix")


def run_dcm2niix(files: list[Path], out: Path, name: str) -> Path:
    """Convert ``files`` (one series' images) into ``out/<name>.nii`` + ``<name>.json``.

    The files are linked into a scratch folder first so that dcm2niix sees exactly them.

    Raises:
        ConversionError: dcm2niix failed, or made no or several images of them.
    """
    scratch = out / f".links-{name}"
    scratch.mkdir(parents=True)
    try:
        for n, path in enumerate(files):
            os.symlink(os.path.abspath(path), scratch / f"{n:06d}.dcm")
        cmd = [dcm2niix_binary(), "-b", "y", "-ba", "y", "-z", "n", "-x", "n", "-i", "n",
               "-w", "1", "-v", "0", "-f", name, "-o", str(out), str(scratch)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    made = sorted(out.glob(f"{name}*.nii"))
    if done.returncode != 0 or not made:
        last = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise ConversionError(f"dcm2niix failed (exit {done.returncode}): "
                              f"{last[-1] if last else 'no output'}")
    if len(made) > 1:
        raise ConversionError(f"dcm2niix made {len(made)} images of one series "
                              f"({', '.join(p.name for p in made)}): several echoes, "
                              "a tilted or unequally spaced stack?")
    return made[0]


def _frames(instances: list[Instance]) -> list[tuple[Instance, int, np.ndarray]]:
    """(instance, frame index, LPS position) of every image plane, sorted along the normal."""
    n = normal(instances[0].orientation)
    planes = [(i, k, np.asarray(f.position, float)) for i in instances
              for k, f in enumerate(i.frames)]
    return sorted(planes, key=lambda p: float(np.dot(n, p[2])))


def _pixels(instance: Instance, frame: int, cache: dict[Path, Any]) -> np.ndarray:
    """One plane's stored values through the modality rescale (classic or enhanced)."""
    if instance.path not in cache:
        cache[instance.path] = pydicom.dcmread(instance.path)
    ds = cache[instance.path]
    data = ds.pixel_array
    plane = data[frame] if int(ds.get("NumberOfFrames", 1) or 1) > 1 else data
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None and "SharedFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        if "PixelValueTransformationSequence" in shared:
            slope = shared.PixelValueTransformationSequence[0].get("RescaleSlope")
            intercept = shared.PixelValueTransformationSequence[0].get("RescaleIntercept")
    return plane.astype(np.float64) * float(slope or 1.0) + float(intercept or 0.0)


def check_geometry(image: nib.Nifti1Image, instances: list[Instance], *,
                   seed: int = 0) -> None:
    """Check a converted NIfTI against its DICOM images (see the module doc).

    Samples the first, middle and last planes: their four corner pixels, the centre, and
    random pixels with signal; each must map to a voxel centre of ``image`` (within 5 % of a
    voxel) inside the grid, holding the DICOM value (after rescale).

    Raises:
        ConversionError: The first disagreement, naming the pixel and what was found.
    """
    planes = _frames(instances)
    first = instances[0]
    rows, cols = first.shape
    expected = (cols, rows, len(planes))
    if image.ndim != 3 or sorted(image.shape) != sorted(expected):
        raise ConversionError(f"the NIfTI has shape {image.shape}, the DICOM holds "
                              f"{cols} x {rows} pixels x {len(planes)} slices")
    row_dir = np.asarray(first.orientation[:3], float)
    col_dir = np.asarray(first.orientation[3:6], float)
    d_row, d_col = first.spacing  # between rows, between columns
    to_voxel = np.linalg.inv(image.affine)
    data = image.dataobj
    rng = np.random.default_rng(seed)
    cache: dict[Path, Any] = {}
    for index in sorted({0, len(planes) // 2, len(planes) - 1}):
        instance, frame, position = planes[index]
        values = _pixels(instance, frame, cache)
        points = [(0, 0), (0, cols - 1), (rows - 1, 0), (rows - 1, cols - 1),
                  (rows // 2, cols // 2)]
        signal = np.argwhere(values > np.percentile(values, 60))
        if len(signal):
            points += [tuple(p) for p in signal[rng.choice(len(signal), min(_SAMPLES,
                                                                            len(signal)),
                                                            replace=False)]]
        for r, c in points:
            lps = position + c * d_col * row_dir + r * d_row * col_dir
            ras = lps * np.array([-1.0, -1.0, 1.0])
            voxel = to_voxel[:3, :3] @ ras + to_voxel[:3, 3]
            nearest = np.round(voxel).astype(int)
            where = f"pixel (row {r}, column {c}) of slice {index + 1} ({instance.path.name})"
            if np.max(np.abs(voxel - nearest)) > _POSITION_TOLERANCE or \
                    np.any(nearest < 0) or np.any(nearest >= np.array(image.shape)):
                raise ConversionError(f"{where} lies at RAS {np.round(ras, 2).tolist()} mm, "
                                      f"voxel {np.round(voxel, 2).tolist()} of the NIfTI: its "
                                      "geometry disagrees with the headers")
            have = float(data[tuple(nearest)])
            want = float(values[r, c])
            if abs(have - want) > 1e-3 * max(1.0, abs(want)):
                raise ConversionError(f"{where} holds {want:g}, the NIfTI voxel at the same "
                                      f"place {nearest.tolist()} holds {have:g}: rows / columns "
                                      "or the slice order are mixed up")


def convert_selection(selection: Selection, work: Path, where: Path) -> dict[str, Path]:
    """Convert each chosen channel into ``work/<channel>.nii`` (+ ``.json``), checked.

    The folder is written whole or not at all (a temporary folder renamed into place).

    Args:
        selection: The study's selection.
        work: The subject's work folder (replaced).
        where: The study's folder, for messages.

    Returns:
        Channel -> NIfTI file (``dwi_b0`` included).

    Raises:
        CsvdnetInputError: A series that could not be converted or failed the geometry check,
            naming the study, the series and the reason.
    """
    paths: dict[str, Path] = {}
    with atomic_dir(work) as tmp:
        for name, chosen in selection.chosen.items():
            try:
                made = run_dcm2niix(chosen.files, tmp, name)
                target = tmp / f"{name}.nii"
                if made != target:
                    made.rename(target)
                    sidecar = made.with_suffix(".json")
                    if sidecar.is_file():
                        sidecar.rename(target.with_suffix(".json"))
                for extra in (".bval", ".bvec"):  # a single b-value: a 3-D image
                    target.with_suffix(extra).unlink(missing_ok=True)
                image = nib.load(str(target))
                if image.ndim == 4 and image.shape[3] == 1:
                    image = nib.Nifti1Image(np.asarray(image.dataobj)[..., 0], image.affine,
                                            image.header)
                    nib.save(image, str(target))
                    image = nib.load(str(target))
                check_geometry(image, chosen.instances)
            except ConversionError as exc:
                raise CsvdnetInputError(where, f"{selection.study.label()}: "
                                               f"{chosen.series.label()} ({name}): {exc}") from None
            paths[name] = work / target.name
    return paths
