"""csvdnet.io.ratings: ratings.csv read / write and validation."""

from __future__ import annotations

import pytest

from _nifti_files import raises_input_error
from csvdnet.io import Ratings, read_ratings, write_ratings

# --------------------------------------------------------------------------------------------
# Ratings

def test_ratings_round_trip(tmp_path):
    ratings = {"s01": Ratings(1, 2, 3, 0, 4, 1, 2), "s02": Ratings(fazekas_pv=3)}
    path = tmp_path / "ratings.csv"

    write_ratings(path, ratings)

    assert path.read_text().splitlines() == [
        "subject,fazekas_pv,fazekas_deep,epvs_bg_grade,cmb_count,lacune_count,rssi_count,"
        "total_score",
        "s01,1,2,3,0,4,1,2",
        "s02,3,,,,,,",
    ]
    assert read_ratings(path) == ratings


def test_ratings_accept_integral_decimals_and_a_subset_of_columns(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("\ufeffsubject,cmb_count,fazekas_pv\ns01,12.0,\n")  # a spreadsheet's BOM

    assert read_ratings(path) == {"s01": Ratings(cmb_count=12)}


@pytest.mark.parametrize("rows, reason", [
    ("s01,4,,,,,,", r"row 2, column fazekas_pv: 4 is out of range \(0\.\.3\)"),
    ("s01,,-1,,,,,", r"row 2, column fazekas_deep: -1 is out of range \(0\.\.3\)"),
    ("s01,,,5,,,,", r"row 2, column epvs_bg_grade: 5 is out of range \(0\.\.4\)"),
    ("s01,,,,-2,,,", r"row 2, column cmb_count: -2 is out of range \(>= 0\)"),
    ("s01,,,,,,,5", r"row 2, column total_score: 5 is out of range \(0\.\.4\)"),
    ("s01,2.5,,,,,,", "row 2, column fazekas_pv: '2.5' is not an integer"),
    ("s01,,,,,many,,", "row 2, column lacune_count: 'many' is not an integer"),
    ("s01,1,,,,,,\ns02,1,,,,,,\ns01,2,,,,,,", r"row 4: subject s01 is rated twice \(also row 2\)"),
    (",1,,,,,,", "row 2, column subject: an empty cell is not a usable subject id"),
    ("../s01,1,,,,,,", "row 2, column subject: '../s01' is not a usable subject id"),
])
def test_bad_ratings_are_refused_naming_row_and_column(tmp_path, rows, reason):
    path = tmp_path / "ratings.csv"
    path.write_text("subject,fazekas_pv,fazekas_deep,epvs_bg_grade,cmb_count,lacune_count,"
                    f"rssi_count,total_score\n{rows}\n")

    with raises_input_error(path, reason):
        read_ratings(path)


@pytest.mark.parametrize("header, reason", [
    ("subject,fazekas", r"unknown column 'fazekas' \(known: subject, fazekas_pv, fazekas_deep, "),
    ("id,fazekas_pv", r"missing column\(s\) subject"),
    ("subject,cmb_count,cmb_count", "column 'cmb_count' appears more than once"),
])
def test_ratings_with_bad_columns_are_refused(tmp_path, header, reason):
    path = tmp_path / "ratings.csv"
    path.write_text(f"{header}\ns01,1\n")

    with raises_input_error(path, reason):
        read_ratings(path)


def test_ratings_values_are_validated_in_code_too():
    with pytest.raises(ValueError, match=r"fazekas_pv: 4 is out of range"):
        Ratings(fazekas_pv=4)


# --------------------------------------------------------------------------------------------
