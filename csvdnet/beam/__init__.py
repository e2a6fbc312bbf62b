"""csvdnet's cohort steps on Apache Beam: prediction and the preprocessing cache at scale.

``csvdnet predict ... --engine beam`` (:func:`csvdnet.beam.predict.predict_cohort_beam`) and
``csvdnet preprocess ... --engine beam`` (:func:`csvdnet.beam.preprocess.preprocess_cohort_beam`)
run the same library functions as the local commands, as steps of a Beam pipeline, on any Beam
runner (DirectRunner here; Dataflow, Flink, Spark on a cluster). They write the same files.

Apache Beam is the optional extra ``csvdnet[beam]``; importing this package does not import it
(:func:`require_beam` says how to install it when it is missing).

Both pipelines carry **file paths** between their fusion-breaking steps: the launching process
lists the subjects (small records of paths), a ``Reshuffle`` spreads them over the workers, and
each worker then loads, preprocesses, runs the network on, postprocesses and writes one subject
in a single fused stage, so the working-grid volume and the network's outputs (tens of MB a
subject) pass between those steps as objects in the worker's memory, never encoded or shuffled.
What leaves a worker is a subject's ``scores.tsv`` row or its error (a few hundred bytes),
gathered by one last step that writes ``scores.tsv`` / ``errors.tsv`` (the cache's
``index.json``). Every path must therefore be one that all workers and the launching process
see (a shared filesystem).
"""

from __future__ import annotations

from csvdnet.errors import CsvdnetInputError

__all__ = ["BEAM_MISSING", "RUNNERS", "pipeline_options", "require_beam"]

BEAM_MISSING = ("the beam engine needs Apache Beam, which is not installed: "
                "pip install 'csvdnet[beam]'")
RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")
"""The Beam runners ``--runner`` accepts."""


def require_beam() -> None:
    """Import Apache Beam or say how to install it.

    Raises:
        CsvdnetInputError: ``apache_beam`` is not importable.
    """
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        raise CsvdnetInputError("--engine beam", BEAM_MISSING) from None


def pipeline_options(runner: str, beam_args: tuple[str, ...] | list[str] = ()) -> object:
    """Beam ``PipelineOptions`` for ``runner`` and the user's further Beam options.

    Raises:
        CsvdnetInputError: An unknown runner, ``--runner`` also among ``beam_args``, or an
            argument that is not a ``--option[=value]``.
    """
    require_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    if runner not in RUNNERS:
        raise CsvdnetInputError("--runner", f"unknown runner {runner!r}; known: "
                                            f"{', '.join(RUNNERS)}")
    args = list(beam_args)
    for arg in args:
        if arg == "--runner" or arg.startswith("--runner="):
            raise CsvdnetInputError(arg, "give the runner as csvdnet's --runner option, "
                                         "before the --")
    previous = None
    for arg in args:  # --name=value, --name value or --flag
        if not arg.startswith("-") and (previous is None or not previous.startswith("--")
                                        or "=" in previous):
            raise CsvdnetInputError(arg, "not a Beam option: what follows -- must be Beam "
                                         "pipeline options (--name=value)")
        previous = arg
    return PipelineOptions([f"--runner={runner}", *args])
