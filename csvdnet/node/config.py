"""The DICOM node's configuration (``node.yaml``): one frozen record, checked when read.

Every problem is one :class:`~csvdnet.errors.CsvdnetInputError` line naming the file and the
key. Relative paths are resolved against the YAML file's folder. The README's "Running beside a
PACS" section shows a complete example.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml

from csvdnet.errors import CsvdnetInputError

__all__ = ["Destination", "NodeConfig", "Peer", "Tls", "load_config"]

_AE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: 16 chars, no backslash


@dataclasses.dataclass(frozen=True)
class Peer:
    """A caller allowed to store: its AE title and, if given, the address it must come from."""

    ae_title: str
    host: str | None = None


@dataclasses.dataclass(frozen=True)
class Destination:
    """Where results are stored (C-STORE): a PACS or viewer."""

    name: str
    ae_title: str
    host: str
    port: int
    tls: bool = False


@dataclasses.dataclass(frozen=True)
class Tls:
    """The node's certificate and key, and the certificates (CA) it trusts, all PEM files."""

    certificate: Path
    private_key: Path
    trusted: Path

    def server_context(self):
        """For the SCP: TLS only, a peer certificate signed by ``trusted`` required."""
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.trusted))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(str(self.certificate), str(self.private_key))
        return context

    def client_context(self):
        """For sending: the destination's certificate must be signed by ``trusted`` and name
        its host; ours goes with it."""
        import ssl

        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.trusted))
        context.load_cert_chain(str(self.certificate), str(self.private_key))
        return context


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """A node's settings; see :func:`load_config` for the YAML keys and their defaults."""

    path: Path
    ae_title: str
    port: int
    model: Path
    state_dir: Path
    destinations: tuple[Destination, ...]
    allow: tuple[Peer, ...]
    bind: str = "127.0.0.1"
    stable_seconds: float = 30.0
    spool_quota_mb: float = 20_000.0
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    keep_hours: float = 72.0
    http_bind: str = "127.0.0.1"
    http_port: int | None = None
    series_rules: Path | None = None
    failure_report: bool = True
    tls: Tls | None = None

    def allows(self, ae_title: str, host: str) -> bool:
        """Whether a caller with this AE title from this address may associate."""
        ae_title = ae_title.strip()
        return any(p.ae_title == ae_title and (p.host is None or p.host == host)
                   for p in self.allow)


