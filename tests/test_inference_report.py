"""report.json and report.html of a prediction, made from a synthetic subject's ground truth.

The "prediction" is the subject's true labels (masks, points, regions, brain mask), so every
number the report shows has a hand-checkable answer: the tables must count the findings, the
scores must be those of the rule sets, the pictures must show the outlines where the lesions are.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import html.parser
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from scipy import ndimage

from csvdnet import scoring
from csvdnet.atlas import REGION_NAMES
from csvdnet.inference import report_pictures
from csvdnet.inference.postprocess import components
from csvdnet.inference.report import (REPORT_SCHEMA_VERSION, report_dict, validate_report,
                                      write_report_html, write_report_json)
from csvdnet.inference.result import Finding, ModelInfo, OrdinalScore, SubjectResult
from csvdnet.io import load_nifti, read_cohort, read_points
from csvdnet.slices import MARKER_COLOURS
from csvdnet.synth import generate_cohort

SEED = 5


def _on_reference(image, reference, transform=None):
    """An image resampled onto the reference grid through the affines (and head motion)."""
    grid = np.indices(reference.shape).reshape(3, -1)
    world = reference.affine[:3, :3] @ grid + reference.affine[:3, 3:]
    if transform is not None:
        world = transform[:3, :3] @ world + transform[:3, 3:]
    inverse = np.linalg.inv(image.affine)
    voxels = inverse[:3, :3] @ world + inverse[:3, 3:]
    return ndimage.map_coordinates(image.data, voxels, order=1).reshape(reference.shape)


def _findings(task, reference, regions, centres_world, volumes, confidences):
    """Findings with region from the true region map and side from the sign of world x."""
    inverse = np.linalg.inv(reference.affine)
    found = []
    for i, (world, volume, confidence) in enumerate(zip(centres_world, volumes, confidences)):
        voxel = inverse[:3, :3] @ np.asarray(world) + inverse[:3, 3]
        index = tuple(np.clip(np.rint(voxel).astype(int), 0, np.array(reference.shape) - 1))
        side = "M" if abs(world[0]) < 2.0 else ("R" if world[0] > 0 else "L")
        found.append(Finding(task, i + 1, tuple(map(float, world)), tuple(map(float, voxel)),
                             float(confidence), volume, REGION_NAMES[int(regions[index])], side))
    return found


def build_result(subject_dir: Path, agreement_offset: int = 0) -> SubjectResult:
    """A SubjectResult whose "prediction" is the subject's ground truth."""
    cohort = read_cohort(subject_dir.parent)
    subject = cohort[subject_dir.name]
    reference = load_nifti(subject.sequences["flair"])
    motion = json.loads((subject_dir / "synth.json").read_text())["sequence_transforms"]
    sequences = {name: _on_reference(load_nifti(path), reference,
                                     np.asarray(motion[name]) if name in motion else None)
                 .astype(np.float32) for name, path in subject.sequences.items()}
    regions = load_nifti(subject.labels["regions"], kind="labelmap").data.astype(np.uint8)
    brain = load_nifti(subject.labels["brain_mask"], kind="mask").data > 0.5
    masks, findings, probabilities = {}, {}, {}
    for task in ("wmh", "rssi", "lacune"):
        mask = load_nifti(subject.labels[task], kind="mask").data > 0.5
        masks[task], probabilities[task] = mask, mask.astype(np.float32)
        parts = components(mask, mask.astype(np.float32), reference.affine)
        findings[task] = _findings(task, reference, regions, [c.centroid_world for c in parts],
                                   [c.volume_mm3 for c in parts], [0.9] * len(parts))
    for task in ("cmb", "epvs"):
        world = read_points(subject.labels[task])
        findings[task] = _findings(task, reference, regions, world, [None] * len(world),
                                   np.linspace(0.95, 0.5, len(world)))
        masks[task] = np.zeros(reference.shape, bool)
    by_region = {task: [f.region for f in findings[task]] for task in ("cmb", "epvs")}
    m = scoring.Measurements(
        fazekas_pv=subject.ratings.fazekas_pv, fazekas_deep=subject.ratings.fazekas_deep,
        epvs_bg_count=by_region["epvs"].count("basal_ganglia"),
        epvs_cso_count=by_region["epvs"].count("centrum_semiovale"),
        cmb_lobar=by_region["cmb"].count("juxtacortical"),
        cmb_infratentorial=by_region["cmb"].count("infratentorial"),
        cmb_deep=sum(r not in ("juxtacortical", "infratentorial") for r in by_region["cmb"]),
        lacune_count=len(findings["lacune"]), rssi_count=len(findings["rssi"]))
    scores = {name: scoring.score(name, m) for name in ("staals-2014", "caa-svd-2016")}
    total = scores["staals-2014"].total
    ordinal_total = (total + agreement_offset) % 5
    probs = np.full(5, 0.05)
    probs[ordinal_total] = 0.8
    cumulative = tuple(float(probs[k + 1:].sum()) for k in range(4))
    return SubjectResult(
        subject=subject_dir.name, inputs={k: str(v) for k, v in subject.sequences.items()},
        reference="flair", reference_path=str(subject.sequences["flair"]),
        affine=reference.affine, shape=reference.shape, probabilities=probabilities,
        masks=masks, findings=findings, regions=regions, brain_mask=brain,
        world_to_mni=np.eye(4), measurements=m,
        quantities={"wmh_periventricular_ml": 1.25, "wmh_deep_ml": 0.5,
                    "fazekas_features": {"extent_mm": np.float32(7.5)}},
        scores=scores,
        ordinal=OrdinalScore(ordinal_total, tuple(map(float, probs)), cumulative),
        agreement=ordinal_total == total, flags=["registration of dwi: weak (test flag)"],
        sequences=sequences, sequence_transforms={k: np.eye(4) for k in sequences},
        model=ModelInfo("synthetic-demo/1", "/models/synthetic-demo/1", "ab" * 32, "saved_model",
                        ("flair", "t1", "t2", "swi", "dwi"), (1.5, 1.5, 1.5),
                        {"wmh": 0.5, "cmb": 0.3}, {"wmh": 3.0}, False),
        timings={"load": 0.1, "network": 1.2})


