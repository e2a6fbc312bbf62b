"""The training commands: ``csvdnet train`` (a run directory from a config) and ``csvdnet
calibrate`` (a run's thresholds and smallest lesion sizes on its validation subjects)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from csvdnet.cli.options import _input_errors_exit_2, _quiet_tensorflow


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1, metavar="[SECTION.KEY=VALUE]...")
@click.option("--resume", is_flag=True,
              help="Continue the run in train.run_dir from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="When training ends, choose the thresholds and smallest lesion sizes on the "
                   "validation subjects (RUN/calibration.json; `csvdnet calibrate` redoes it).")
@_input_errors_exit_2
def train(config_path: str, overrides: tuple[str, ...], resume: bool, quiet: bool,
          calibrate: bool = True) -> None:
    """Train the multi-task network as CONFIG.yaml says (overrides e.g. train.epochs=3)."""
    import logging

    from csvdnet.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_config(config_path, overrides).validate()  # every config error before TF loads
    _quiet_tensorflow()
    from csvdnet.training import fit

    result = fit(cfg, resume=resume, progress=not quiet)
    state = "interrupted (checkpoint saved; --resume continues)" if result.interrupted else "done"
    click.echo(f"{state}: epoch {result.epoch}, step {result.step}, run directory {result.run_dir}")
    if result.interrupted:
        sys.exit(130)
    if calibrate and result.best is not None:
        _calibrate(result.run_dir, "best")


def _calibrate(run_dir: Path | str, weights: str) -> None:
    from csvdnet.evaluation.calibrate import calibrate_run
    from csvdnet.run.calibration import CALIBRATION_FILE

    record = calibrate_run(run_dir, weights=weights)
    click.echo(f"calibrated on {len(record['subjects'])} validation subjects "
               f"({Path(run_dir) / CALIBRATION_FILE}):")
    for task, found in record["tasks"].items():
        if not found["calibrated"]:
            click.echo(f"  {task}: kept as configured ({found['reason']})")
            continue
        size = ("" if found["min_lesion_mm3"] is None
                else f", smallest {found['min_lesion_mm3']:g} mm3")
        if task in record.get("peak_ridge", {}):
            ridge = record["peak_ridge"][task]
            size += f", ridge {ridge:g}" if ridge else ", no ridge"
        click.echo(f"  {task}: threshold {found['threshold']:.2f}{size}: {found['metric']} "
                   f"{found['value']:.3f} (as configured {found['configured']:.3f}), "
                   f"{found['lesions']} lesions")


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
@click.option("--weights", default="best", show_default=True, type=click.Choice(["best", "last"]),
              help="Which weights of the run.")
@_input_errors_exit_2
def calibrate(run_dir: str, weights: str) -> None:
    """Choose a run's thresholds and smallest lesion sizes on its validation subjects.

    Writes RUN/calibration.json, which predict, export and the held-out check then use.
    """
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    _quiet_tensorflow()
    _calibrate(run_dir, weights)
