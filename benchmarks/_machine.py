"""One description of the machine a benchmark ran on, shared by every script in benchmarks/."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """``"<CPU model>, <N> CPUs, Python <version>"`` for a results header."""
    return f"{cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
