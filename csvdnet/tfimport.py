"""Import TensorFlow for a command line tool without its C++ start-up chatter.

The ``tensorflow`` wheel prints, through absl, before it has read ``TF_CPP_MIN_LOG_LEVEL``::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

On a CPU-only machine every one of them is expected, and the ``E0000`` line reads like a failure.
:func:`import_tensorflow` imports TensorFlow and looks for GPUs (which is what calls ``cuInit``)
with the process's standard error going to a temporary file, then writes back every line but
those known start-up notices. When a GPU is found everything is written back: CUDA messages then
matter. Python exceptions are not affected (they are raised, and printed, after the restore).
"""

from __future__ import annotations

import os
import sys
import tempfile
from types import ModuleType

START_UP_NOTICES = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "cudart_stub.cc",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation_placer.cc",
    "TF-TRT Warning",
)
"""Substrings of the start-up lines dropped on a machine without a GPU."""


def is_start_up_notice(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's expected start-up notices on a CPU-only machine."""
    return any(notice in line for notice in START_UP_NOTICES)


def import_tensorflow() -> ModuleType:
    """``import tensorflow``, quietly on a CPU-only machine (see the module docstring).

    Sets ``TF_CPP_MIN_LOG_LEVEL`` to 2 (warnings and errors only) unless it is set already.
    A second call, or a call after TensorFlow was imported elsewhere, just returns the module.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 (an embedded interpreter)
        import tensorflow as tf
        return tf
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        gpus: list = []
        try:
            import tensorflow as tf
            gpus = tf.config.list_physical_devices("GPU")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True)
                    if gpus or not is_start_up_notice(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
    return tf
