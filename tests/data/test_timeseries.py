"""Tests of mlxseq/data/timeseries.py: the CSV reader's errors and the normaliser's round trip."""

import numpy as np
import pytest

from mlxseq.data import DataError
from mlxseq.data.timeseries import Normaliser, read_timeseries

CSV = "date,HUFL,OT\n2016-07-01 00:00:00,5.8,30.5\n2016-07-01 01:00:00,-1.5,27.8\n2016-07-01 02:00:00,5.2,27.8\n"


def test_reads_dates_columns_and_values(tmp_path):
    path = tmp_path / "ett.csv"
    path.write_text(CSV)
    series = read_timeseries(path)
    assert series.columns == ["HUFL", "OT"] and len(series) == 3
    assert series.dates[1] == "2016-07-01 01:00:00"
    assert series.values.tolist() == [[5.8, 30.5], [-1.5, 27.8], [5.2, 27.8]]
    assert read_timeseries(path, columns=["OT"]).values[:, 0].tolist() == [30.5, 27.8, 27.8]


@pytest.mark.parametrize("text, line, message", [
    ("time,a\n2016-01-01,1\n", 1, "no 'date' column"),
    ("date,a\n2016-01-01,1,2\n", 2, "expected 2 comma-separated fields, got 3"),
    ("date,a\n2016-01-01,1\n2016-01-02,x\n", 3, "column 'a': 'x' is not a finite number"),
    ("date,a\n2016-01-01,nan\n", 2, "is not a finite number"),
    ("date,a\n2016-13-01,1\n", 2, "bad date '2016-13-01'"),
    ("date,a\n2016-01-02,1\n2016-01-01,1\n", 3, "is not after the previous row's"),
])
def test_malformed_rows_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        read_timeseries(path)
    assert str(caught.value).startswith(f"{path}:{line}:")


def test_unknown_column(tmp_path):
    (tmp_path / "a.csv").write_text(CSV)
    with pytest.raises(DataError, match="no feature column 'LOAD'"):
        read_timeseries(tmp_path / "a.csv", columns=["LOAD"])


def test_normaliser_fits_on_given_rows_and_round_trips(tmp_path):
    train = np.array([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0]])
    normaliser = Normaliser.fit(train, ["a", "b", "c"])
    assert normaliser.mean.tolist() == [2.0, 20.0, 5.0] and normaliser.std.tolist() == [1.0, 10.0, 1.0]  # constant: 1
    z = normaliser.transform(train)
    assert z.tolist() == [[-1.0, -1.0, 0.0], [1.0, 1.0, 0.0]]
    normaliser.save(tmp_path)
    loaded = Normaliser.load(tmp_path)
    x = np.random.default_rng(0).normal(size=(4, 5, 3))
    assert np.array_equal(loaded.inverse(loaded.transform(x)), normaliser.inverse(normaliser.transform(x)))
    assert np.allclose(loaded.inverse(loaded.transform(x)), x)
    with pytest.raises(ValueError, match=r"expected 3 features in the last axis, got shape \(2,\)"):
        normaliser.transform(np.zeros(2))
    with pytest.raises(DataError, match="no such normaliser file"):
        Normaliser.load(tmp_path / "nowhere")
