"""csvdnet.dicom.rules: the shipped rules, a site's file checked, header facts, channel tests."""

from __future__ import annotations

import re

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from csvdnet.dicom.rules import DEFAULT_RULES, Acquisition, acquisition, load_rules, match_channel
from csvdnet.errors import CsvdnetInputError


def _classic(scanning: str, te: float, tr: float = 5000.0, ti: float | None = None,
             acq: str = "2D", image_type: str = "ORIGINAL\\PRIMARY\\M") -> Dataset:
    ds = Dataset()
    ds.ScanningSequence, ds.MRAcquisitionType, ds.ImageType = scanning, acq, image_type
    ds.EchoTime, ds.RepetitionTime = te, tr
    if ti is not None:
        ds.InversionTime = ti
    return ds


def test_shipped_rules_classify_the_five_channels():
    rules = load_rules()
    assert rules.path == DEFAULT_RULES and len(rules.sha256) == 64
    assert {"LOCALIZER", "MPR", "ADC", "P", "MNIP"} <= rules.exclude_image_type
    cases = {  # header -> the channels whose rules it meets
        ("SE\\IR", 81.0, 9000.0, 2500.0, "2D"): {"flair"},
        ("GR\\IR", 2.98, 2300.0, 900.0, "3D"): {"t1"},
        ("SE", 99.0, 6000.0, None, "2D"): {"t2"},
        ("GR", 20.0, 28.0, None, "3D"): {"swi"},
        ("SE\\IR", 12.0, 600.0, 2500.0, "2D"): set(),  # TE 12 ms: not a FLAIR
        ("SE\\IR", 90.0, 9000.0, 150.0, "2D"): set(),  # STIR (TI 150 ms): not a FLAIR
        ("SE", 20.0, 600.0, None, "2D"): set(),  # T1 spin echo: TE < 40
        ("GR", 4.0, 8.6, None, "2D"): set(),  # 2-D short-TE gradient echo: no channel
    }
    for (scanning, te, tr, ti, acq), wanted in cases.items():
        facts = acquisition(_classic(scanning, te, tr, ti, acq), False)
        got = {name for name, rule in rules.channels.items() if match_channel(rule, facts) is None}
        assert got == wanted, (scanning, te, ti, got)
    dwi = acquisition(_classic("EP", 89.0), True)
    assert {n for n, r in rules.channels.items() if match_channel(r, dwi) is None} == {"dwi"}


def test_reasons_name_the_failed_condition():
    rules = load_rules()
    facts = acquisition(_classic("SE\\IR", 81.0, 9000.0, 1200.0), False)
    assert match_channel(rules.channels["flair"], facts) == \
        "inversion time 1200 ms is not >= 1500 ms"
    no_te = Acquisition(True, True, False, False, "2D", None, 9000.0, 2500.0)
    assert match_channel(rules.channels["flair"], no_te) == "no echo time"
    t2 = acquisition(_classic("SE\\IR", 90.0, 9000.0, 2500.0), False)
    assert match_channel(rules.channels["t2"], t2) == "inversion recovery is present"
    t1 = acquisition(_classic("GR", 3.0, acq="2D"), False)
    assert match_channel(rules.channels["t1"], t1) == "mr_acquisition_type is 2D, not 3D"


def test_enhanced_header_facts():
    ds = Dataset()
    ds.EchoPulseSequence, ds.InversionRecovery, ds.MRAcquisitionType = "SPIN", "YES", "2D"
    echo, timing, modifier = Dataset(), Dataset(), Dataset()
    echo.EffectiveEchoTime, timing.RepetitionTime, modifier.InversionTimes = 88.0, 9000.0, [2400]
    shared = Dataset()
    shared.MREchoSequence = Sequence([echo])
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    shared.MRModifierSequence = Sequence([modifier])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    facts = acquisition(ds, False)
    assert (facts.spin_echo, facts.inversion_recovery, facts.gradient_echo) == (True, True, False)
    assert (facts.echo_time_ms, facts.repetition_time_ms) == (88.0, 9000.0)
    assert facts.inversion_time_ms == 2400.0
    assert match_channel(load_rules().channels["flair"], facts) is None


@pytest.mark.parametrize("text, message", [
    ("version: 2\nchannels: {}\n", "need 'version: 1'"),
    ("version: 1\nchanels: {}\n", "unknown key(s) chanels"),
    ("version: 1\nchannels:\n  flair: {require: {inversion: true}}\n",
     "channels.flair.require.inversion: unknown"),
    ("version: 1\nchannels:\n  flair: {min: {echo_time_ms: fast}}\n",
     "channels.flair.min.echo_time_ms: must be one of"),
    ("version: 1\nchannels:\n  dwi: {b_values: {keep: [0], channel: 1000}}\n",
     "channels.dwi.b_values: needs"),
    ("version: 1\nchannels: [\n", "not valid YAML"),
])
def test_a_bad_rules_file_is_one_line_naming_it(tmp_path, text, message):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(CsvdnetInputError, match=re.escape(message)) as error:
        load_rules(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
