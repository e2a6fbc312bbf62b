"""The network step of prediction through an exported model's signatures, in process or over REST.

:class:`SignatureForward` is the ``forward`` a :class:`~csvdnet.inference.predictor.Predictor`
runs for an exported model (``csvdnet export``). The predictor calls it exactly as it calls a
Keras model: once on the whole volume (for the ordinal score) and once per sliding window of the
training patch (for the dense outputs). A call on a volume larger than the window along any axis
is the whole-volume call: it goes to the ``score`` signature and returns only the score (a
whole padded volume gives other dense outputs than windows, and shipping them back would be
waste). Every other call is a window: it goes to ``serving_default``. So an in-process SavedModel,
a TF Serving instance and the in-memory Keras model run the same windowed computation; only
where the network runs differs.

:class:`RestClient` speaks TensorFlow Serving's REST predict API
(``POST /v1/models/NAME/versions/N:predict``) with only the standard library:

- ``"instances"`` (row form): ``{"signature_name": s, "instances": [{"image": volume}, ...]}``
  -> ``{"predictions": [{output: value}, ...]}``;
- ``"inputs"`` (columnar form): ``{"signature_name": s, "inputs": {"image": batch}}`` ->
  ``{"outputs": {output: value}}``;
- ``"bytes"``: windows go to ``serve_bytes`` as ``{"inputs": {"image_bytes": {"b64": raw
  float32}, "shape": [...]}}`` (a request about a quarter the size of the JSON numbers); the
  whole-volume score call goes to ``score`` in columnar form (``serve_bytes`` would send the
  whole volume's dense outputs back).

TF Serving leaves the output name out when a signature has a single output; both shapes of
answer are read. The client pins the model version of the local ``metadata.json`` (appended to a
URL without one, checked against a URL with one), so the thresholds and preprocessing applied
locally are those of the network that answers.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from csvdnet import DETECTION_TASKS, SCORE_TASK, SEGMENTATION_TASKS
from csvdnet.errors import CsvdnetInputError

__all__ = ["FORMS", "RestClient", "SignatureForward", "in_process_caller", "parse_serving_url"]

FORMS = ("bytes", "inputs", "instances")
"""REST request forms (see the module doc)."""

DENSE = SEGMENTATION_TASKS + DETECTION_TASKS
MAX_REASON = 300
"""Characters of a server's error message kept (TF Serving may echo the request)."""
_URL = re.compile(r"^(?P<base>https?://[^/]+(?:/.*)?/v1/models/(?P<name>[^/:]+))"
                  r"(?:/versions/(?P<version>\d+))?/?(?::predict)?$")


class SignatureForward:
    """``forward(batch) -> {task: array}`` over an exported model's signatures.

    Args:
        call: ``(signature name, float32 batch) -> {output name: array}``.
        window: The sliding window (``metadata.json`` ``window``): calls on anything larger
            along an axis are whole-volume calls (score only).
    """

    def __init__(self, call: Callable[[str, np.ndarray], Mapping[str, Any]],
                 window: Sequence[int]) -> None:
        self.call = call
        self.window = tuple(int(w) for w in window)

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        batch = np.asarray(batch, np.float32)
        if any(s > w for s, w in zip(batch.shape[1:4], self.window)):
            outputs = self.call("score", batch)
            return {SCORE_TASK: np.asarray(outputs["score_logits"], np.float32)}
        outputs = self.call("serving_default", batch)
        result = {task: np.asarray(outputs[task], np.float32) for task in DENSE}
        result[SCORE_TASK] = np.asarray(outputs["score_logits"], np.float32)
        return result


