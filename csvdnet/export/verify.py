"""An exported model directory, checked before anything in it is used (no TensorFlow here).

``csvdnet export`` writes a TF Serving layout, ``<NAME>/<version>/`` holding the SavedModel
(``saved_model.pb``, ``variables/``, ``fingerprint.pb``), ``MODEL_CARD.md`` and
``metadata.json``. ``metadata.json`` lists the sha256 of every other file of the version
directory. Before a model is loaded:

- ``metadata.json`` must be readable JSON of format ``csvdnet-model`` whose ``format_version``
  this csvdnet knows (a newer one is refused: its meaning may have changed);
- every file it lists must exist with that checksum (a missing or altered file is refused);
- every file present must be listed (a foreign file, e.g. one dropped in after export, is
  refused: TF Serving and ``tf.saved_model.load`` would read some of them, and a reviewed model
  should hold nothing unreviewed);
- no file is a symbolic link and no listed path leaves the directory.

Each refusal is a :class:`~csvdnet.errors.CsvdnetInputError` naming the file and the reason on
one line.

``metadata.json`` itself holds the thresholds, rule sets and preprocessing, and a user may edit
them on purpose; an edited model must never pass for the original. :func:`model_identity`
names a model ``NAME/VERSION@<first 12 hex of metadata.json's sha256>``, and
``NAME/VERSION+edited@...`` with the reason when ``metadata.json`` no longer matches its own
``fields_sha256`` (written by ``csvdnet export``: the digest of every other field) or, for a
model csvdnet ships, the digest pinned in :data:`SHIPPED_METADATA_SHA256`.

Nothing in a model directory is ever executed or unpickled: the SavedModel is a graph of
TensorFlow ops, the metadata is JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from csvdnet.errors import CsvdnetInputError
from csvdnet.fsutil import file_sha256

__all__ = ["FIELDS_DIGEST_KEY", "METADATA_NAME", "MODEL_CARD_NAME", "MODEL_FORMAT",
           "MODEL_FORMAT_VERSION", "SHIPPED_METADATA_SHA256", "SIGNATURES", "fields_sha256",
           "file_sha256", "find_version_dir", "is_exported_model", "model_identity",
           "read_metadata", "verify_model"]

MODEL_FORMAT = "csvdnet-model"
"""``metadata.json``'s ``format``: what says a folder is a csvdnet export."""
MODEL_FORMAT_VERSION = 1
"""The newest ``metadata.json`` format version this csvdnet reads (and the one it writes)."""
METADATA_NAME = "metadata.json"
MODEL_CARD_NAME = "MODEL_CARD.md"
SIGNATURES = ("serving_default", "score", "serve_bytes")
"""The serving signatures of every export (:mod:`csvdnet.export.archive`)."""

SHIPPED_METADATA_SHA256 = {
    "csvdnet-synthetic/2": "4da4eeb348ff0a322d7ab3764c9ce8fcedf63373df586a918290dc109792c3c8",
    "csvdnet-synthetic/3": "52c74f9ca4954e80b427b3797968700eb71a4e9e7ce5e24a2a1afeb124528bda",
    "csvdnet-synthetic/4": "d5ede29fe2726ce22b42bc80888a591035cfa4da77d8ae0b42cdae013fb2fedf",
    "csvdnet-synthetic/5": "ae1f3bc9a37f3ae1fd481378605e64a44b9d3ffb44052a4caccbc1717f590853",
}
"""sha256 of ``metadata.json`` of each model csvdnet ships (``saved_models/``, what ``csvdnet
demo`` runs), by ``NAME/VERSION``: a copy whose metadata differs is named edited. A new shipped
export adds its line here (tests/test_export.py checks the shipped folder against it)."""
FIELDS_DIGEST_KEY = "fields_sha256"
"""``metadata.json`` field holding the sha256 of its other fields (:func:`fields_sha256`)."""

_REQUIRED = {"name": str, "version": int, "channels": list, "preprocess": dict, "window": list,
             "overlap": (int, float), "gaussian_blend": bool, "stride": int, "thresholds": dict,
             "min_lesion_mm3": dict, "rule_sets": list, "score_classes": int,
             "modality_dropout": (int, float), "files": dict}


