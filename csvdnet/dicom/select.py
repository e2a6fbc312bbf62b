"""Choosing each channel's series of a study by acquisition, deterministically, with the reason.

:func:`select_study` applies a :class:`~csvdnet.dicom.rules.SeriesRules` to a study's series:
excluded series (localisers, reformats, ADC, phase, minIP, secondary captures, non-MR objects)
are set aside with the reason; every other series is tested against each channel's rule; a
candidate's slices must form one regular stack (no missing slice, uniform spacing, one
orientation); between candidates the higher resolution wins, then the later acquisition, then a
SeriesDescription match, then the distortion-corrected series; DWI is split by b-value (the
b-values kept by the rules; the channel's own b-value is the network's ``dwi``, the others are
recorded as ``dwi_b<value>``; directional images beside a trace image are set aside).

A study that cannot be predicted raises :class:`~csvdnet.errors.CsvdnetInputError` with one
line naming the study and the reason: no MR series, no reference series (and what was found
instead), two reference candidates that nothing separates, or a channel whose every series
was refused (phase-only SWI, missing slices ...).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from csvdnet.dicom.index import Frame, Instance, Series, Study, normal
from csvdnet.dicom.rules import (SeriesRules, acquisition, description_matches, match_channel)
from csvdnet.errors import CsvdnetInputError

__all__ = ["Chosen", "Selection", "select_study", "stack_problem"]

_RESOLUTION_TOLERANCE = 0.05


@dataclasses.dataclass
class Chosen:
    """The series (and its images) chosen for one channel, and why.

    Attributes:
        channel: ``flair``, ``t1`` ... or ``dwi_b0`` (a kept b-value beside the channel's).
        series: The series.
        instances: Its images used for this channel (DWI: those of this b-value only).
        reason: Why this series (the rules it met, what it beat).
        acquisition: Its acquisition facts, one line.
        b_value: The b-value of a DWI channel.
        voxel_mm: (row spacing, column spacing, slice spacing) in mm.
    """

    channel: str
    series: Series
    instances: list[Instance]
    reason: str
    acquisition: str
    b_value: float | None = None
    voxel_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def files(self) -> list[Path]:
        return [instance.path for instance in self.instances]

    def record(self) -> dict[str, Any]:
        """JSON-ready record for ``report.json`` and the work folder."""
        return {"series_number": self.series.number, "description": self.series.description,
                "series_uid": self.series.uid, "acquisition": self.acquisition,
                "b_value": self.b_value, "voxel_mm": [round(v, 4) for v in self.voxel_mm],
                "images": sum(len(i.frames) for i in self.instances),
                "files": [str(p) for p in self.files], "reason": self.reason}


@dataclasses.dataclass
class Selection:
    """A study's chosen series per channel and the series set aside (label -> reason)."""

    study: Study
    chosen: dict[str, Chosen]
    excluded: dict[str, str]

    @property
    def sources(self) -> dict[str, list[Path]]:
        """Channel -> DICOM files of its chosen series (``dwi``: the b1000 images only): what
        :func:`csvdnet.dicom.results.write_results` takes as ``sources``."""
        return {name: chosen.files for name, chosen in self.chosen.items()
                if not name.startswith("dwi_b")}


def _image_excluded(series: Series, rules: SeriesRules) -> str | None:
    header = series.header
    if series.modality != "MR":
        return f"modality {series.modality or 'unknown'}, not MR"
    if str(header.get("SOPClassUID", "")) in rules.exclude_sop_class:
        return f"SOP class {header.SOPClassUID} is not a source image"
    hits = sorted(set(t for i in series.instances for t in i.image_type)
                  & rules.exclude_image_type)
    if hits:
        return f"ImageType {'/'.join(hits)}"
    return None


def stack_problem(frames: list[Frame], orientation: Any) -> str | None:
    """Why these image planes are not one regular stack, or None.

    Checked: every plane has a position, one orientation, no two planes at one position, and
    the distances between neighbouring planes along the slice normal are equal within 5 %
    (a missing slice shows as a gap of about two spacings).
    """
    if orientation is None or len(orientation) != 6:
        return "no ImageOrientationPatient"
    if any(f.position is None for f in frames):
        return "an image without ImagePositionPatient"
    along = np.sort(np.array([np.dot(normal(orientation), f.position) for f in frames]))
    if len(along) < 2:
        return f"{len(along)} slice: not a volume"
    gaps = np.diff(along)
    if np.any(gaps < 1e-3):
        return (f"{int(np.sum(gaps < 1e-3))} image(s) share a slice position with another "
                "(several echoes or repeats in one series?)")
    spacing = float(np.median(gaps))
    worst = int(np.argmax(np.abs(gaps - spacing)))
    if abs(gaps[worst] - spacing) > 0.05 * spacing:
        kind = ("a missing slice" if abs(gaps[worst] / spacing - round(gaps[worst] / spacing))
                < 0.05 and gaps[worst] > spacing else "inconsistent slice spacing")
        return (f"{kind}: {gaps[worst]:.2f} mm between slices {worst + 1} and {worst + 2}, "
                f"{spacing:.2f} mm elsewhere")
    return None


def _voxel(instances: list[Instance], frames: list[Frame]) -> tuple[float, float, float]:
    spacing = instances[0].spacing or (0.0, 0.0)
    along = np.sort([np.dot(normal(instances[0].orientation), f.position) for f in frames])
    return float(spacing[0]), float(spacing[1]), float(np.median(np.diff(along)))


def _check_orientation(instances: list[Instance]) -> str | None:
    first = instances[0].orientation
    for instance in instances:
        if instance.orientation is None or first is None or \
                not np.allclose(instance.orientation, first, atol=1e-4):
            return f"{instance.path.name}: another ImageOrientationPatient than the first image"
        if instance.shape != instances[0].shape:
            return f"{instance.path.name}: {instance.shape} pixels, the first image has " \
                   f"{instances[0].shape}"
    return None


def _b_groups(series: Series, rule: dict[str, Any]
              ) -> tuple[dict[float, list[Instance]], str | None]:
    """Instances of a diffusion series by kept b-value, or why it cannot be split."""
    spec = rule.get("b_values") or {"keep": [None], "channel": None, "tolerance": 0}
    groups: dict[float, list[Instance]] = {}
    for instance in series.instances:
        values = {f.b_value for f in instance.frames}
        if len(values) > 1:
            return {}, (f"{instance.path.name} holds several b-values in one file (an enhanced "
                        "multi-frame diffusion series is not split here)")
        value = values.pop()
        if value is None:  # no b-value at all: a trace series exported on its own
            value = spec["channel"] if "TRACEW" in instance.image_type else None
        for keep in spec["keep"]:
            if value is not None and keep is not None and abs(value - keep) <= spec["tolerance"]:
                groups.setdefault(float(keep), []).append(instance)
    if spec["channel"] is not None and float(spec["channel"]) not in groups:
        found = sorted({f.b_value for i in series.instances for f in i.frames} - {None})
        return {}, (f"no b={spec['channel']:g} images (b-values found: "
                    f"{', '.join(f'{b:g}' for b in found) or 'none'})")
    return {b: _trace_only(instances) for b, instances in groups.items()}, None


def _trace_only(instances: list[Instance]) -> list[Instance]:
    """A b-value's images without the directional ones when a trace (isotropic) image shares
    their positions (GE, Philips and some Siemens series hold both): the trace is what is read."""
    positions = [f.position for i in instances for f in i.frames]
    if len(set(positions)) == len(positions):
        return instances
    trace = [i for i in instances if "TRACEW" in i.image_type or "ISOTROPIC" in (
        str(i.header.get("DiffusionDirectionality", "")).upper(), *i.image_type)]
    return trace or instances  # no trace: the stack check names the shared positions


def _candidate(channel: str, series: Series, instances: list[Instance], facts: str,
               b_value: float | None) -> Chosen | str:
    if any("MOSAIC" in i.image_type for i in instances):
        return "Siemens mosaic images (one file per volume) are not read here yet"
    problem = _check_orientation(instances)
    frames = [f for i in instances for f in i.frames]
    problem = problem or stack_problem(frames, instances[0].orientation)
    if problem:
        return problem
    return Chosen(channel, series, instances, "", facts, b_value, _voxel(instances, frames))


def _time(series: Series) -> str:
    h = series.header
    stamp = str(h.get("AcquisitionDateTime", "") or "")
    if not stamp:
        date = str(h.get("SeriesDate", "") or h.get("AcquisitionDate", "") or "")
        stamp = date + str(h.get("SeriesTime", "") or h.get("AcquisitionTime", "") or "")
    return stamp


def _readable(stamp: str) -> str:
    """``20260101082400.000000`` -> ``2026-01-01 08:24:00`` (other forms as they are)."""
    if len(stamp) >= 14 and stamp[:14].isdigit():
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[8:10]}:{stamp[10:12]}:{stamp[12:14]}"
    return stamp


