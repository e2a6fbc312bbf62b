"""The evaluation command: ``csvdnet evaluate`` (predictions against a cohort's manual
labels)."""

from __future__ import annotations

import click

from csvdnet.cli.options import _input_errors_exit_2


@click.command()
@click.option("--cohort", "cohort_path", required=True, type=click.Path(exists=True),
              help="Labelled cohort: folder of subject folders or manifest CSV.")
@click.option("--pred", "pred_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Output folder of csvdnet predict (plain or BIDS derivatives).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Where metrics_per_subject.tsv, summary.json and evaluation.html go.")
@click.option("--reference", default="flair", show_default=True,
              help="The cohort's reference sequence (labels are drawn on it).")
@click.option("--radius", multiple=True, metavar="TASK=MM",
              help="Matching radius of a detection task (cmb, epvs, lacune, rssi); repeatable.")
@click.option("--quiet", is_flag=True, help="No line per subject.")
@_input_errors_exit_2
def evaluate(cohort_path: str, pred_dir: str, out_dir: str, reference: str,
             radius: tuple[str, ...], quiet: bool) -> None:
    """Compare predictions with a cohort's manual labels (WMH challenge / VALDO metrics)."""
    from csvdnet import DEFAULT_SEQUENCES
    from csvdnet.evaluation.evaluate import evaluate as run_evaluation
    from csvdnet.evaluation.evaluate import headline, parse_radius
    from csvdnet.io import read_cohort

    sequences = DEFAULT_SEQUENCES if reference in DEFAULT_SEQUENCES else (
        *DEFAULT_SEQUENCES, reference)
    cohort = read_cohort(cohort_path, sequences=sequences, reference=reference)
    result = run_evaluation(cohort, pred_dir, out_dir, radius_mm=parse_radius(radius),
                            on_subject=None if quiet else
                            lambda s, state: click.echo(f"{s}: {state}", err=True))
    for line in headline(result.summary):
        click.echo(line)
    click.echo(f"wrote {result.per_subject_tsv}, {result.summary_json}, {result.html}")
