"""The REST client against TF Serving's REST predict API, and the windowed computation it runs.

TF Serving itself cannot be installed here. :class:`FakeServing` stands in for it: the exported
SavedModel loaded in process behind a loopback HTTP server (127.0.0.1, an OS-chosen port, one
thread, shut down after the module) that maps requests and answers as TF Serving's REST API
documents (https://www.tensorflow.org/tfx/serving/api_rest): row (``instances``) and columnar
(``inputs``) requests, ``{"b64": ...}`` binary values, the output name left out for a
signature with a single output, ``{"error": ...}`` with HTTP 400.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading

import numpy as np
import pytest

from csvdnet.errors import CsvdnetInputError
from csvdnet.inference.serving import RestClient, SignatureForward, parse_serving_url

MAX_BODY = 64 << 20


def _decode(value):
    """JSON value -> nested lists with ``{"b64": s}`` replaced by the bytes."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class FakeServing:
    """A loopback TF Serving REST stand-in over ``tf.saved_model.load(version_dir)``."""

    def __init__(self, loaded, name: str, version: int):
        import tensorflow as tf

        self.tf, self.loaded, self.name, self.version = tf, loaded, name, str(version)
        self.requests: list[dict] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 30

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                match = re.fullmatch(rf"/v1/models/{fake.name}(?:/versions/(\d+))?", self.path)
                if not match or match[1] not in (None, fake.version):
                    return self._send(404, {"error": f"Servable not found: {self.path}"})
                self._send(200, {"model_version_status": [
                    {"version": fake.version, "state": "AVAILABLE",
                     "status": {"error_code": "OK", "error_message": ""}}]})

            def do_POST(self):
                match = re.fullmatch(rf"/v1/models/{fake.name}/versions/(\d+):predict", self.path)
                if not match or match[1] != fake.version:
                    return self._send(404, {"error": f"Servable not found: {self.path}"})
                length = int(self.headers.get("Content-Length", 0))
                if length > MAX_BODY:
                    return self._send(413, {"error": "request too large"})
                request = json.loads(self.rfile.read(length))
                fake.requests.append(request)
                try:
                    self._send(200, fake.predict(request))
                except Exception as exc:  # TF Serving answers every failure as 400 + error
                    self._send(400, {"error": f"{type(exc).__name__}: {exc}"})

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/models/{name}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def predict(self, request: dict) -> dict:
        tf = self.tf
        signature = self.loaded.signatures[request.get("signature_name", "serving_default")]
        specs = signature.structured_input_signature[1]
        if "instances" in request:
            rows = [_decode(r) for r in request["instances"]]
            if all(isinstance(r, dict) for r in rows):
                inputs = {k: [r[k] for r in rows] for k in rows[0]}
            else:
                (only,) = specs
                inputs = {only: rows}
        else:
            given = _decode(request["inputs"])
            inputs = given if isinstance(given, dict) else {next(iter(specs)): given}
        tensors = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()}
        outputs = {k: v.numpy() for k, v in signature(**tensors).items()}
        if "instances" in request:
            batch = len(next(iter(outputs.values())))
            if len(outputs) == 1:
                (value,) = outputs.values()
                return {"predictions": [value[i].tolist() for i in range(batch)]}
            return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()}
                                    for i in range(batch)]}
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {k: v.tolist() for k, v in outputs.items()}}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def loaded(exported_model):
    import tensorflow as tf

    return tf.saved_model.load(str(exported_model))


@pytest.fixture(scope="module")
def serving(loaded):
    with FakeServing(loaded, "tiny", 1) as fake:
        yield fake


def _in_process(loaded, signature, batch):
    import tensorflow as tf

    return {k: v.numpy() for k, v in loaded.signatures[signature](
        image=tf.constant(batch)).items()}


# ---------------------------------------------------------------------------------------------
# No server needed.

