"""The export command: ``csvdnet export`` (a run as a TF SavedModel with metadata.json and a
model card)."""

from __future__ import annotations

import click

from csvdnet.cli.options import _input_errors_exit_2, _quiet_tensorflow


@click.command()
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Model folder saved_models/NAME (NAME is the TF Serving model name).")
@click.option("--version", "version", default=None, type=click.IntRange(min=1),
              help="Version number (default: one more than the highest in --out).")
@click.option("--weights", default="best", show_default=True, type=click.Choice(["best", "last"]),
              help="Which weights of the run.")
@click.option("--mixed-precision", is_flag=True,
              help="Compute in float16 (GPU serving); the default float32 graph is for CPUs.")
@click.option("--description", default=None,
              help="Training data description for metadata.json and the model card "
                   "(default: the run's export.description).")
@click.option("--heldout-cache", default=None, type=click.Path(exists=True, file_okay=False),
              help="Preprocessed cache of unseen subjects: evaluate on it first, record the "
                   "metrics in metadata.json and the model card.")
@click.option("--heldout-summary", default=None, type=click.Path(exists=True, dir_okay=False),
              help="summary.json of `csvdnet evaluate` on held-out predictions: its total-score "
                   "agreement (Staals rule, ordinal head) goes into metadata.json and the card.")
@click.option("--card-notes", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Markdown appended to the model card (exact commands, seeds).")
@_input_errors_exit_2
def export(run_dir: str, out_dir: str, version: int | None, weights: str,
           mixed_precision: bool, description: str | None, heldout_cache: str | None,
           heldout_summary: str | None, card_notes: str | None) -> None:
    """Export RUN_DIR as a TF SavedModel (TF Serving layout) with metadata.json and a model card."""
    _quiet_tensorflow()
    from csvdnet.export import export_run

    command = ["csvdnet", "export", run_dir, "--out", out_dir, "--weights", weights]
    for flag, value in (("--version", version), ("--description", description),
                        ("--heldout-cache", heldout_cache),
                        ("--heldout-summary", heldout_summary), ("--card-notes", card_notes)):
        command += [flag, str(value)] if value is not None else []
    command += ["--mixed-precision"] if mixed_precision else []
    result = export_run(run_dir, out_dir, version=version, weights=weights,
                        precision="mixed_float16" if mixed_precision else "float32",
                        description=description, heldout_cache=heldout_cache,
                        heldout_summary=heldout_summary, card_notes=card_notes,
                        command=command)
    click.echo(f"exported {result.path} ({result.size_bytes / 1e6:.1f} MB, "
               f"{result.seconds:.1f} s); check: saved_model_cli show --dir {result.path} --all")
