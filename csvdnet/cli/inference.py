"""The inference commands: ``csvdnet predict`` (a model on every subject of an input) and
``csvdnet demo`` (the shipped model on one synthetic subject)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from csvdnet.cli.options import (_BEAM_ARGS, _DICOM_ID, _ENGINE, _RUNNER, _SERIES_RULES,
                                 _check_engine, _input_errors_exit_2, _quiet_tensorflow)


@click.command()
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


@click.command()
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