def _pick(channel: str, candidates: list[Chosen], rule: dict[str, Any], study: Study) -> Chosen:
    """The candidate with the smallest voxel (5 % tolerance), then latest, then named."""
    volume = {id(c): float(np.prod(c.voxel_mm)) for c in candidates}
    best = min(volume.values())
    finest = [c for c in candidates if volume[id(c)] <= best * (1 + _RESOLUTION_TOLERANCE)]
    others = [c for c in candidates if c not in finest]

    def mm(c: Chosen) -> str:
        return "x".join(f"{v:g}" for v in np.round(c.voxel_mm, 2))

    why = [f"{c.series.label()} ({mm(c)} mm)" for c in others]
    reason = [f"higher resolution than {', '.join(why)}"] if why else []
    latest = max(_time(c.series) for c in finest)
    later = [c for c in finest if _time(c.series) == latest]
    if len(later) < len(finest) and latest:
        beaten = [c.series.label() for c in finest if c not in later]
        reason.append(f"acquired later ({_readable(latest)}) than {', '.join(beaten)}")
        finest = later
    if len(finest) > 1:
        named = [c for c in finest if description_matches(rule, c.series.header)]
        if len(named) == 1:
            beaten = [c.series.label() for c in finest if c is not named[0]]
            reason.append(f"its description matches the {channel} patterns, unlike "
                          f"{', '.join(beaten)} (same resolution and time)")
            finest = named
    if len(finest) > 1:  # Siemens writes a series twice, with and without distortion correction
        corrected = [c for c in finest if "ND" not in c.series.instances[0].image_type]
        if len(corrected) == 1:
            beaten = [c.series.label() for c in finest if c is not corrected[0]]
            reason.append(f"distortion corrected, unlike {', '.join(beaten)} (ImageType ND; "
                          "same resolution, time and description)")
            finest = corrected
    if len(finest) > 1:
        raise CsvdnetInputError(
            _folder(study), f"{study.label()}: {len(finest)} series qualify as {channel} and "
                            f"nothing separates them ({', '.join(c.series.label() for c in finest)}"
                            f": same resolution {mm(finest[0])} mm and acquisition time "
                            f"{_readable(latest) or 'unknown'}): keep one, or make the rules "
                            "(--series-rules) tell them apart")
    chosen = finest[0]
    chosen.reason = "; ".join([f"{chosen.acquisition} meets the {channel.split('_b')[0]} rules"]
                              + (reason or ["the only candidate"]))
    return chosen