def _ae(path: Path, key: str, value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    if not _AE.match(text):
        raise CsvdnetInputError(path, f"{key}: {value!r} is not an AE title (1-16 printable "
                                      "characters, no backslash)")
    return text


def _port(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise CsvdnetInputError(path, f"{key}: {value!r} is not a TCP port (0-65535)")
    return value


def _address(path: Path, key: str, value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise CsvdnetInputError(path, f"{key}: {value!r} is not an IP address") from None


def _number(path: Path, key: str, value: Any, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise CsvdnetInputError(path, f"{key}: {value!r} is not a number >= {minimum}")
    return float(value)


def _flag(path: Path, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise CsvdnetInputError(path, f"{key}: {value!r} is not true or false")
    return value


_KEYS = {"ae_title", "port", "bind", "model", "state_dir", "destinations", "allow",
         "stable_seconds", "spool_quota_mb", "retry", "keep_hours", "http", "series_rules",
         "failure_report", "tls"}


def load_config(path: str | Path) -> NodeConfig:
    """Read and check ``node.yaml``.

    Keys: ``ae_title``, ``port`` (required), ``bind`` (127.0.0.1), ``model`` (a model folder,
    required), ``state_dir`` (spool, queue and work folders, required), ``destinations`` (list of
    ``{name, ae_title, host, port}``), ``allow`` (list of ``{ae_title, host}``: calling AE titles,
    each optionally tied to one address; required, never empty), ``stable_seconds`` (30),
    ``spool_quota_mb`` (20000), ``retry: {initial_seconds: 5, max_seconds: 300}``,
    ``keep_hours`` (72: how long a sent study's instances stay for late instances),
    ``http: {bind: 127.0.0.1, port: N}`` (no endpoint without a port), ``series_rules``,
    ``failure_report`` (true: a study that cannot be rated gets a small SR saying why),
    ``tls: {certificate, private_key, trusted}`` (PEM files: the SCP then speaks DICOM TLS only
    and requires a peer certificate signed by ``trusted``; a destination with ``tls: true`` is
    sent to over TLS).

    Raises:
        CsvdnetInputError: One line naming the file and the bad key.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CsvdnetInputError(path, f"cannot be read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise CsvdnetInputError(path, f"not YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise CsvdnetInputError(path, "not a mapping of settings")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise CsvdnetInputError(path, f"unknown key(s) {', '.join(unknown)}; known: "
                                      f"{', '.join(sorted(_KEYS))}")
    for key in ("ae_title", "port", "model", "state_dir", "allow"):
        if raw.get(key) in (None, "", []):
            raise CsvdnetInputError(path, f"{key} is required")
    base = path.resolve().parent

    def resolve(value: Any) -> Path:
        return (base / str(value)).resolve()

    destinations = []
    for n, item in enumerate(raw.get("destinations") or []):
        key = f"destinations[{n}]"
        if not isinstance(item, dict) or not {"ae_title", "host", "port"} <= set(item):
            raise CsvdnetInputError(path, f"{key}: needs ae_title, host and port")
        destinations.append(Destination(
            name=str(item.get("name") or item["ae_title"]),
            ae_title=_ae(path, f"{key}.ae_title", item["ae_title"]),
            host=str(item["host"]), port=_port(path, f"{key}.port", item["port"]),
            tls=_flag(path, f"{key}.tls", item.get("tls", False))))
    if len({d.name for d in destinations}) < len(destinations):
        raise CsvdnetInputError(path, "destinations: two share a name")
    allow = []
    for n, item in enumerate(raw["allow"] if isinstance(raw["allow"], list) else [None]):
        key = f"allow[{n}]"
        if not isinstance(item, dict) or "ae_title" not in item:
            raise CsvdnetInputError(path, f"{key}: needs ae_title (and optionally host)")
        host = item.get("host")
        allow.append(Peer(_ae(path, f"{key}.ae_title", item["ae_title"]),
                          None if host is None else _address(path, f"{key}.host", host)))
    retry = raw.get("retry") or {}
    http = raw.get("http") or {}
    if not isinstance(retry, dict) or not isinstance(http, dict):
        raise CsvdnetInputError(path, "retry and http are mappings")
    tls = _tls(path, raw.get("tls"), resolve)
    if tls is None and any(d.tls for d in destinations):
        raise CsvdnetInputError(path, "a destination has tls: true but there is no tls section "
                                      "(certificate, private_key, trusted)")
    initial = _number(path, "retry.initial_seconds", retry.get("initial_seconds", 5.0), 0.1)
    most = _number(path, "retry.max_seconds", retry.get("max_seconds", 300.0), initial)
    return NodeConfig(
        path=path, ae_title=_ae(path, "ae_title", raw["ae_title"]),
        port=_port(path, "port", raw["port"]),
        bind=_address(path, "bind", raw.get("bind", "127.0.0.1")),
        model=resolve(raw["model"]), state_dir=resolve(raw["state_dir"]),
        destinations=tuple(destinations), allow=tuple(allow),
        stable_seconds=_number(path, "stable_seconds", raw.get("stable_seconds", 30.0), 0.0),
        spool_quota_mb=_number(path, "spool_quota_mb", raw.get("spool_quota_mb", 20_000.0), 1.0),
        retry_initial_seconds=initial, retry_max_seconds=most,
        keep_hours=_number(path, "keep_hours", raw.get("keep_hours", 72.0), 0.0),
        http_bind=_address(path, "http.bind", http.get("bind", "127.0.0.1")),
        http_port=None if http.get("port") is None else _port(path, "http.port", http["port"]),
        series_rules=None if raw.get("series_rules") is None else resolve(raw["series_rules"]),
        failure_report=_flag(path, "failure_report", raw.get("failure_report", True)), tls=tls)


def _tls(path: Path, raw: Any, resolve) -> Tls | None:
    if raw is None:
        return None
    keys = ("certificate", "private_key", "trusted")
    if not isinstance(raw, dict) or set(raw) != set(keys):
        raise CsvdnetInputError(path, f"tls: needs exactly {', '.join(keys)} (PEM files)")
    files = {k: resolve(raw[k]) for k in keys}
    for key, file in files.items():
        if not file.is_file():
            raise CsvdnetInputError(path, f"tls.{key}: {file} is not a file")
    tls = Tls(**files)
    try:
        tls.server_context()
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        raise CsvdnetInputError(path, f"tls: the certificate, key or trusted file cannot be "
                                      f"used ({error})") from None
    return tls