class _Page(html.parser.HTMLParser):
    """Collects the elements of the report page by their data-* attributes and tags."""

    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag=None, **attrs):
        return [a for t, a in self.elements if (tag is None or t == tag)
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def having(self, attr):
        return [a for _, a in self.elements if attr in a]


@pytest.fixture(scope="session")
def subject_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report_cohort")
    generate_cohort(out, 1, SEED, profile="tiny", progress=False)
    return out / "sub-0000"


@pytest.fixture(scope="session")
def result(subject_dir) -> SubjectResult:
    return build_result(subject_dir)


@pytest.fixture(scope="session")
def page(result, tmp_path_factory) -> tuple[_Page, str]:
    path = write_report_html(result, tmp_path_factory.mktemp("html") / "report.html")
    text = path.read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(text)
    return parser, text


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(PILImage.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
                      .convert("RGB"))


def test_report_json_validates_and_counts_the_findings(result, tmp_path):
    path = write_report_json(result, tmp_path / "report.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert validate_report(data) == []
    assert data["schema_version"] == REPORT_SCHEMA_VERSION
    assert data["subject"] == "sub-0000"
    assert data["reference_grid"]["shape"] == list(result.shape)
    # The co-registration each sequence got, for writers that place findings on that
    # sequence's own images (the DICOM segmentations on the SWI, T2, DWI).
    moved = dataclasses.replace(result, sequence_transforms={
        **result.sequence_transforms, "swi": np.array([[1.0, 0, 0, 2.5], [0, 1, 0, -1.0],
                                                        [0, 0, 1, 0.5], [0, 0, 0, 1]])})
    transforms = report_dict(moved)["inputs"]["sequence_transforms"]
    assert set(transforms) == set(result.sequence_transforms)
    assert transforms["swi"][0] == [1.0, 0.0, 0.0, 2.5] and transforms["swi"][2][3] == 0.5
    assert validate_report(report_dict(moved)) == []
    for task, findings in result.findings.items():
        marker = data["markers"][task]
        assert marker["count"] == len(findings) == len(marker["findings"])
        assert sum(sides["total"] for sides in marker["by_region"].values()) == len(findings)
        for region, sides in marker["by_region"].items():
            assert sides["total"] == sum(f.region == region for f in findings)
            assert sides["L"] == sum(f.region == region and f.side == "L" for f in findings)
    wmh_ml = sum(f.volume_mm3 for f in result.findings["wmh"]) / 1000
    assert data["measurements"]["wmh_volume_ml"] == pytest.approx(wmh_ml)
    assert data["measurements"]["wmh_periventricular_ml"] == 1.25
    assert data["measurements"]["cmb_count"] == result.measurements.cmb_count
    assert data["measurements"]["epvs_bg_grade"] == result.measurements.epvs_bg_grade
    for name, score in result.scores.items():
        assert data["scores"][name]["total"] == score.total
        assert data["scores"][name]["points"] == score.points
    assert data["ordinal"]["total"] == result.ordinal.total
    assert data["agreement"] is True
    assert data["quantities"]["fazekas_features"]["extent_mm"] == 7.5  # numpy float -> JSON
    assert data["model"]["sha256"] == "ab" * 32


def test_a_broken_report_fails_validation_with_where_and_what(result):
    data = json.loads(json.dumps(report_dict(result)))
    data["markers"]["epvs"]["count"] = -1
    data["markers"]["epvs"]["findings"][0]["side"] = "left"
    del data["ordinal"]
    data["scores"]["staals-2014"]["total"] = "2"
    problems = validate_report(data)
    assert "$: 'ordinal' is a required property" in problems
    assert any(p.startswith("markers.epvs.count: -1 is less than the minimum") for p in problems)
    assert any(p.startswith("markers.epvs.findings.0.side: 'left' is not one of") for p in problems)
    assert any(p.startswith("scores.staals-2014.total: '2' is not of type") for p in problems)
    assert len(problems) == 4


def test_html_is_one_offline_file(page):
    parser, text = page
    assert not any(tag in ("script", "link", "iframe") for tag, _ in parser.elements)
    assert "http://" not in text and "https://" not in text
    sources = [attrs["src"] for tag, attrs in parser.elements if tag == "img"]
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for source in sources:
        assert _decode(source).ndim == 3  # every picture decodes as a PNG


def test_html_shows_the_scores(page, result):
    parser, _ = page
    for name, score in result.scores.items():
        (card,) = parser.find("div", data_rule_set=name)
        assert card["data-total"] == str(score.total)
    (ordinal,) = parser.find("div", data_total=str(result.ordinal.total),
                             **{"class": "card ordinal"})
    bars = parser.having("data-probability")
    assert [float(b["data-probability"]) for b in bars] == pytest.approx(
        result.ordinal.class_probabilities, abs=1e-4)
    assert [b["class"] for b in bars].count("predicted") == 1
    assert parser.find(data_research_only="1")  # the model id says synthetic


def test_html_tables_count_the_findings(page, result):
    parser, _ = page
    # Each marker block: its count cell, then its region rows (in document order).
    current, seen = None, {}
    for tag, attrs in parser.elements:
        if "data-marker" in attrs:
            current = attrs["data-marker"]
            seen[current] = {"count": None, "regions": {}, "rows": 0}
        elif current and "data-count" in attrs:
            seen[current]["count"] = int(attrs["data-count"])
        elif current and "data-region" in attrs:
            seen[current]["regions"][attrs["data-region"]] = int(attrs["data-total"])
        elif current and tag == "tr" and "data-index" in attrs:
            seen[current]["rows"] += 1
    assert set(seen) == set(result.findings)
    for task, findings in result.findings.items():
        assert seen[task]["count"] == len(findings) == seen[task]["rows"]
        expected = {}
        for f in findings:
            expected[f.region] = expected.get(f.region, 0) + 1
        assert seen[task]["regions"] == expected


def test_disagreement_banner_appears_exactly_when_the_head_contradicts_the_rules(result, page,
                                                                                  tmp_path):
    parser, _ = page
    assert result.agreement is True and not parser.find(data_disagreement="1")
    staals = result.scores["staals-2014"].total
    other = copy.copy(result)
    probs = np.full(5, 0.05)  # the head sure of another total: 5 % on the rules' total
    probs[(staals + 1) % 5] = 0.8
    other.ordinal = OrdinalScore((staals + 1) % 5, tuple(map(float, probs)),
                                 tuple(float(probs[k + 1:].sum()) for k in range(4)))
    other.agreement = False
    other.model = ModelInfo("cohort-model/3", *list(vars(result.model).values())[1:])
    parser2 = _Page()
    parser2.feed(write_report_html(other, tmp_path / "report.html").read_text(encoding="utf-8"))
    assert len(parser2.find(data_disagreement="1")) == 1
    assert not parser2.find(data_research_only="1")  # a model not named synthetic
    # a head that knows nothing (near uniform) differs without contradicting: no banner
    other.ordinal = OrdinalScore((staals + 1) % 5, (0.2,) * 5, (0.8, 0.6, 0.4, 0.2))
    parser4 = _Page()
    parser4.feed(write_report_html(other, tmp_path / "report.html").read_text(encoding="utf-8"))
    assert not parser4.find(data_disagreement="1")
    other.agreement = None  # Staals total undecided: nothing to disagree with
    parser3 = _Page()
    parser3.feed(write_report_html(other, tmp_path / "report.html").read_text(encoding="utf-8"))
    assert not parser3.find(data_disagreement="1")


def test_montage_outlines_the_lesions_and_only_them(page, result):
    parser, _ = page
    canvas = report_pictures.Canvas.of(result)
    shown = sorted({int(a["data-slice"]) for a in parser.find("img", **{"class": "montage"})})
    assert shown == report_pictures.montage_slices(result)
    axis = canvas.view.axis
    wmh = result.masks["wmh"]
    k = max(shown, key=lambda s: wmh[(slice(None),) * axis + (s,)].sum())
    assert wmh[(slice(None),) * axis + (k,)].any(), "no montage slice shows a WMH"
    (img,) = parser.find("img", data_column="flair", data_slice=str(k))
    drawn = _decode(img["src"]).astype(int)
    brain = np.asarray(result.brain_mask, bool)
    grey = report_pictures.window(result.sequences["flair"], brain, shown, axis)
    plain = np.rint(255 * report_pictures.findings_panel(result, canvas, "flair", k, grey,
                                                         overlays=False)).astype(int)
    assert drawn.shape == plain.shape
    changed = np.abs(drawn - plain).max(axis=2) > 2
    # Where the WMH outline is, the picture has the WMH colour ...
    mask = canvas.plane(wmh, k).astype(bool)
    edge = mask & ~ndimage.binary_erosion(mask)
    colour = np.array([int(MARKER_COLOURS["wmh"][i:i + 2], 16) for i in (1, 3, 5)])
    on_edge = np.all(np.abs(drawn[edge] - colour) <= 2, axis=1)
    assert on_edge.mean() > 0.5
    # ... and nothing changed far from every lesion and point.
    near = np.zeros_like(changed)
    for task in ("wmh", "rssi", "lacune"):
        near |= canvas.plane(result.masks[task], k).astype(bool)
    for task in ("cmb", "epvs"):
        for row, col in report_pictures.points_on_slice(canvas, result.findings[task], k):
            near[max(int(row) - 9, 0):int(row) + 10, max(int(col) - 9, 0):int(col) + 10] = True
    assert changed.any() and not (changed & ~ndimage.binary_dilation(near, iterations=2)).any()


def test_montage_slices_show_every_marker_and_the_busiest_slice(result):
    axis = report_pictures.Canvas.of(result).view.axis
    slices = report_pictures.montage_slices(result, n=5)
    gap = round(6.0 / report_pictures.Canvas.of(result).view.spacing[2])
    assert len(slices) == 5 and min(np.diff(sorted(slices))) >= gap
    for task, findings in result.findings.items():
        if findings:  # the most confident finding of every marker is on a shown slice
            assert round(findings[0].voxel[axis]) in slices, task
    counts = {}
    for findings in result.findings.values():
        for f in findings:
            counts[round(f.voxel[axis])] = counts.get(round(f.voxel[axis]), 0) + 1
    busiest = max(counts, key=counts.get)
    assert any(abs(busiest - k) < gap for k in slices)


def test_an_edited_model_is_named_edited_in_report_json_and_html(result, tmp_path):
    edited = copy.copy(result)
    edited.model = dataclasses.replace(
        result.model, id="synthetic-demo/1+edited@0123456789ab",
        edited="metadata.json differs from the shipped synthetic-demo/1")

    report = report_dict(edited)

    assert validate_report(report) == []
    assert report["model"]["edited"] == "metadata.json differs from the shipped synthetic-demo/1"
    assert report["flags"][0] == ("edited model: metadata.json differs from the shipped "
                                  "synthetic-demo/1")
    assert report["flags"][1:] == list(result.flags)
    assert report_dict(result)["model"]["edited"] is None
    assert not any("edited" in flag for flag in report_dict(result)["flags"])
    parser = _Page()
    parser.feed(write_report_html(edited, tmp_path / "report.html").read_text(encoding="utf-8"))
    assert len(parser.find(data_edited_model="1")) == 1
    assert "synthetic-demo/1+edited@0123456789ab" in "".join(parser.text)
    plain = _Page()
    plain.feed(write_report_html(result, tmp_path / "plain.html").read_text(encoding="utf-8"))
    assert not plain.find(data_edited_model="1")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

_PROBE = """<script>
window.addEventListener("load", () => {
  const cards = [...document.querySelectorAll(".card.score")];
  document.body.setAttribute("data-probe", JSON.stringify({
    images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
    totals: cards.map(c => c.querySelector(".total").innerText.trim()),
    flags: [...document.querySelectorAll(".flags li")].map(li => li.innerText),
    resources: performance.getEntriesByType("resource").map(r => r.name),
    width: document.documentElement.scrollWidth}));
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package "
                                             "'chromium'; .ci/run installs it)")
def test_a_real_browser_shows_the_totals_flags_and_every_picture_offline(result, tmp_path):
    """Rendered by headless Chromium with every host unresolvable: each picture decodes, the
    score cards show the totals the result has, the flags are listed, nothing is fetched, and
    the page fits a 1200 px window (the screenshot is kept for a reader to look at)."""
    import subprocess

    page = write_report_html(result, tmp_path / "report.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000"]
    dom = subprocess.run(args + ["--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    start = dom.index('data-probe="') + len('data-probe="')
    shown = json.loads(html.unescape(dom[start:dom.index('"', start)]))
    assert len(shown["images"]) >= 4
    assert all(done and w > 0 and h > 0 for done, w, h in shown["images"]), shown["images"]
    assert shown["totals"] == [str(s.total) if s.total is not None else "—"
                               for s in result.scores.values()]
    assert shown["flags"] == ["registration of dwi: weak (test flag)"]
    assert shown["resources"] == []  # offline: data URIs only, nothing requested
    assert shown["width"] <= 1200
    shot = tmp_path / "report.png"
    subprocess.run(args + [f"--screenshot={shot}", (tmp_path / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(PILImage.open(shot).convert("L"))
    assert pixels.shape == (1600, 1200) and pixels.std() > 20  # drawn, not a blank page
