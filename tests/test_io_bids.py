"""BIDS input discovery and the BIDS derivatives predict writes for it."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
from _oracle import mni_at_world_origin, normalised_level, oracle_predictor, write_subject

from csvdnet.errors import CsvdnetInputError
from csvdnet.inference.cohort import open_input, predict_cohort
from csvdnet.io.bids import is_bids, read_bids


def make_bids(root: Path) -> Path:
    """sub-01 (no sessions), sub-02 with two sessions, sub-03 without a FLAIR."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "phantoms", "BIDSVersion": "1.10.0"}))
    write_subject(root / "sub-01" / "anat", "RAS",
                  names={"flair": "sub-01_FLAIR.nii.gz", "t1": "sub-01_T1w.nii.gz"})
    for ses in ("a", "b"):
        write_subject(root / "sub-02" / f"ses-{ses}" / "anat", "LPS",
                      names={"flair": f"sub-02_ses-{ses}_FLAIR.nii.gz",
                             "t1": f"sub-02_ses-{ses}_T1w.nii.gz"})
    write_subject(root / "sub-03" / "anat", "RAS",
                  names={"flair": "sub-03_T2w.nii.gz", "t1": "sub-03_T1w.nii.gz"})
    return root


def test_subjects_sessions_and_suffixes(tmp_path):
    root = make_bids(tmp_path / "raw")
    (root / "sub-01" / "anat" / "sub-01_run-2_FLAIR.nii.gz").write_bytes(b"")  # a second run
    assert is_bids(root) and not is_bids(root / "sub-01")
    cohort, problems = read_bids(root, ("flair", "t1", "t2"), "flair")
    assert [s.id for s in cohort] == ["sub-01", "sub-02_ses-a", "sub-02_ses-b"]
    first = cohort.subjects[0].sequences
    assert first["flair"].name == "sub-01_FLAIR.nii.gz"  # first of the two runs, by name
    assert first["t1"].name == "sub-01_T1w.nii.gz" and "t2" not in first
    assert cohort.subjects[1].sequences["flair"].parent.name == "anat"
    assert list(problems) == ["sub-03"] and "no flair image" in problems["sub-03"]
    with pytest.raises(CsvdnetInputError, match="not a BIDS dataset"):
        read_bids(root / "sub-01")
    with pytest.raises(CsvdnetInputError, match="no BIDS suffix known for sequence"):
        read_bids(root, ("flair", "pd"))


# ---------------------------------------------------------------------------------------------
# Derivative names against the BIDS schema's rules (what the BIDS validator checks).

def _schema_rules():
    schema = pytest.importorskip("bidsschematools.schema").load_schema()
    short = {entity.name: key for key, entity in schema.objects.entities.items()}
    order = list(schema.rules.entities)
    rules = [dict(rule) for rule in schema.rules.files.deriv.imaging.values()]
    return short, order, rules


def bids_problem(path: Path, root: Path, ignore: list[str]) -> str | None:
    """Why ``path`` is not a valid BIDS derivative file name (None: valid)."""
    short, order, rules = _schema_rules()
    relative = path.relative_to(root).as_posix()
    if any(fnmatch.fnmatch(path.name, pattern) for pattern in ignore):
        return None
    folders = path.relative_to(root).parts[:-1]
    if any(f"{folder}/" in ignore for folder in folders):  # a .bidsignore folder pattern
        return None
    if relative in ("dataset_description.json", ".bidsignore"):
        return None
    match = re.match(r"^(sub-[A-Za-z0-9]+)/(?:(ses-[A-Za-z0-9]+)/)?([a-z]+)/(.+)$", relative)
    if not match:
        return f"{relative}: not in sub-<label>/[ses-<label>/]<datatype>/"
    datatype, name = match.group(3), match.group(4)
    stem, _, extension = name.partition(".")
    *pairs, suffix = stem.split("_")
    entities = []
    for pair in pairs:
        key, sep, value = pair.partition("-")
        if not sep or not re.fullmatch(r"[A-Za-z0-9]+", value) or key not in short:
            return f"{name}: bad entity {pair!r}"
        entities.append(short[key])
    if entities != sorted(entities, key=order.index):
        return f"{name}: entities out of order"
    if entities[:1] != ["subject"] or (match.group(2) and entities[1] != "session"):
        return f"{name}: does not start with its folder's sub- / ses- entities"
    for rule in rules:
        allowed = dict(rule["entities"])
        if (suffix in rule["suffixes"] and f".{extension}" in rule["extensions"]
                and datatype in rule["datatypes"] and set(entities) <= set(allowed)
                and all(e in entities for e, need in allowed.items() if need == "required")):
            return None
    return f"{name}: no BIDS derivative rule has suffix {suffix!r} with these entities"


