"""What several commands share: the option decorators of the Beam engine and of DICOM input,
the check of engine-only options, exit code 2 on input errors, and the quiet TensorFlow import."""

from __future__ import annotations

import functools
import sys

import click

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


_ENGINE = click.option(
    "--engine", default="local", show_default=True, type=click.Choice(["local", "beam"]),
    help="local: this machine; beam: an Apache Beam pipeline on --runner (the extra "
         "csvdnet[beam]; paths must be ones every worker sees).")
_RUNNER = click.option(
    "--runner", default="DirectRunner", show_default=True,
    type=click.Choice(["DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner"]),
    help="Beam runner (--engine beam); its options go after --, e.g. -- "
         "--direct_num_workers=2 --direct_running_mode=multi_processing.")
_BEAM_ARGS = click.argument("beam_args", nargs=-1, metavar="[-- BEAM_OPTIONS...]",
                            type=click.UNPROCESSED)


_SERIES_RULES = click.option(
    "--series-rules", default=None, type=click.Path(exists=True, dir_okay=False),
    help="DICOM input: series selection rules (YAML) replacing the shipped "
         "csvdnet/dicom/series_rules.yaml.")
_DICOM_ID = click.option(
    "--dicom-id", default="{patient_id}_{study_date}_{uid_hash}", show_default=True,
    help="DICOM input: subject id of each study (fields patient_id, study_date, uid_hash, "
         "accession, study_id, study_uid).")


def _check_engine(engine: str, beam_args: tuple[str, ...], **beam_only: object) -> None:
    """Beam options only with --engine beam; local-only options not with it."""
    if engine != "beam" and beam_args:
        raise click.UsageError(f"unexpected argument(s) {' '.join(beam_args)}: Beam options "
                               f"(after --) need --engine beam")
    if engine == "beam":
        for flag, value in beam_only.items():
            if value:
                raise click.UsageError(f"{flag} is for --engine local; on Beam the runner "
                                       f"decides the parallelism (e.g. -- "
                                       f"--direct_num_workers=2)")


def _quiet_tensorflow() -> None:
    """Import TensorFlow now, without its C++ start-up notices on a CPU-only machine."""
    from csvdnet.tfimport import import_tensorflow

    import_tensorflow()
