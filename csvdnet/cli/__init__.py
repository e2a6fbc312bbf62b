"""The ``csvdnet`` command line: a click group whose commands are thin calls into the library.

Nothing heavy is imported at module level, so ``csvdnet --help`` and ``csvdnet --version`` stay
fast; TensorFlow is imported only inside the commands that need it.

This module builds the group; each command group has its module: :mod:`~csvdnet.cli.data`
(synth, preprocess), :mod:`~csvdnet.cli.training` (train, calibrate),
:mod:`~csvdnet.cli.inference` (predict, demo), :mod:`~csvdnet.cli.exporting` (export),
:mod:`~csvdnet.cli.evaluation` (evaluate); :mod:`~csvdnet.cli.options` holds what they share.
``csvdnet node`` and ``csvdnet review`` live in csvdnet/node/cli.py and csvdnet/review/cli.py.
"""

from __future__ import annotations

import click

from csvdnet import __version__
from csvdnet.cli.data import preprocess, synth
from csvdnet.cli.evaluation import evaluate
from csvdnet.cli.exporting import export
from csvdnet.cli.inference import demo, predict
from csvdnet.cli.training import calibrate, train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="csvdnet")
def cli() -> None:
    """csvdnet: cerebral small vessel disease markers and the total SVD score from brain MRI."""


for _command in (synth, preprocess, train, calibrate, predict, export, demo, evaluate):
    cli.add_command(_command)


def _register_node() -> None:
    """``csvdnet node`` (issue 20): its group lives in csvdnet/node/cli.py."""
    from csvdnet.node.cli import node

    cli.add_command(node)


_register_node()
from csvdnet.review.cli import review as _review  # noqa: E402  (issue 23: csvdnet/review/cli.py)
cli.add_command(_review)
