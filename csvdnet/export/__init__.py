"""Exported models: a training run as a TF SavedModel in TF Serving's layout, and its checks.

- :mod:`~csvdnet.export.archive`: :func:`export_run` writes ``NAME/<version>/`` (the SavedModel
  with its three signatures, ``metadata.json`` listing every file's sha256, ``MODEL_CARD.md``);
- :mod:`~csvdnet.export.card`: :func:`model_card`, the card written from the metadata alone;
- :mod:`~csvdnet.export.verify`: reading and checking an export before anything in it is used
  (:func:`verify_model`, :func:`model_identity`); no TensorFlow, so prediction verifies a model
  without importing the exporter.

An export reads its run through :mod:`csvdnet.run` only; nothing here imports
:mod:`csvdnet.training`. Importing this package imports no TensorFlow (the archive imports it
when it builds).
"""

from csvdnet.export.archive import (DENSE_OUTPUTS, PRECISIONS, SCORE_OUTPUTS, ExportResult,
                                    export_run)
from csvdnet.export.card import model_card
from csvdnet.export.verify import (FIELDS_DIGEST_KEY, METADATA_NAME, MODEL_CARD_NAME,
                                   MODEL_FORMAT, MODEL_FORMAT_VERSION, SHIPPED_METADATA_SHA256,
                                   SIGNATURES, fields_sha256, find_version_dir,
                                   is_exported_model, model_identity, read_metadata, verify_model)

__all__ = ["DENSE_OUTPUTS", "ExportResult", "FIELDS_DIGEST_KEY", "METADATA_NAME",
           "MODEL_CARD_NAME", "MODEL_FORMAT", "MODEL_FORMAT_VERSION", "PRECISIONS",
           "SCORE_OUTPUTS", "SHIPPED_METADATA_SHA256", "SIGNATURES", "export_run",
           "fields_sha256", "find_version_dir", "is_exported_model", "model_card",
           "model_identity", "read_metadata", "verify_model"]
