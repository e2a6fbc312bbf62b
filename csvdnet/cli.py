"""The ``csvdnet`` command line: a click group whose commands are thin calls into the library.

Nothing heavy is imported at module level, so ``csvdnet --help`` and ``csvdnet --version`` stay
fast; TensorFlow is imported only inside the commands that need it.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

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


@cli.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Cohort folder to write (created; must not already hold a cohort).")
@click.option("--subjects", default=5, show_default=True, type=click.IntRange(min=1),
              help="Number of subjects.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Random seed: the same seed writes the same bytes.")
@click.option("--profile", default="demo", show_default=True,
              type=click.Choice(["tiny", "demo", "clinical"]),
              help="tiny: coarse, for tests; demo: the shipped model's working spacing; "
                   "clinical: 1 mm anatomy on native clinical grids.")
@click.option("--spacing", default=None, type=click.FloatRange(min=0.3, max=8.0),
              help="Write every sequence on an isotropic grid of this voxel size (mm) instead of "
                   "the profile's clinical grids.")
@click.option("--preview/--no-preview", default=False, show_default=True,
              help="Also write preview.png (the five sequences with markers outlined) per subject.")
@_input_errors_exit_2
def synth(out_dir: str, subjects: int, seed: int, profile: str, spacing: float | None,
          preview: bool) -> None:
    """Write a synthetic CSVD cohort with exact ground truth (manifest.csv, ratings.csv)."""
    from csvdnet.synth import generate_cohort, write_preview

    manifest = generate_cohort(out_dir, subjects, seed, profile=profile, spacing=spacing)
    click.echo(f"wrote {subjects} subjects: {manifest}")
    if preview:
        from csvdnet.io import read_cohort

        for subject in read_cohort(manifest):
            png = write_preview(subject.sequences["flair"].parent, subject.sequences["flair"].parent
                                / "preview.png")
            click.echo(f"preview: {png}")


@cli.command()
@click.argument("cohort", type=click.Path(exists=True))
@_BEAM_ARGS
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Cache folder to write.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML config; its preprocess and data.channels sections are used.")
@click.option("--sequences", default=None,
              help="Comma-separated input sequences in channel order (default: config data.channels).")
@click.option("--reference", default=None, help="Reference sequence (default: config, flair).")
@click.option("--spacing", default=None, type=float, help="Working spacing in mm (isotropic).")
@click.option("--register/--no-register", default=None,
              help="Rigidly co-register each sequence to the reference (default on).")
@click.option("--overwrite", is_flag=True, help="Redo subjects that are already cached.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Subjects preprocessed in parallel (worker processes).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_SERIES_RULES
@_DICOM_ID
@_ENGINE
@_RUNNER
@_input_errors_exit_2
def preprocess(cohort: str, out_dir: str, config_path: str | None, sequences: str | None,
               reference: str | None, spacing: float | None, register: bool | None,
               overwrite: bool, jobs: int, quiet: bool, series_rules: str | None = None,
               dicom_id: str = "{patient_id}_{study_date}_{uid_hash}", engine: str = "local",
               runner: str = "DirectRunner", beam_args: tuple[str, ...] = ()) -> None:
    """Preprocess a COHORT (folder, manifest CSV or DICOM folder) into a cache that training
    reads.

    With --engine beam the subjects are preprocessed by an Apache Beam pipeline on --runner,
    Beam's own options after --.
    """
    _check_engine(engine, beam_args, **{"--jobs": jobs > 1})
    from csvdnet.cache import preprocess_cohort
    from csvdnet.config import load_config
    from csvdnet.io import read_cohort

    if engine == "beam":
        from csvdnet.beam import require_beam

        require_beam()

    overrides = []
    if sequences:
        names = [s.strip() for s in sequences.split(",") if s.strip()]
        overrides.append(f"data.channels=[{', '.join(names)}]")
    if reference:
        overrides.append(f"preprocess.reference={reference}")
    if spacing is not None:
        overrides.append(f"preprocess.spacing={spacing}")
    if register is not None:
        overrides.append(f"preprocess.register={str(register).lower()}")
    cfg = load_config(config_path, overrides).validate(model=False)  # bad arguments: exit 2 now
    from csvdnet.dicom.source import is_dicom_input

    if is_dicom_input(cohort):  # converted into CACHE/.csvdnet/dicom/, then as NIfTI
        from csvdnet.dicom.run import open_dicom_cohort
        from csvdnet.io import Cohort

        found, problems = open_dicom_cohort(cohort, out_dir, cfg.data.channels,
                                            cfg.preprocess.reference, rules=series_rules,
                                            id_template=dicom_id, progress=not quiet)
        subjects = Cohort(root=Path(cohort), subjects=found, sequences=tuple(cfg.data.channels),
                          reference=cfg.preprocess.reference, problems=problems)
    else:
        subjects = read_cohort(cohort, sequences=cfg.data.channels,
                               reference=cfg.preprocess.reference)
    if engine == "beam":
        from csvdnet.beam.preprocess import preprocess_cohort_beam

        summary = preprocess_cohort_beam(subjects, out_dir, cfg.preprocess,
                                         channels=cfg.data.channels, overwrite=overwrite,
                                         runner=runner, beam_args=beam_args)
    else:
        summary = preprocess_cohort(subjects, out_dir, cfg.preprocess,
                                    channels=cfg.data.channels, progress=not quiet,
                                    overwrite=overwrite, jobs=jobs)
    total = len(subjects) + len(subjects.problems)  # problems: subjects that failed to locate
    click.echo(f"preprocessed {len(summary.done)} of {total} subjects into {out_dir}")
    if summary.failed:
        for subject_id, message in summary.failed.items():
            click.echo(f"failed {subject_id}: {message}", err=True)
        click.echo(f"error: {len(summary.failed)} of {total} subjects failed", err=True)
        sys.exit(1)


@cli.command(context_settings={"ignore_unknown_options": False})
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


def _quiet_tensorflow() -> None:
    """Import TensorFlow now, without its C++ start-up notices on a CPU-only machine."""
    from csvdnet.tfimport import import_tensorflow

    import_tensorflow()


def _calibrate(run_dir: Path | str, weights: str) -> None:
    from csvdnet.training.calibration import CALIBRATION_FILE, calibrate_run

    record = calibrate_run(run_dir, weights=weights)
    click.echo(f"calibrated on {len(record['subjects'])} validation subjects "
               f"({Path(run_dir) / CALIBRATION_FILE}):")
    for task, found in record["tasks"].items():
        if not found["calibrated"]:
            click.echo(f"  {task}: kept as configured ({found['reason']})")
            continue
        size = ("" if found["min_lesion_mm3"] is None
                else f", smallest {found['min_lesion_mm3']:g} mm3")
        click.echo(f"  {task}: threshold {found['threshold']:.2f}{size}: {found['metric']} "
                   f"{found['value']:.3f} (as configured {found['configured']:.3f}), "
                   f"{found['lesions']} lesions")


@cli.command()
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


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@_BEAM_ARGS
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False),
              help="Model directory: a training run (`csvdnet train`) or an exported model "
                   "(`csvdnet export`: NAME/<version>, or NAME for its highest version).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (per-subject folders, scores.tsv, errors.tsv; BIDS "
                   "derivatives for a BIDS input).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Subjects in flight at once (threads; preprocessing overlaps the network); "
                   "capped at the usable CPU cores.")
@click.option("--tta", is_flag=True,
              help="Left-right flip test-time augmentation (about twice the network time).")
@click.option("--rules", default=None,
              help="Comma-separated rule sets to score (default: the model's; known: "
                   "staals-2014, caa-svd-2016).")
@click.option("--weights", default="best", show_default=True, type=click.Choice(["best", "last"]),
              help="Which weights of a training run.")
@click.option("--overwrite", is_flag=True,
              help="Redo subjects that are already done (also those of another model, rule "
                   "sets or options, which are otherwise refused).")
@click.option("--strict", is_flag=True,
              help="Refuse a subject whose sequences do not look like their names (swapped "
                   "files) instead of predicting it with a flag.")
@click.option("--regions", "regions", default="registered", show_default=True,
              type=click.Choice(["registered", "labels"]),
              help="Region map of each subject: the atlas placed by template registration, or "
                   "the subject's own 'regions' label (a parcellation in csvdnet's region "
                   "codes, docs/contracts.md; registered where a subject has none).")
@click.option("--quiet", is_flag=True, help="No line per subject.")
@click.option("--serving-url", default=None,
              help="TF Serving REST URL of the same exported model "
                   "(http://HOST:8501/v1/models/NAME): the network runs there, the rest here.")
@click.option("--serving-form", default="bytes", show_default=True,
              type=click.Choice(["bytes", "inputs", "instances"]),
              help="REST request form: raw float32 bytes (serve_bytes), columnar or row JSON.")
@_SERIES_RULES
@_DICOM_ID
@_ENGINE
@_RUNNER
@_input_errors_exit_2
def predict(input_path: str, model_dir: str, out_dir: str, jobs: int, tta: bool,
            rules: str | None, weights: str, overwrite: bool, quiet: bool,
            strict: bool = False, regions: str = "registered",
            serving_url: str | None = None, serving_form: str = "bytes",
            series_rules: str | None = None,
            dicom_id: str = "{patient_id}_{study_date}_{uid_hash}",
            engine: str = "local", runner: str = "DirectRunner",
            beam_args: tuple[str, ...] = ()) -> None:
    """Find, measure and rate the CSVD markers of every subject of INPUT.

    INPUT is one subject's folder (<sequence>.nii[.gz] files), a cohort folder, a manifest CSV,
    a BIDS dataset, or a folder of DICOM files (each study a subject; DICOM SEG / SR / report
    objects are written beside the NIfTI outputs). With --engine beam the cohort runs as an
    Apache Beam pipeline on --runner, Beam's own options after --.
    """
    _check_engine(engine, beam_args, **{"--jobs": jobs > 1})
    from csvdnet.dicom.source import is_dicom_input

    dicom = is_dicom_input(input_path)
    if engine == "beam" and dicom:
        raise click.UsageError("a DICOM folder is predicted with --engine local (convert it "
                               "with csvdnet preprocess or predict locally)")
    if dicom:  # before OUT is created
        from csvdnet.dicom.run import check_out_outside

        check_out_outside(input_path, out_dir)
    if engine == "beam" and strict:
        raise click.UsageError("--strict is for --engine local: the Beam pipeline flags "
                               "swapped sequences but does not refuse them")
    if engine == "beam" and regions != "registered":
        raise click.UsageError("--regions labels is for --engine local: the Beam pipeline "
                               "places regions by registration")
    if engine == "beam":  # a missing extra is said before TensorFlow's seconds of import
        from csvdnet.beam import require_beam

        require_beam()
    if serving_url is None:
        _quiet_tensorflow()
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rule_sets = [r.strip() for r in rules.split(",") if r.strip()] if rules else None
    if engine == "beam":
        from csvdnet.beam.predict import predict_cohort_beam

        summary, total = predict_cohort_beam(
            model_dir, input_path, out_dir, runner=runner, beam_args=beam_args,
            weights=weights, rule_sets=rule_sets, tta=tta, serving_url=serving_url,
            serving_form=serving_form, overwrite=overwrite)
        problems: dict[str, str] = {}
    else:
        from csvdnet.inference.cohort import (cap_jobs, check_output_folder, open_input,
                                              predict_cohort, progress_printer)
        from csvdnet.inference.predictor import Predictor

        check_output_folder(out_dir)  # before the model and the subjects: no work lost
        jobs, capped = cap_jobs(jobs)
        if capped:
            click.echo(capped, err=True)

        predictor = Predictor.from_dir(model_dir, weights=weights, rule_sets=rule_sets, tta=tta,
                                       serving_url=serving_url, serving_form=serving_form,
                                       regions=regions)
        if dicom:
            from csvdnet.dicom.run import open_dicom_cohort

            subjects, problems = open_dicom_cohort(
                input_path, out_dir, predictor.info.channels, predictor.preprocess_cfg.reference,
                rules=series_rules, id_template=dicom_id, progress=not quiet)
            bids = False
        else:
            subjects, problems, bids = open_input(input_path, predictor.info.channels,
                                                  predictor.preprocess_cfg.reference)
        total = len(subjects) + len(problems)
        summary = predict_cohort(predictor, subjects, out_dir, bids=bids,
                                 source=Path(input_path), jobs=jobs, overwrite=overwrite,
                                 on_subject=None if quiet else progress_printer(total),
                                 problems=problems, strict=strict)
        if dicom:  # SEG / SR / report objects beside each finished subject's NIfTI outputs
            from csvdnet.dicom.run import write_dicom_outputs

            problems = {**problems, **write_dicom_outputs(
                out_dir, subjects, [*summary.done, *summary.skipped],
                model_id=predictor.info.id, model_sha256=predictor.info.sha256)}
    failed = {**problems, **summary.failed}
    click.echo(f"predicted {len(summary.done)}, skipped {len(summary.skipped)} already done, "
               f"failed {len(failed)} of {total} subjects into {out_dir}")
    if failed:
        for subject_id, message in failed.items():
            click.echo(f"failed {subject_id}: {message}", err=True)
        click.echo(f"error: {len(failed)} of {total} subjects failed (see "
                   f"{Path(out_dir) / 'errors.tsv'})", err=True)
        sys.exit(1)


@cli.command()
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


@cli.command()
@click.option("--out", "out_dir", default="csvdnet-demo", show_default=True,
              type=click.Path(file_okay=False), help="Demo folder (synthetic input, predictions).")
@click.option("--model", "model_dir", default=None, type=click.Path(file_okay=False),
              help="Model to run (default: the shipped saved_models/csvdnet-synthetic).")
@click.option("--seed", default=None, type=int, help="Seed of the synthetic subject.")
@click.option("--profile", default="demo", show_default=True, type=click.Choice(["tiny", "demo"]),
              help="Synthetic profile of the subject (tiny: coarse, for tests).")
@_input_errors_exit_2
def demo(out_dir: str, model_dir: str | None, seed: int | None, profile: str) -> None:
    """Rate one synthetic subject with the shipped model and compare with its truth."""
    _quiet_tensorflow()
    from csvdnet.demo import DEMO_SEED, format_table, run_demo

    result = run_demo(out_dir, model_dir, seed=DEMO_SEED if seed is None else seed,
                      profile=profile)
    click.echo(format_table(result.rows))
    click.echo(f"model {result.model}; {result.seconds:.1f} s")
    click.echo(f"report: {result.report_html}")
    click.echo("synthetic data and a demo model: not for clinical use")


@cli.command()
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


def _register_node() -> None:
    """``csvdnet node`` (issue 20): its group lives in csvdnet/node/cli.py."""
    from csvdnet.node.cli import node

    cli.add_command(node)


_register_node()
from csvdnet.review.cli import review as _review  # noqa: E402  (issue 23: csvdnet/review/cli.py)
cli.add_command(_review)