def in_process_caller(loaded: Any) -> Callable[[str, np.ndarray], dict[str, np.ndarray]]:
    """``call`` for :class:`SignatureForward` over a ``tf.saved_model.load``-ed model."""
    import tensorflow as tf

    def call(signature: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = loaded.signatures[signature](image=tf.constant(batch, tf.float32))
        return {name: value.numpy() for name, value in outputs.items()}

    return call


def parse_serving_url(url: str, version: int) -> tuple[str, str]:
    """``(model URL pinned to version, model name)`` of a TF Serving REST URL.

    Accepts ``http(s)://host:port/v1/models/NAME``, optionally with ``/versions/N`` and
    ``:predict``.

    Raises:
        CsvdnetInputError: Not such a URL, or one naming another version than ``version``.
    """
    match = _URL.match(url.strip())
    if not match:
        raise CsvdnetInputError("--serving-url", f"{url!r} is not a TF Serving REST model URL "
                                                 f"(http://HOST:8501/v1/models/NAME)")
    if match["version"] is not None and int(match["version"]) != int(version):
        raise CsvdnetInputError("--serving-url", f"asks for version {match['version']} but the "
                                                 f"local model metadata is version {version}: "
                                                 f"they must be the same model")
    return f"{match['base']}/versions/{int(version)}", match["name"]


def _single(outputs: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Outputs by name; TF Serving omits the name of a signature's only output."""
    if isinstance(outputs, dict) and set(names) <= set(outputs):
        return {name: np.asarray(outputs[name], np.float32) for name in names}
    if len(names) == 1:
        return {names[0]: np.asarray(outputs, np.float32)}
    raise ValueError(f"expected outputs {', '.join(names)}, got {type(outputs).__name__}")


class RestClient:
    """A TF Serving REST client for the predictor's network step.

    Args:
        url: ``http://HOST:8501/v1/models/NAME`` (a version in it must be ``version``).
        version: The model version of the local ``metadata.json``.
        form: ``"bytes"``, ``"inputs"`` or ``"instances"`` (module doc).
        outputs: Output names of each signature (``metadata.json`` ``signatures``).
        timeout: Seconds to wait for one answer.
    """

    def __init__(self, url: str, version: int, *, form: str = "bytes",
                 outputs: Mapping[str, Sequence[str]] | None = None,
                 timeout: float = 300.0) -> None:
        if form not in FORMS:
            raise CsvdnetInputError("--serving-form", f"must be one of {', '.join(FORMS)}, "
                                                      f"got {form!r}")
        self.url, self.name = parse_serving_url(url, version)
        self.form = form
        self.timeout = float(timeout)
        dense_and_score = [*DENSE, "score_logits", "score_probs"]
        self.outputs = {"serving_default": dense_and_score, "serve_bytes": dense_and_score,
                        "score": ["score_logits", "score_probs"], **(outputs or {})}

    # ---------------------------------------------------------------------------------------
    # Transport.

    def _request(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                reason = str(json.loads(exc.read()).get("error", exc.reason))
            except (ValueError, AttributeError):
                reason = str(exc.reason)
            reason = " ".join(reason.split())  # one line, and not a whole echoed request
            if len(reason) > MAX_REASON:
                reason = reason[:MAX_REASON] + " [...]"
            raise CsvdnetInputError(url, f"TF Serving answered HTTP {exc.code}: {reason}") \
                from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CsvdnetInputError(url, f"no answer from TF Serving ({reason})") from None

    def check(self) -> None:
        """Ask the server whether the pinned version is loaded (``GET`` model status).

        Raises:
            CsvdnetInputError: Unreachable, or the version is not ``AVAILABLE``.
        """
        status = self._request("GET", self.url)
        states = {str(s.get("version")): s.get("state")
                  for s in status.get("model_version_status", [])}
        version = self.url.rsplit("/", 1)[-1]
        if states.get(version) != "AVAILABLE":
            raise CsvdnetInputError(self.url, f"the server does not have version {version} of "
                                              f"{self.name} available (states: {states})")

    # ---------------------------------------------------------------------------------------
    # Predict.

    def body(self, signature: str, batch: np.ndarray) -> tuple[str, dict[str, Any]]:
        """``(signature actually called, JSON body)`` of a call in this client's form."""
        batch = np.ascontiguousarray(batch, np.float32)
        if self.form == "bytes" and signature == "serving_default":
            raw = base64.b64encode(batch.astype("<f4").tobytes()).decode("ascii")
            return "serve_bytes", {"signature_name": "serve_bytes",
                                   "inputs": {"image_bytes": {"b64": raw},
                                              "shape": list(batch.shape)}}
        if self.form == "instances":
            return signature, {"signature_name": signature,
                               "instances": [{"image": item.tolist()} for item in batch]}
        return signature, {"signature_name": signature, "inputs": {"image": batch.tolist()}}

    def predict(self, signature: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``signature`` (``serving_default`` or ``score``) on ``batch`` on the server."""
        called, body = self.body(signature, batch)
        answer = self._request("POST", f"{self.url}:predict", body)
        names = self.outputs[called]
        try:
            if "predictions" in answer:  # row form: one entry per instance
                rows = [_single(row, names) for row in answer["predictions"]]
                return {name: np.stack([row[name] for row in rows]) for name in names}
            return _single(answer["outputs"], names)
        except (KeyError, TypeError, ValueError) as exc:
            raise CsvdnetInputError(self.url, f"unexpected answer from TF Serving ({exc})") \
                from None
