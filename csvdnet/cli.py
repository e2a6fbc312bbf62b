"""The ``csvdnet`` command line: a click group whose commands are thin calls into the library.

Nothing heavy is imported at module level, so ``csvdnet --help`` and ``csvdnet --version`` stay
fast; TensorFlow is imported only inside the commands that need it.
"""

from __future__ import annotations

import functools
import sys

import click

from csvdnet import __version__
from csvdnet.errors import CsvdnetInputError


def _input_errors_exit_2(fn):
    """Print a CsvdnetInputError as one line on stderr and exit with code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CsvdnetInputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="csvdnet")
def cli() -> None:
    """csvdnet: cerebral small vessel disease markers and the total SVD score from brain MRI."""
