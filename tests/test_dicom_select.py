"""csvdnet.dicom.select: each channel's series chosen by acquisition, with the reason; a study
that cannot be predicted is one line naming it."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from _dicom_study import series_files, tiny_study, tiny_subject
from csvdnet.dicom.index import Frame, index_folder
from csvdnet.dicom.rules import load_rules
from csvdnet.dicom.select import select_study, stack_problem
from csvdnet.dicom.vendor import study_attributes, write_series
from csvdnet.errors import CsvdnetInputError

CHANNELS = ("flair", "t1", "t2", "swi", "dwi")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    return tiny_study(tiny_subject(root / "synth"), root / "dicom")


def _select(root):
    index = index_folder(root)
    assert len(index.studies) == 1
    return select_study(index.studies[0], load_rules(), CHANNELS, "flair")


def _copy(study, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(study.root, root)
    return root


def test_vendor_study_selection_and_sources(study):
    selection = _select(study.root)
    numbers = {name: c.series.number for name, c in selection.chosen.items()}
    assert numbers == {"flair": 2, "t1": 3, "t2": 4, "swi": 5, "dwi": 8, "dwi_b0": 8}
    assert selection.excluded == {"series 1 'localizer'": "ImageType LOCALIZER",
                                  "series 6 'Pha_Images'": "ImageType P",
                                  "series 7 'mIP_Images(SW)'": "ImageType MNIP",
                                  "series 9 'ep2d_diff_b0_1000_tra_ADC'": "ImageType ADC"}
    flair = selection.chosen["flair"]
    assert flair.reason == ("SE\\IR 2D, TE 81 ms, TR 9000 ms, TI 2500 ms meets the flair rules; "
                            "the only candidate")
    assert flair.voxel_mm == pytest.approx((3.5, 3.5, 4.5))
    n = study.images["dwi"].shape[2]
    dwi = series_files(study, "dwi")
    # the b0 images come first in the series; the network's dwi is the b1000 half only
    assert selection.sources["dwi"] == dwi[n:]
    assert selection.chosen["dwi_b0"].files == dwi[:n]
    assert set(selection.sources) == set(CHANNELS)
    assert selection.sources["t2"] == series_files(study, "t2")  # one enhanced file
    record = selection.chosen["dwi"].record()
    assert record["b_value"] == 1000.0 and record["images"] == n and record["series_number"] == 8


def test_higher_resolution_then_later_then_description(study, tmp_path):
    root = _copy(study, tmp_path)
    attrs = study_attributes()
    flair = study.images["flair"]
    write_series(flair.slicer[::2, ::2, :], root / "coarse", "flair", attrs, 12)
    chosen = _select(root).chosen["flair"]
    assert chosen.series.number == 2
    assert "higher resolution than series 12 't2_tirm_tra_dark-fluid' (7x7x4.5 mm)" \
        in chosen.reason
    shutil.rmtree(root / "coarse")
    write_series(flair, root / "repeat", "flair", attrs, 12)  # same grid, acquired later
    chosen = _select(root).chosen["flair"]
    assert chosen.series.number == 12
    assert "acquired later (2026-01-01 08:24:00) than series 2" in chosen.reason
    for path in (root / "repeat").iterdir():  # now the same time as series 2
        ds = pydicom.dcmread(path)
        ds.SeriesTime = "080400.000000"
        ds.SeriesDescription = ds.ProtocolName = "ax_ir_2500"
        ds.save_as(path)
    chosen = _select(root).chosen["flair"]
    assert chosen.series.number == 2
    assert "its description matches the flair patterns, unlike series 12 'ax_ir_2500'" \
        in chosen.reason
    for path in (root / "repeat").iterdir():  # same description, distortion corrected
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = ds.ProtocolName = "t2_tirm_tra_dark-fluid"
        ds.ImageType = "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D"
        ds.save_as(path)
    chosen = _select(root).chosen["flair"]
    assert chosen.series.number == 12
    assert "distortion corrected, unlike series 2 't2_tirm_tra_dark-fluid' (ImageType ND" \
        in chosen.reason
    for path in (root / "repeat").iterdir():
        ds = pydicom.dcmread(path)
        ds.ImageType = "ORIGINAL\\PRIMARY\\M\\ND\\NORM"
        ds.save_as(path)
    with pytest.raises(CsvdnetInputError, match="2 series qualify as flair and nothing "
                                                "separates them") as error:
        _select(root)
    assert "series 2 't2_tirm_tra_dark-fluid', series 12 't2_tirm_tra_dark-fluid'" \
        in str(error.value)
    assert f"study {study.study_uid} (patient SYNTH0001, date 20260101)" in str(error.value)


def test_no_flair_names_what_was_found(study, tmp_path):
    root = _copy(study, tmp_path)
    shutil.rmtree(root / "0002")
    with pytest.raises(CsvdnetInputError) as error:
        _select(root)
    message = str(error.value)
    assert ": no flair series (inversion recovery yes, diffusion no, inversion time >= 1500 ms, "\
           "echo time >= 80 ms); found series 3 't1_mprage_sag_p2_iso' (t1)" in message
    assert "\n" not in message


def test_missing_slice_refuses_the_only_flair(study, tmp_path):
    root = _copy(study, tmp_path)
    (root / "0002" / "IM00021").unlink()
    with pytest.raises(CsvdnetInputError) as error:
        _select(root)
    assert ("refused: series 2 't2_tirm_tra_dark-fluid' (a missing slice: 9.00 mm between "
            "slices 20 and 21, 4.50 mm elsewhere)") in str(error.value)


def test_phase_only_swi_and_ct_studies_are_refused(study, tmp_path):
    root = _copy(study, tmp_path)
    shutil.rmtree(root / "0005")  # the SWI magnitude: phase and minIP remain
    with pytest.raises(CsvdnetInputError, match="no usable swi series: series 6 'Pha_Images' "
                                                r"\(ImageType P\); series 7 'mIP_Images\(SW\)' "
                                                r"\(ImageType MNIP\)"):
        _select(root)
    ct = tmp_path / "ct"
    write_series(study.images["flair"], ct, "flair", study_attributes(modality="CT"), 2)
    with pytest.raises(CsvdnetInputError, match=r"not an MR study \(modality CT\): skipped"):
        _select(ct)


def test_stack_problems_hand_made():
    axial = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

    def frames(zs):
        return [Frame((0.0, 0.0, float(z))) for z in zs]

    assert stack_problem(frames([0, 4, 8, 12, 16]), axial) is None
    assert stack_problem(frames([0, 4, 8, 13, 17]), axial) == \
        "inconsistent slice spacing: 5.00 mm between slices 3 and 4, 4.00 mm elsewhere"
    assert stack_problem(frames([0, 4, 12, 16, 20]), axial) == \
        "a missing slice: 8.00 mm between slices 2 and 3, 4.00 mm elsewhere"
    assert stack_problem(frames([0, 4, 4, 8]), axial) == \
        "1 image(s) share a slice position with another (several echoes or repeats in one " \
        "series?)"
    assert stack_problem(frames([0]), axial) == "1 slice: not a volume"
    assert stack_problem(frames([0, 4]), None) == "no ImageOrientationPatient"
    # the order of the files does not matter, only the positions along the normal
    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # normal along -x
    shuffled = [Frame((float(x), 5.0, 7.0)) for x in np.array([3, 0, 6, 9]) * 1.5]
    assert stack_problem(shuffled, sagittal) is None


def test_directional_diffusion_images_beside_the_trace_are_set_aside(study, tmp_path):
    root = _copy(study, tmp_path)
    uid = pydicom.dcmread(series_files(study, "dwi")[0]).SeriesInstanceUID
    n = study.images["dwi"].shape[2]
    extra = write_series(study.images["dwi"], root / "0008", "dwi", study_attributes(), 8,
                         b_value=1000, series_uid=uid, first_instance=2 * n + 1)
    for path in extra:  # one direction of the b1000 images, at the trace's positions
        ds = pydicom.dcmread(path)
        ds.ImageType = "ORIGINAL\\PRIMARY\\DIFFUSION\\NONE\\ND"
        ds.DiffusionDirectionality = "DIRECTIONAL"
        ds.save_as(path)
    chosen = _select(root).chosen["dwi"]
    assert [i.path.name for i in chosen.instances] == \
        [p.name for p in series_files(study, "dwi")[n:]]
    for path in extra:  # without a trace image the shared positions are named
        ds = pydicom.dcmread(path)
        ds.ImageType = "ORIGINAL\\PRIMARY\\DIFFUSION\\TRACEW\\ND"
        ds.DiffusionDirectionality = "ISOTROPIC"
        ds.save_as(path)
    with pytest.raises(CsvdnetInputError, match=r"no usable dwi series: series 8 "
                                                rf"'ep2d_diff_b0_1000_tra' b=1000 \({n} image"):
        _select(root)


def test_mosaic_series_are_refused_by_name(study, tmp_path):
    root = _copy(study, tmp_path)
    for path in (root / "0002").iterdir():
        ds = pydicom.dcmread(path)
        ds.ImageType = "ORIGINAL\\PRIMARY\\M\\ND\\MOSAIC"
        ds.save_as(path)
    with pytest.raises(CsvdnetInputError, match=r"refused: series 2 't2_tirm_tra_dark-fluid' "
                                                r"\(Siemens mosaic images"):
        _select(root)
