"""Series selection rules: the shipped ``series_rules.yaml`` or a site's own file, checked.

A rule set says which acquisitions make a series a candidate for each channel (see the comments
in ``series_rules.yaml``). :func:`load_rules` reads and checks one; :func:`acquisition` turns a
series' header into the facts the rules test; :func:`match_channel` tests them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from csvdnet.errors import CsvdnetInputError

__all__ = ["DEFAULT_RULES", "Acquisition", "SeriesRules", "acquisition", "load_rules",
           "match_channel"]

DEFAULT_RULES = Path(__file__).with_name("series_rules.yaml")
_FACTS = ("inversion_recovery", "spin_echo", "gradient_echo", "diffusion", "mr_acquisition_type")
_BOUNDS = ("echo_time_ms", "repetition_time_ms", "inversion_time_ms")


@dataclasses.dataclass(frozen=True)
class SeriesRules:
    """A checked rule set.

    Attributes:
        path: The YAML file.
        sha256: Digest of its bytes (recorded with each selection).
        exclude_image_type: ImageType values that exclude a series.
        exclude_sop_class: SOP class UIDs that are never source images.
        channels: Channel -> its rule (``require``, ``min``, ``max``, ``description``,
            ``b_values``).
    """

    path: Path
    sha256: str
    exclude_image_type: frozenset[str]
    exclude_sop_class: frozenset[str]
    channels: dict[str, dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Acquisition:
    """What a series' header says about how it was acquired (times in ms)."""

    inversion_recovery: bool
    spin_echo: bool
    gradient_echo: bool
    diffusion: bool
    mr_acquisition_type: str
    echo_time_ms: float | None
    repetition_time_ms: float | None
    inversion_time_ms: float | None

    def describe(self) -> str:
        """``SE\\IR 2D, TE 81 ms, TR 9000 ms, TI 2500 ms`` for records and messages."""
        kinds = [name for flag, name in ((self.spin_echo, "SE"), (self.gradient_echo, "GR"),
                                         (self.inversion_recovery, "IR"),
                                         (self.diffusion, "diffusion")) if flag]
        times = [f"{label} {value:g} ms" for label, value in
                 (("TE", self.echo_time_ms), ("TR", self.repetition_time_ms),
                  ("TI", self.inversion_time_ms)) if value is not None]
        return ", ".join([" ".join(["\\".join(kinds) or "?", self.mr_acquisition_type or "?"])]
                         + times)