def _folder(study: Study) -> Path:
    """The deepest folder holding every file of the study (for messages)."""
    return Path(os.path.commonpath([str(i.path.parent) for s in study.series
                                    for i in s.instances]))


def _conditions(rule: dict[str, Any]) -> list[str]:
    """A channel rule in words: ``inversion recovery yes, echo time >= 80 ms`` ..."""
    def word(value: Any) -> str:
        return "yes" if value is True else "no" if value is False else str(value)

    return ([f"{k.replace('_', ' ')} {word(v)}" for k, v in rule.get("require", {}).items()]
            + [f"{k[:-3].replace('_', ' ')} >= {v:g} ms" for k, v in rule.get("min", {}).items()]
            + [f"{k[:-3].replace('_', ' ')} <= {v:g} ms" for k, v in rule.get("max", {}).items()])


def select_study(study: Study, rules: SeriesRules, channels: tuple[str, ...],
                 reference: str) -> Selection:
    """Choose each channel's series of ``study`` (see the module doc).

    Args:
        study: An indexed study.
        rules: The selection rules.
        channels: The channels wanted (the model's), in order.
        reference: The channel the study cannot do without.

    Returns:
        The selection; channels without any candidate are absent from ``chosen``.

    Raises:
        CsvdnetInputError: One line naming the study and why it cannot be predicted.
    """
    where = _folder(study)
    if not any(s.modality == "MR" for s in study.series):
        modalities = ", ".join(sorted({s.modality or "unknown" for s in study.series}))
        raise CsvdnetInputError(where, f"{study.label()}: not an MR study (modality "
                                       f"{modalities}): skipped")
    excluded: dict[str, str] = {}
    candidates: dict[str, list[Chosen]] = {}
    refused: dict[str, list[str]] = {}
    for series in study.series:
        why_not = _image_excluded(series, rules)
        has_b = any(f.b_value is not None for i in series.instances for f in i.frames)
        facts = acquisition(series.header, has_b)
        matched = []
        for channel in (*channels, *(c for c in rules.channels if c not in channels)):
            rule = rules.channels.get(channel)
            if rule is None or match_channel(rule, facts) is not None:
                continue
            matched.append(channel)
            if why_not:
                refused.setdefault(channel, []).append(f"{series.label()} ({why_not})")
                continue
            if rule.get("b_values"):
                groups, problem = _b_groups(series, rule)
                if problem:
                    refused.setdefault(channel, []).append(f"{series.label()} ({problem})")
                    continue
                spec = rule["b_values"]
                for b_value, instances in sorted(groups.items()):
                    name = (channel if b_value == float(spec["channel"])
                            else f"{channel}_b{b_value:g}")
                    found = _candidate(name, series, instances, facts.describe(), b_value)
                    if isinstance(found, str):
                        refused.setdefault(name, []).append(f"{series.label()} b={b_value:g} "
                                                            f"({found})")
                    else:
                        candidates.setdefault(name, []).append(found)
                continue
            found = _candidate(channel, series, series.instances, facts.describe(), None)
            if isinstance(found, str):
                refused.setdefault(channel, []).append(f"{series.label()} ({found})")
            else:
                candidates.setdefault(channel, []).append(found)
        if not matched:
            excluded[series.label()] = why_not or f"no channel's rules ({facts.describe()})"
        elif why_not:
            excluded[series.label()] = why_not
    wanted = [c for c in channels if c in rules.channels]
    extras = sorted(c for c in candidates if c not in channels and c.split("_b")[0] in channels)
    if reference not in candidates:
        found = [f"{c.series.label()} ({name})" for name, cs in candidates.items() for c in cs]
        needs = ", ".join(_conditions(rules.channels.get(reference, {})))
        refusal = f"; refused: {'; '.join(refused[reference])}" if reference in refused else ""
        raise CsvdnetInputError(
            where, f"{study.label()}: no {reference} series ({needs}){refusal}; found "
                   f"{', '.join(found) or 'no usable series'}")
    for channel in wanted:
        if channel not in candidates and channel in refused:
            raise CsvdnetInputError(
                where, f"{study.label()}: no usable {channel} series: "
                       f"{'; '.join(refused[channel])}")
    chosen = {name: _pick(name, candidates[name], rules.channels[name.split("_b")[0]], study)
              for name in (*wanted, *extras) if name in candidates}
    return Selection(study=study, chosen=chosen, excluded=excluded)