def _numbered(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def is_exported_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like an export: a version folder or a ``NAME`` folder of them.

    Only the shape is looked at (a ``metadata.json`` or ``saved_model.pb``, or numbered
    sub-folders); :func:`verify_model` says whether it is sound.
    """
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / METADATA_NAME).exists() or (path / "saved_model.pb").exists():
        return True
    return bool(_numbered(path))


def find_version_dir(path: str | os.PathLike) -> Path:
    """The version folder of ``path``: itself, or the highest numbered one of a ``NAME`` folder.

    Raises:
        CsvdnetInputError: Not a folder, or a folder with no numbered version in it.
    """
    path = Path(path)
    if not path.is_dir():
        raise CsvdnetInputError(path, "model directory not found")
    if (path / METADATA_NAME).exists() or (path / "saved_model.pb").exists():
        return path
    versions = _numbered(path)
    if not versions:
        raise CsvdnetInputError(path, "not an exported model: no metadata.json and no numbered "
                                      "version folder (NAME/<version>/) in it")
    return path / str(versions[-1])


def read_metadata(version_dir: str | os.PathLike) -> dict[str, Any]:
    """``version_dir/metadata.json``, its format and fields checked.

    Raises:
        CsvdnetInputError: Missing, unreadable, of another format, of a newer format version,
            or lacking a field.
    """
    path = Path(version_dir) / METADATA_NAME
    if path.is_symlink():
        raise CsvdnetInputError(path, "is a symbolic link: an export holds plain files only")
    if not path.is_file():
        raise CsvdnetInputError(path, "missing: every exported model carries its metadata.json "
                                      "(written by `csvdnet export`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CsvdnetInputError(path, f"not readable JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise CsvdnetInputError(path, f"not a csvdnet model (format is not {MODEL_FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CsvdnetInputError(path, f"format_version must be a positive integer, got "
                                      f"{version!r}")
    if version > MODEL_FORMAT_VERSION:
        from csvdnet import __version__

        raise CsvdnetInputError(path, f"format_version {version} is newer than this csvdnet "
                                      f"{__version__} reads ({MODEL_FORMAT_VERSION}): upgrade "
                                      f"csvdnet to use this model")
    for key, kind in _REQUIRED.items():
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise CsvdnetInputError(path, f"field {key!r} missing or of the wrong type "
                                          f"(got {type(value).__name__})")
    return data


def _listed_path(version_dir: Path, name: Any) -> Path:
    pure = PurePosixPath(str(name))
    if (not isinstance(name, str) or pure.is_absolute() or ".." in pure.parts
            or not pure.parts or name == METADATA_NAME):
        raise CsvdnetInputError(version_dir / METADATA_NAME,
                                f"files: {name!r} is not a plain path inside the model folder")
    return version_dir.joinpath(*pure.parts)


def verify_model(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """Check an exported model completely before use.

    Args:
        path: A version folder (``NAME/1``) or a ``NAME`` folder (its highest version).

    Returns:
        ``(version folder, metadata)``.

    Raises:
        CsvdnetInputError: The first problem found, naming the file: metadata missing, foreign
            or too new; a listed file missing or altered; an unlisted file present; a link.
    """
    version_dir = find_version_dir(path)
    metadata = read_metadata(version_dir)
    listed = {}
    for name, digest in metadata["files"].items():
        file = _listed_path(version_dir, name)
        listed[file] = digest
    for file in sorted(version_dir.rglob("*")):
        if file.is_symlink():
            raise CsvdnetInputError(file, "is a symbolic link: an export holds plain files only")
        if file.is_file() and file != version_dir / METADATA_NAME and file not in listed:
            raise CsvdnetInputError(file, "not part of the exported model (not listed in "
                                          "metadata.json): a foreign file, refused")
    for file, digest in listed.items():
        if not file.is_file():
            raise CsvdnetInputError(file, "missing: listed in metadata.json but not in the model "
                                          "folder")
        if file_sha256(file) != digest:
            raise CsvdnetInputError(file, "sha256 differs from metadata.json: the file was "
                                          "altered after export, refused")
    return version_dir, metadata


def fields_sha256(metadata: dict[str, Any]) -> str:
    """sha256 of a metadata dict's fields other than :data:`FIELDS_DIGEST_KEY`, as canonical
    JSON (sorted keys, no spaces): changes with any value, not with the file's formatting."""
    fields = {key: value for key, value in metadata.items() if key != FIELDS_DIGEST_KEY}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_identity(version_dir: str | os.PathLike, metadata: dict[str, Any]
                   ) -> tuple[str, str, str | None]:
    """The id a verified export is reported under, its metadata digest, and why it is edited.

    Args:
        version_dir: The version folder (:func:`verify_model`).
        metadata: Its metadata (:func:`verify_model`).

    Returns:
        ``(id, sha256 of metadata.json, edited)``: id ``NAME/VERSION@<12 hex>``, or
        ``NAME/VERSION+edited@<12 hex>`` when ``edited`` (a one-line reason) is not None.
    """
    digest = file_sha256(Path(version_dir) / METADATA_NAME)
    name = f"{metadata['name']}/{metadata['version']}"
    edited = None
    recorded = metadata.get(FIELDS_DIGEST_KEY)
    if recorded is not None and recorded != fields_sha256(metadata):
        edited = ("metadata.json was edited after export (its fields no longer match "
                  f"{FIELDS_DIGEST_KEY}): thresholds, rule sets or preprocessing may differ from "
                  f"the exported {name}")
    pinned = SHIPPED_METADATA_SHA256.get(name)
    if pinned is not None and digest != pinned:
        edited = (f"metadata.json differs from the shipped {name} (sha256 {pinned[:12]}…, this "
                  f"one {digest[:12]}…): thresholds, rule sets or preprocessing may have been "
                  "changed")
    return f"{name}{'+edited' if edited else ''}@{digest[:12]}", digest, edited
