"""``csvdnet review PRED_DIR``, ``csvdnet review export PRED_DIR --out COHORT`` and
``csvdnet review agreement PRED_DIR``."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import click

from csvdnet.errors import CsvdnetInputError

_REVIEWER_HELP = "Who reviews (default: the login name); each reviewer has their own review.json."


class _ReviewGroup(click.Group):
    """``csvdnet review PRED_DIR ...`` is ``csvdnet review serve PRED_DIR ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


def _cohort_sequences(cohort: str | None) -> dict[str, dict[str, Path]]:
    if cohort is None:
        return {}
    from csvdnet.io import read_cohort

    found = read_cohort(cohort)
    return {s.id: dict(s.sequences) for s in found.subjects}


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


@click.group(cls=_ReviewGroup, context_settings={"help_option_names": ["-h", "--help"]})
def review() -> None:
    """Review a csvdnet predict output in a browser (accept / reject / unsure every finding,
    add missed ones, adjust grades), export the reviewed subjects as a labelled cohort, and
    report agreement between two reviewers. `csvdnet review PRED_DIR` starts the app."""


@review.command("serve")
@click.argument("pred_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--cohort", default=None, type=click.Path(exists=True),
              help="The cohort predict read, when its images are no longer where report.json says.")
@click.option("--port", default=8023, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; loopback by default (the app has no login).")
@click.option("--reviewer", default=None, help=_REVIEWER_HELP)
def serve_command(pred_dir: str, cohort: str | None, port: int, host: str,
                  reviewer: str | None) -> None:
    """Start the review app on PRED_DIR (a csvdnet predict output folder)."""
    from csvdnet.review.app import make_app, serve

    try:
        app = make_app(Path(pred_dir), reviewer or getpass.getuser(), _cohort_sequences(cohort))
    except CsvdnetInputError as exc:
        _fail(exc)
    try:
        serve(app, host, port, ready=lambda url: click.echo(f"csvdnet review: {url}", err=False))
    except OSError as exc:
        _fail(CsvdnetInputError(f"{host}:{port}", f"cannot listen ({exc.strerror or exc})"))
    except KeyboardInterrupt:
        pass


@review.command("export")
@click.argument("pred_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Cohort folder to write (replaced as a whole if it holds an exported cohort).")
@click.option("--reviewer", default=None,
              help="Whose review to export (default: the only reviewer).")
@click.option("--cohort", default=None, type=click.Path(exists=True),
              help="The cohort predict read, when its images are no longer where report.json says.")
def export_command(pred_dir: str, out: str, reviewer: str | None, cohort: str | None) -> None:
    """Write PRED_DIR's finished reviews as a labelled cohort (manifest.csv, labels, ratings.csv)
    that csvdnet train and csvdnet evaluate read."""
    from csvdnet.review.export import export_cohort

    try:
        result = export_cohort(Path(pred_dir), Path(out), reviewer, _cohort_sequences(cohort))
    except CsvdnetInputError as exc:
        _fail(exc)
    for sid, why in result.skipped.items():
        click.echo(f"skipped {sid}: {why}")
    click.echo(f"wrote {len(result.written)} reviewed subjects to {result.out}/manifest.csv")


@review.command("agreement")
@click.argument("pred_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--reviewers", nargs=2, default=None, help="The two reviewers (default: the two "
              "who reviewed most subjects).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def agreement_command(pred_dir: str, reviewers: tuple[str, str] | None, as_json: bool) -> None:
    """Agreement of two reviewers on the subjects both finished: quadratic-weighted kappa of
    each grade and total, Cohen's kappa of the finding decisions."""
    from csvdnet.review.agreement import agreement

    try:
        result = agreement(Path(pred_dir), reviewers)
    except CsvdnetInputError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    click.echo(f"{result['reviewers'][0]} vs {result['reviewers'][1]}: "
               f"{result['subjects']} subjects reviewed by both")
    for name, value in result["items"].items():
        kappa = value["kappa"]
        click.echo(f"  {name:<22} kappa {'—' if kappa is None else f'{kappa:.3f}'}"
                   f"  agreement {value['agreement']:.3f}  (n={value['n']})")