def test_whole_volume_calls_go_to_score_and_windows_to_serving_default():
    calls = []

    def call(signature, batch):
        calls.append((signature, batch.shape))
        out = {"score_logits": np.zeros((1, 4), np.float32)}
        if signature == "serving_default":
            out.update({t: np.zeros(batch.shape[:4] + (1,), np.float32)
                        for t in ("wmh", "rssi", "lacune", "cmb", "epvs")})
        return out

    forward = SignatureForward(call, (16, 16, 16))
    assert set(forward(np.zeros((1, 32, 16, 16, 5)))) == {"score"}
    assert set(forward(np.zeros((1, 16, 16, 16, 5)))) == {"score", "wmh", "rssi", "lacune",
                                                          "cmb", "epvs"}
    assert set(forward(np.zeros((1, 8, 16, 12, 5)))) >= {"wmh"}  # a short axis: still a window
    assert [c[0] for c in calls] == ["score", "serving_default", "serving_default"]


@pytest.mark.parametrize("url, pinned", [
    ("http://h:8501/v1/models/m", "http://h:8501/v1/models/m/versions/3"),
    ("http://h:8501/v1/models/m/", "http://h:8501/v1/models/m/versions/3"),
    ("https://h/prefix/v1/models/m/versions/3:predict", "https://h/prefix/v1/models/m/versions/3"),
])
def test_serving_url_is_pinned_to_the_local_version(url, pinned):
    assert parse_serving_url(url, 3) == (pinned, "m")


@pytest.mark.parametrize("url, message", [
    ("http://h:8501/v1/models/m/versions/2", "version 2 but the local model metadata is "
                                             "version 3"),
    ("h:8501/models/m", "not a TF Serving REST model URL"),
])
def test_bad_serving_urls_are_refused(url, message):
    with pytest.raises(CsvdnetInputError, match=message):
        parse_serving_url(url, 3)


def test_bytes_body_is_a_quarter_of_the_json_numbers():
    client = RestClient("http://h:1/v1/models/m", 1, form="bytes")
    batch = np.random.default_rng(0).normal(size=(1, 16, 16, 16, 5)).astype(np.float32)
    called, raw = client.body("serving_default", batch)
    assert called == "serve_bytes" and raw["inputs"]["shape"] == [1, 16, 16, 16, 5]
    assert np.array_equal(np.frombuffer(base64.b64decode(raw["inputs"]["image_bytes"]["b64"]),
                                        "<f4").reshape(batch.shape), batch)
    plain = RestClient("http://h:1/v1/models/m", 1, form="inputs").body("serving_default",
                                                                         batch)[1]
    assert len(json.dumps(raw)) < 0.3 * len(json.dumps(plain))
    # The whole-volume score call has no bytes signature: columnar JSON.
    assert client.body("score", batch)[0] == "score"


# ---------------------------------------------------------------------------------------------
# Against the loopback server.

@pytest.mark.parametrize("form", ["instances", "inputs", "bytes"])
def test_rest_mapping_matches_in_process_outputs(serving, loaded, form):
    client = RestClient(serving.url, 1, form=form)
    client.check()
    batch = np.random.default_rng(1).normal(size=(2, 16, 12, 16, 5)).astype(np.float32)
    expected = _in_process(loaded, "serving_default", batch)
    got = client.predict("serving_default", batch)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].shape == value.shape and got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], value, atol=1e-6, err_msg=name)
    score = client.predict("score", batch)  # two outputs: named in the answer
    np.testing.assert_allclose(score["score_logits"], expected["score_logits"], atol=1e-6)
    np.testing.assert_allclose(score["score_probs"], expected["score_probs"], atol=1e-6)
    request = serving.requests[-2]
    assert ("instances" in request) == (form == "instances")
    assert request["signature_name"] == ("serve_bytes" if form == "bytes" else "serving_default")