def load_rules(path: str | Path | None = None) -> SeriesRules:
    """Read and check a rules file (default: the shipped ``series_rules.yaml``).

    Raises:
        CsvdnetInputError: Unreadable YAML, or a key / value the rules do not know, naming the
            file and the key.
    """
    path = Path(path) if path is not None else DEFAULT_RULES
    try:
        raw = path.read_bytes()
        data = yaml.safe_load(raw)
    except OSError as exc:
        raise CsvdnetInputError(path, f"series rules cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CsvdnetInputError(path, f"series rules are not valid YAML: "
                                      f"{str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("version") != 1:
        raise CsvdnetInputError(path, "series rules need 'version: 1' at the top")
    unknown = set(data) - {"version", "exclude", "channels"}
    if unknown:
        raise CsvdnetInputError(path, f"unknown key(s) {', '.join(sorted(unknown))} "
                                      "(known: version, exclude, channels)")
    exclude = data.get("exclude") or {}
    channels = data.get("channels")
    if not isinstance(exclude, dict) or not isinstance(channels, dict) or not channels:
        raise CsvdnetInputError(path, "series rules need an 'exclude' mapping and a non-empty "
                                      "'channels' mapping")
    checked = {str(name): _check_channel(path, str(name), rule) for name, rule in channels.items()}
    return SeriesRules(
        path=path, sha256=hashlib.sha256(raw).hexdigest(),
        exclude_image_type=frozenset(str(v).upper() for v in exclude.get("image_type") or ()),
        exclude_sop_class=frozenset(str(v) for v in exclude.get("sop_class") or ()),
        channels=checked)


def _check_channel(path: Path, name: str, rule: Any) -> dict[str, Any]:
    where = f"channels.{name}"
    if not isinstance(rule, dict):
        raise CsvdnetInputError(path, f"{where}: must be a mapping")
    unknown = set(rule) - {"require", "min", "max", "description", "b_values"}
    if unknown:
        raise CsvdnetInputError(path, f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("require", "min", "max"):
        if not isinstance(rule.get(key) or {}, dict):
            raise CsvdnetInputError(path, f"{where}.{key}: must be a mapping")
    for fact in rule.get("require") or {}:
        if fact not in _FACTS:
            raise CsvdnetInputError(path, f"{where}.require.{fact}: unknown (known: "
                                          f"{', '.join(_FACTS)})")
    for key in ("min", "max"):
        for bound, value in (rule.get(key) or {}).items():
            if bound not in _BOUNDS or not isinstance(value, (int, float)):
                raise CsvdnetInputError(path, f"{where}.{key}.{bound}: must be one of "
                                              f"{', '.join(_BOUNDS)} with a number")
    patterns = rule.get("description") or []
    for pattern in patterns:
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise CsvdnetInputError(path, f"{where}.description: bad pattern {pattern!r}: "
                                          f"{exc}") from None
    b_values = rule.get("b_values")
    if b_values is not None:
        keep = b_values.get("keep") if isinstance(b_values, dict) else None
        if (not isinstance(keep, list) or b_values.get("channel") not in keep
                or not isinstance(b_values.get("tolerance", 0), (int, float))):
            raise CsvdnetInputError(path, f"{where}.b_values: needs 'keep' (a list), 'channel' "
                                          "(one of them) and a numeric 'tolerance'")
    return {"require": dict(rule.get("require") or {}), "min": dict(rule.get("min") or {}),
            "max": dict(rule.get("max") or {}), "description": [str(p) for p in patterns],
            "b_values": b_values}


def _values(ds: Any, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value is None:
        return []
    return [str(v).upper() for v in ([value] if isinstance(value, str) else value)]


def _number(ds: Any, keyword: str, *groups: str) -> float | None:
    """A numeric attribute, at the top level or in the enhanced functional groups."""
    value = ds.get(keyword)
    if value is None:
        for holder in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            if holder in ds and len(ds[holder].value):
                for group in groups:
                    item = ds[holder][0]
                    if group in item and len(item[group].value):
                        value = item[group][0].get(keyword)
                        if value is not None:
                            break
            if value is not None:
                break
    if isinstance(value, (list, tuple)) or hasattr(value, "__getitem__") and \
            not isinstance(value, (str, bytes)):
        value = value[0] if len(value) else None  # InversionTimes: the first
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def acquisition(ds: Any, b_values_present: bool) -> Acquisition:
    """The facts of one series' (first) header; enhanced multi-frame attributes understood."""
    scanning = _values(ds, "ScanningSequence")
    pulse = str(ds.get("EchoPulseSequence", "") or "").upper()
    image_type = _values(ds, "ImageType")
    ti = _number(ds, "InversionTime") or _number(ds, "InversionTimes", "MRModifierSequence")
    ir = "IR" in scanning or str(ds.get("InversionRecovery", "")).upper() == "YES"
    return Acquisition(
        inversion_recovery=ir,
        spin_echo="SE" in scanning or pulse in ("SPIN", "BOTH"),
        gradient_echo="GR" in scanning or pulse in ("GRADIENT", "BOTH"),
        diffusion=b_values_present or "DIFFUSION" in image_type or "TRACEW" in image_type,
        mr_acquisition_type=str(ds.get("MRAcquisitionType", "") or "").upper(),
        echo_time_ms=_number(ds, "EchoTime") or _number(ds, "EffectiveEchoTime", "MREchoSequence"),
        repetition_time_ms=_number(ds, "RepetitionTime", "MRTimingAndRelatedParametersSequence"),
        inversion_time_ms=ti if ir else None)


def match_channel(rule: dict[str, Any], facts: Acquisition) -> str | None:
    """Why ``facts`` fail ``rule`` (the first failed condition), or None when they pass."""
    for fact, wanted in rule["require"].items():
        have = getattr(facts, fact)
        if isinstance(wanted, bool) and bool(have) != wanted:
            return f"{fact.replace('_', ' ')} is {'absent' if wanted else 'present'}"
        if not isinstance(wanted, bool) and str(have).upper() != str(wanted).upper():
            return f"{fact} is {have or 'unknown'}, not {wanted}"
    for key, compare, word in (("min", float.__ge__, ">="), ("max", float.__le__, "<=")):
        for bound, limit in rule[key].items():
            value = getattr(facts, bound)
            label = bound.replace("_ms", "").replace("_", " ")
            if value is None:
                return f"no {label}"
            if not compare(float(value), float(limit)):
                return f"{label} {value:g} ms is not {word} {limit:g} ms"
    return None


def description_matches(rule: dict[str, Any], ds: Any) -> bool:
    """Whether SeriesDescription or ProtocolName matches one of the rule's patterns."""
    text = " ".join(str(ds.get(k, "") or "") for k in ("SeriesDescription", "ProtocolName"))
    return any(re.search(p, text, re.IGNORECASE) for p in rule["description"])
