"""The data commands: ``csvdnet synth`` (a synthetic cohort) and ``csvdnet preprocess`` (a
cohort into the cache that training reads)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from csvdnet.cli.options import (_BEAM_ARGS, _DICOM_ID, _ENGINE, _RUNNER, _SERIES_RULES,
                                 _check_engine, _input_errors_exit_2)


@click.command()
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


@click.command()
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