@pytest.fixture(autouse=True)
def mni_identity(monkeypatch):
    """The phantom sits at the MNI origin: skip the template registration (tested apart)."""
    mni_at_world_origin(monkeypatch)


def test_bids_input_gives_a_bids_derivatives_dataset(tmp_path):
    root = make_bids(tmp_path / "raw")
    subjects, problems, bids = open_input(root, ("flair", "t1"), "flair")
    assert bids and list(problems) == ["sub-03"]
    predictor = oracle_predictor(normalised_level(subjects[0]))
    out = tmp_path / "derivatives" / "csvdnet"
    summary = predict_cohort(predictor, subjects[:2], out, bids=True, source=root,
                             problems=problems)
    assert sorted(summary.done) == ["sub-01", "sub-02_ses-a"]

    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "csvdnet"
    ignore = (out / ".bidsignore").read_text().split()
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.relative_to(out).as_posix() for p in files}
    assert "sub-01/anat/sub-01_space-orig_label-WMH_probseg.nii.gz" in names
    assert "sub-02/ses-a/anat/sub-02_ses-a_space-orig_label-WMH_mask.nii.gz" in names
    assert "sub-01/anat/sub-01_space-orig_seg-csvd_dseg.nii.gz" in names
    assert "sub-01/anat/sub-01_space-orig_seg-csvd_dseg.tsv" in names
    assert "sub-01/anat/sub-01_desc-csvd_report.html" in names
    for task in ("WMH", "RSSI", "lacune", "CMB", "EPVS"):
        assert f"sub-01/anat/sub-01_space-orig_label-{task}_probseg.nii.gz" in names
    problems_found = [bids_problem(p, out, ignore) for p in files]
    assert [p for p in problems_found if p] == []
    # The checker does reject what BIDS rejects.
    assert bids_problem(out / "sub-01/anat/sub-01_label-WMH_space-orig_probseg.nii.gz", out, [])
    assert bids_problem(out / "sub-01/anat/sub-01_space-orig_label-WMH_points.tsv", out, [])
    errors = (out / "errors.tsv").read_text()
    assert "sub-03" in errors


def test_a_derivatives_parcellation_with_its_table_is_the_subjects_regions_label(tmp_path):
    root = make_bids(tmp_path / "raw")
    seg = root / "derivatives" / "synthseg" / "sub-02" / "ses-b" / "anat"
    seg.mkdir(parents=True)
    for name in ("sub-02_ses-b_desc-aseg_dseg", "sub-02_ses-b_desc-aparcaseg_dseg"):
        (seg / f"{name}.nii.gz").write_bytes(b"")
        (seg / f"{name}.tsv").write_text("index\tname\n0\tUnknown\n")
    (seg / "sub-02_ses-b_desc-notable_dseg.nii.gz").write_bytes(b"")  # no table: not one
    # csvdnet's own outputs in derivatives/ (a rerun into derivatives/csvdnet) never count.
    own = root / "derivatives" / "csvdnet"
    (own / "sub-01" / "anat").mkdir(parents=True)
    (own / "dataset_description.json").write_text(json.dumps(
        {"Name": "csvdnet", "GeneratedBy": [{"Name": "csvdnet"}]}))
    for kind in ("csvd", "regions"):
        (own / "sub-01" / "anat" / f"sub-01_space-orig_seg-{kind}_dseg.nii.gz").write_bytes(b"")
        (own / "sub-01" / "anat" / f"sub-01_space-orig_seg-{kind}_dseg.tsv").write_text("x\n")
    cohort, _ = read_bids(root, ("flair", "t1"), "flair")
    by_id = {s.id: s for s in cohort}
    assert by_id["sub-02_ses-b"].labels["regions"] == seg / "sub-02_ses-b_desc-aseg_dseg.nii.gz"
    assert by_id["sub-02_ses-b"].label_sequence["regions"] == "t1"
    assert "regions" not in by_id["sub-01"].labels and "regions" not in by_id["sub-02_ses-a"].labels