def test_single_output_answers_without_a_name_are_read(serving):
    client = RestClient(serving.url, 1, form="inputs",
                        outputs={"score": ["score_logits"]})
    answer = {"outputs": [[0.5, -1.0, 2.0, 0.0]]}
    client._request = lambda method, url, body=None: answer
    np.testing.assert_array_equal(client.predict("score", np.zeros((1, 4, 4, 4, 5)))
                                  ["score_logits"], [[0.5, -1.0, 2.0, 0.0]])
    answer = {"predictions": [[0.5, -1.0, 2.0, 0.0]]}
    np.testing.assert_array_equal(client.predict("score", np.zeros((1, 4, 4, 4, 5)))
                                  ["score_logits"], [[0.5, -1.0, 2.0, 0.0]])


def test_server_errors_are_one_line_naming_the_url(serving):
    client = RestClient(serving.url, 1, form="inputs")
    with pytest.raises(CsvdnetInputError, match=r":predict: TF Serving answered HTTP 400: ") \
            as caught:
        client.predict("serving_default", np.zeros((1, 8, 8, 8, 3), np.float32))  # 3 channels
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 500
    with pytest.raises(CsvdnetInputError, match="versions/2: TF Serving answered HTTP 404"):
        RestClient(serving.url, 2).check()  # the server has only version 1
    dead = RestClient("http://127.0.0.1:9/v1/models/tiny", 1)  # discard port: nothing listens
    dead.timeout = 2.0
    with pytest.raises(CsvdnetInputError, match="no answer from TF Serving"):
        dead.check()


@pytest.mark.slow
@pytest.mark.parametrize("form", ["bytes", "instances"])
def test_served_predictor_runs_the_same_windowed_network(serving, exported_model, tiny_run,
                                                         form):
    from csvdnet.inference.predictor import Predictor

    served = Predictor.from_dir(exported_model, serving_url=serving.url, serving_form=form)
    in_process = Predictor.from_dir(exported_model)
    keras_run = Predictor.from_dir(tiny_run[1])
    assert served.info.path == f"{serving.url}/versions/1"
    image = np.random.default_rng(2).normal(size=(32, 24, 20, 5)).astype(np.float32)
    before = len(serving.requests)
    got, local, reference = (p._network(image) for p in (served, in_process, keras_run))
    # Windows of 16 over 32 x 24 x 20 with overlap 0.25: 3 x 2 x 2 serving_default calls, one
    # whole-volume score call first.
    requests = serving.requests[before:]
    assert [r["signature_name"] for r in requests][:1] == ["score"]
    assert len(requests) == 1 + 3 * 2 * 2
    for name, value in reference.items():
        np.testing.assert_allclose(local[name], value, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(got[name], value, atol=1e-5, err_msg=name)


def test_a_training_run_cannot_be_served(tiny_run, serving):
    from csvdnet.inference.predictor import Predictor

    with pytest.raises(CsvdnetInputError, match="--serving-url needs an exported model"):
        Predictor.from_dir(tiny_run[1], serving_url=serving.url)


@pytest.mark.slow
def test_cli_predict_through_the_server_writes_what_in_process_predict_writes(
        serving, exported_model, tiny_run, tmp_path):
    from click.testing import CliRunner

    from csvdnet.cli import cli

    manifest = tiny_run[0]
    subject = sorted(p for p in manifest.parent.iterdir() if p.is_dir())[0]
    reports = {}
    for label, extra in (("served", ["--serving-url", serving.url]), ("local", [])):
        out = tmp_path / label
        result = CliRunner().invoke(cli, ["predict", str(subject), "--model",
                                          str(exported_model), "--out", str(out), "--quiet",
                                          *extra])
        assert result.exit_code == 0, result.output
        reports[label] = json.loads((out / subject.name / "report.json").read_text())
    served, local = reports["served"], reports["local"]
    assert served["model"]["path"].startswith("http://127.0.0.1:")
    assert served["model"]["sha256"] == local["model"]["sha256"]
    assert served["measurements"] == local["measurements"]
    assert served["scores"] == local["scores"]
    np.testing.assert_allclose(served["ordinal"]["class_probabilities"],
                               local["ordinal"]["class_probabilities"], atol=1e-6)
