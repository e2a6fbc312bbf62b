"""Call a csvdnet model on TensorFlow Serving from plain Python (numpy + the standard library).

This is what ``csvdnet predict --serving-url`` does for its network step
(``csvdnet.inference.serving``), stripped down for a deployer writing a client of their own.
It sends one window of a preprocessed volume (``[1, x, y, z, channels]`` float32, channels in
the order of the model's ``metadata.json``) three ways and prints the outputs' shapes:

1. ``serving_default``, columnar JSON (``"inputs"``);
2. ``serve_bytes``: the window as raw little-endian float32 bytes, base64 (``{"b64": ...}``);
3. ``score``: the ordinal total SVD score only (``score_logits``, ``score_probs``).

A real prediction slides windows of ``metadata.json`` ``window`` over the whole preprocessed
volume (overlap ``overlap``, Gaussian blending) and takes the score from one whole-volume call of
``score``; ``csvdnet predict --serving-url`` does all of it, plus preprocessing and everything
after the network.

Usage::

    python inference/rest_client_example.py http://localhost:8501/v1/models/csvdnet-synthetic \
        saved_models/csvdnet-synthetic/2/metadata.json
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.request

import numpy as np


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}:predict", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def main(url: str, metadata_path: str) -> None:
    metadata = json.load(open(metadata_path, encoding="utf-8"))
    url = f"{url.rstrip('/')}/versions/{metadata['version']}"  # the version the metadata describes
    window = np.random.default_rng(0).normal(
        size=(1, *metadata["window"], len(metadata["channels"]))).astype(np.float32)

    columnar = post(url, {"signature_name": "serving_default",
                          "inputs": {"image": window.tolist()}})["outputs"]
    print({name: np.asarray(value).shape for name, value in columnar.items()})

    raw = base64.b64encode(window.astype("<f4").tobytes()).decode("ascii")
    by_bytes = post(url, {"signature_name": "serve_bytes",
                          "inputs": {"image_bytes": {"b64": raw}, "shape": list(window.shape)}})
    print({name: np.asarray(value).shape for name, value in by_bytes["outputs"].items()})

    score = post(url, {"signature_name": "score", "inputs": {"image": window.tolist()}})["outputs"]
    print("P(total SVD score = 0..4):", np.round(score["score_probs"][0], 3))


if __name__ == "__main__":
    main(*sys.argv[1:3])
