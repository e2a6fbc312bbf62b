"""What every config section shares: the tuple types of its values and the range check that
raises :class:`ConfigValueError` naming the dotted key."""

from __future__ import annotations

from typing import Any, Mapping

from csvdnet.errors import CsvdnetInputError

Triple = tuple[float, float, float]
IntTriple = tuple[int, int, int]


class ConfigValueError(CsvdnetInputError):
    """A config value out of its range: names the dotted key (and the file, once known).

    Attributes:
        key: The dotted key, e.g. ``preprocess.spacing``.
    """

    def __init__(self, key: str, reason: str, source: str = "<config>"):
        self.key = key
        super().__init__(source, f"{key}: {reason}")
        self.reason = reason  # without the key: __reduce__ and re-raising rebuild the message

    def __reduce__(self):
        return (type(self), (self.key, self.reason, self.path))


def _check(section: str, problems: Mapping[str, tuple[bool, str]]) -> None:
    """Raise :class:`ConfigValueError` for the first ``key: (ok, reason)`` that is not ok."""
    for key, (ok, reason) in problems.items():
        if not ok:
            raise ConfigValueError(f"{section}.{key}" if section else key, reason)


def _positive(values: Any) -> bool:
    return all(v > 0 for v in values)
