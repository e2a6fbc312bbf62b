"""TensorFlow's C++ start-up notices stay off a CPU-only machine's terminal."""

from __future__ import annotations

import subprocess
import sys

from csvdnet.tfimport import is_start_up_notice

CUINIT = ("E0000 00:00:1796193964.313955   23181 cuda_platform.cc:52] failed call to cuInit: "
          "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
STUB = ("I0000 00:00:1796193930.571578   23181 cudart_stub.cc:31] Could not find cuda drivers on "
        "your machine, GPU will not be used.")


def test_start_up_notices_are_recognised_and_other_lines_are_not():
    assert is_start_up_notice(CUINIT)
    assert is_start_up_notice(STUB)
    assert is_start_up_notice("WARNING: All log messages before absl::InitializeLog() is called "
                              "are written to STDERR")
    assert not is_start_up_notice("E0000 ... op_kernel.cc:1] OOM when allocating tensor")
    assert not is_start_up_notice("Traceback (most recent call last):")


def test_a_cpu_only_import_prints_no_cuda_lines():
    code = ("import sys; from csvdnet.tfimport import import_tensorflow; tf = import_tensorflow(); "
            "print('GPU' if tf.config.list_physical_devices('GPU') else 'CPU'); "
            "print('after', file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "GPU":
        return  # with a GPU every CUDA line is written back, by design
    assert "cuInit" not in done.stderr and "cudart_stub" not in done.stderr, done.stderr
    assert done.stderr.strip().endswith("after")  # stderr works again after the import
