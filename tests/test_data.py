"""Behaviour of tradinglib.data: loading bars from real and broken files, describing them."""

from __future__ import annotations

import csv
import importlib.resources
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradinglib.data import (
    BUILTIN_SOURCES,
    describe_bars,
    format_bars_info,
    load_bars,
    source_path,
)
from tradinglib.exceptions import DataError, InputError

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA_DIR.is_dir(), reason=f"shared test data not found at {DATA_DIR}"
)
OHLCV = ["open", "high", "low", "close", "volume"]
OHLCV_ADJ = [*OHLCV, "adj_close"]


def data_rows(path: Path) -> list[list[str]]:
    """The non-blank data rows of a CSV file, header excluded, read with the csv module."""
    with path.open(newline="") as handle:
        return [row for row in csv.reader(handle) if row][1:]


def builtin_path(file_name: str) -> Path:
    return Path(str(importlib.resources.files("gym_anytrading.datasets") / "data" / file_name))


# --- real files ---------------------------------------------------------------------------

GOOD_FILES = [
    # file, columns, index of the time fields in a row, tz
    ("nvda-1999-2014.txt", OHLCV_ADJ, 1, "UTC"),
    ("orcl-1995-2014.txt", OHLCV_ADJ, 1, "UTC"),
    ("yhoo-1996-2014.txt", OHLCV_ADJ, 1, "America/New_York"),
    ("2006-min-005.txt", OHLCV, 2, "UTC"),
]


@needs_data
@pytest.mark.parametrize(("file_name", "columns", "time_fields", "tz"), GOOD_FILES)
def test_real_file_loads(file_name: str, columns: list[str], time_fields: int, tz: str) -> None:
    path = DATA_DIR / file_name
    rows = data_rows(path)
    bars = load_bars(path, tz=tz)

    assert list(bars.columns) == columns
    assert len(bars) == len(rows)
    assert all(dtype == np.float64 for dtype in bars.dtypes)
    assert bars.index.name == "time"
    assert str(bars.index.tz) == tz
    assert bars.index.is_monotonic_increasing and bars.index.is_unique
    first, last = rows[0], rows[-1]
    assert bars.index[0] == pd.Timestamp(" ".join(first[:time_fields]), tz=tz)
    assert bars.index[-1] == pd.Timestamp(" ".join(last[:time_fields]), tz=tz)
    assert bars["close"].iloc[-1] == float(last[time_fields + 3])


@needs_data
def test_real_adj_close_is_kept_apart_from_close() -> None:
    path = DATA_DIR / "nvda-1999-2014.txt"
    first = data_rows(path)[0]  # Date,Open,High,Low,Close,Adj Close,Volume
    bars = load_bars(path)
    assert bars["adj_close"].iloc[0] == float(first[5])
    assert bars["volume"].iloc[0] == float(first[6])
    assert bars["adj_close"].iloc[0] != bars["close"].iloc[0]


@needs_data
def test_real_file_with_header_of_7_names_and_rows_of_8_fields_is_refused() -> None:
    with pytest.raises(
        DataError,
        match=r"2006-01-02-volume-min-001\.txt: the header \(line 1\) names 7 columns "
        r"\(Date, Open.*\) but line 2 has 8 fields",
    ):
        load_bars(DATA_DIR / "2006-01-02-volume-min-001.txt")


@needs_data
def test_real_tick_sample_has_a_duplicate_millisecond_on_line_24() -> None:
    with pytest.raises(DataError, match=r"(?s)ticksample\.csv.*line 24: duplicate timestamp "):
        load_bars(DATA_DIR / "ticksample.csv")


@needs_data
def test_real_tick_sample_merges_ticks_sharing_a_millisecond() -> None:
    path = DATA_DIR / "ticksample.csv"
    rows = data_rows(path)
    bars = load_bars(path, duplicates="merge")
    assert len(bars) == len(rows) - 1  # lines 23 and 24 share 20:58:22.316
    same = pd.Timestamp("2015-09-23T20:58:22.316", tz="UTC")
    line23, line24 = rows[21], rows[22]  # data rows are 0-based after the header
    assert bars.loc[same, "open"] == float(line23[1])
    assert bars.loc[same, "close"] == float(line24[4])
    assert bars.loc[same, "high"] == max(float(line23[2]), float(line24[2]))
    assert bars.loc[same, "volume"] == float(line23[5]) + float(line24[5])
    assert bars.index.is_unique and bars.index.is_monotonic_increasing


def test_unknown_duplicates_policy() -> None:
    with pytest.raises(DataError, match="duplicates must be"):
        load_bars("googl-daily", duplicates="drop")  # type: ignore[arg-type]


@needs_data
def test_real_tick_sample_without_the_duplicate_keeps_milliseconds(tmp_path: Path) -> None:
    text_lines = (DATA_DIR / "ticksample.csv").read_text().splitlines(keepends=True)
    del text_lines[23]  # line 24 repeats the time of line 23
    path = tmp_path / "ticks.csv"
    path.write_text("".join(text_lines))
    bars = load_bars(path)
    assert len(bars) == len(data_rows(path))
    assert list(bars.columns) == OHLCV
    assert bars.index[0] == pd.Timestamp("2015-09-23T20:57:42.146", tz="UTC")
    assert describe_bars(bars).frequency_label == "irregular"


BUILTINS = [
    ("googl-daily", "STOCKS_GOOGL.csv", OHLCV_ADJ, "America/New_York", "1 day"),
    ("eurusd-hourly", "FOREX_EURUSD_1H_ASK.csv", OHLCV, "UTC", "1 hour"),
]


@pytest.mark.parametrize(("name", "file_name", "columns", "tz", "label"), BUILTINS)
def test_builtin_loads(name: str, file_name: str, columns: list[str], tz: str, label: str) -> None:
    rows = data_rows(builtin_path(file_name))
    bars = load_bars(name)
    assert name in BUILTIN_SOURCES
    assert list(bars.columns) == columns
    assert len(bars) == len(rows)
    assert str(bars.index.tz) == tz
    assert bars.index.is_monotonic_increasing and bars.index.is_unique
    assert all(dtype == np.float64 for dtype in bars.dtypes)
    assert describe_bars(bars).frequency_label == label


def test_eurusd_day_first_stamps_are_read_day_first() -> None:
    first = data_rows(builtin_path("FOREX_EURUSD_1H_ASK.csv"))[0][0]  # 01.01.2017 22:00:00.000
    day, month, _ = first.split(".", 2)
    bars = load_bars("eurusd-hourly")
    assert (bars.index[0].day, bars.index[0].month) == (int(day), int(month))
    assert bars.index[1] - bars.index[0] == pd.Timedelta(hours=1)


# --- layouts ------------------------------------------------------------------------------

ROWS = ["10,11,9,10.5,100", "10.5,12,10,11,200", "11,11.5,10.5,11.2,150"]


@pytest.mark.parametrize(
    ("header", "stamps", "first"),
    [
        ("Date", ["2024-01-02", "2024-01-03", "2024-01-04"], "2024-01-02"),
        (
            "Date,Time",
            ["2024-01-02,09:30:00", "2024-01-02,09:35:00", "2024-01-02,09:40:00"],
            "2024-01-02 09:30",
        ),
        (
            "Datetime",
            ["2024-01-02T09:30:00.125", "2024-01-02T09:30:01.5", "2024-01-02T09:30:02"],
            "2024-01-02 09:30:00.125",
        ),
        (
            "Time",
            ["31.01.2024 22:00:00.000", "31.01.2024 23:00:00.000", "01.02.2024 00:00:00.000"],
            "2024-01-31 22:00",
        ),
        (
            "timestamp",
            ["2024-01-02 09:30", "2024-01-02 09:31", "2024-01-02 09:32"],
            "2024-01-02 09:30",
        ),
    ],
)
def test_time_layouts(tmp_path: Path, header: str, stamps: list[str], first: str) -> None:
    path = tmp_path / "bars.csv"
    body = "".join(f"{s},{r}\n" for s, r in zip(stamps, ROWS, strict=True))
    path.write_text(f"{header},Open,High,Low,Close,Volume\n{body}")
    bars = load_bars(path, tz="Europe/Berlin")
    assert bars.index[0] == pd.Timestamp(first, tz="Europe/Berlin")
    assert len(bars) == 3


@pytest.mark.parametrize("adj", ["Adj Close", "adj_close", "AdjClose", "ADJ-CLOSE"])
def test_column_names_match_case_insensitively(tmp_path: Path, adj: str) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        f"DATE,open,HIGH,Low,cLoSe,{adj},Volume,OpenInterest\n2024-01-02,10,11,9,10.5,10.1,100,0\n"
    )
    bars = load_bars(path)
    assert list(bars.columns) == OHLCV_ADJ
    assert bars["adj_close"].iloc[0] == 10.1


def test_aware_stamps_keep_their_offset_and_blank_tail_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "Datetime,Open,High,Low,Close,Volume\n2024-01-02T09:30:00+02:00,10,11,9,10.5,100\n\n\n"
    )
    bars = load_bars(path, tz="America/New_York")
    assert bars.index[0] == pd.Timestamp("2024-01-02T07:30:00Z")
    assert bars.index[0].utcoffset() == pd.Timedelta(hours=2)
    assert len(bars) == 1


@needs_data
@pytest.mark.parametrize(
    ("file_name", "tz"), [("nvda-1999-2014.txt", "America/New_York"), ("2006-min-005.txt", "UTC")]
)
def test_parquet_round_trips_a_csv_load(tmp_path: Path, file_name: str, tz: str) -> None:
    from_csv = load_bars(DATA_DIR / file_name, tz=tz)
    path = tmp_path / "bars.parquet"
    from_csv.to_parquet(path)
    pd.testing.assert_frame_equal(load_bars(path), from_csv)


def test_parquet_with_time_and_price_columns(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    frame = pd.DataFrame(
        {
            "Date": ["2024-01-02", "2024-01-03"],
            "Open": [1.0, 2.0],
            "High": [2.0, 3.0],
            "Low": [0.5, 1.5],
            "Close": [1.5, 2.5],
            "Volume": [10, 20],
        }
    )
    frame.to_parquet(path)
    bars = load_bars(path)
    assert list(bars.columns) == OHLCV
    assert bars.index[1] == pd.Timestamp("2024-01-03", tz="UTC")


# --- errors -------------------------------------------------------------------------------

HEADER = "Date,Open,High,Low,Close,Volume"
GOOD = "2024-01-02,10,11,9,10.5,100"


def lines(*rows: str, header: str = HEADER) -> str:
    """CSV text: the header line, then the rows."""
    return "".join(f"{line}\n" for line in (header, *rows))


ADJ = "Date,Open,High,Low,Close,Adj Close,Volume"
GYM = "Time,Open,High,Low,Close,Volume"
BAD_ROWS = [f"2024-01-0{d},10,11,9,x,1" for d in (3, 4, 5)]
BROKEN_CSV = [  # file content, regex the message must contain
    pytest.param("", r"is empty \(0 bytes\)", id="zero-bytes"),
    pytest.param(lines(), r"no data rows", id="header-only"),
    pytest.param(
        lines("2024-01-02,1,2,0.5", header="Date,Open,High,Low"),
        r"missing column\(s\) close, volume; found: Date, Open, High, Low",
        id="missing-columns",
    ),
    pytest.param(
        lines("1,2,0.5,1,1", header="Open,High,Low,Close,Volume"),
        r"missing column\(s\) time",
        id="no-time-column",
    ),
    pytest.param(
        lines("2024-01-02;1;2;0.5;1;1", header="Date;Open;High;Low;Close;Volume"),
        r"is the separator a comma",
        id="semicolons",
    ),
    pytest.param(
        lines("2024-01-02,09:30:00,10,11,9,10.5,100"),
        r"header \(line 1\) names 6 columns .* but line 2 has 7 fields",
        id="header-short-by-one",
    ),
    pytest.param(
        lines(GOOD, "2024-01-03,10,11,9,10.5,100,7"),
        r"line 3 has 7 fields but the header \(line 1\) names 6",
        id="ragged-row",
    ),
    pytest.param(
        lines(GOOD, "2024-13-45,10,11,9,10.5,100"),
        r"line 3: column Date: '2024-13-45' is not a timestamp",
        id="bad-date",
    ),
    pytest.param(
        lines(GOOD, ",10,11,9,10.5,100"), r"line 3: column Date: missing value", id="empty-date"
    ),
    pytest.param(
        lines(
            "01.01.2017 22:00:00.000,1,2,0.5,1,1", "32.01.2017 23:00:00.000,1,2,0.5,1,1", header=GYM
        ),
        r"line 3: column Time: '32.01.2017 23:00:00.000' is not a timestamp",
        id="bad-day-first-time",
    ),
    pytest.param(lines(GOOD, "", "2024-01-03,10,11,9,10,1"), r"line 3 is blank", id="blank-line"),
    pytest.param(lines(GOOD, GOOD), r"line 3: duplicate timestamp 2024-01-02", id="duplicate"),
    pytest.param(
        lines("2024-01-03,10,11,9,10.5,100", GOOD),
        r"line 3: timestamp 2024-01-02 00:00:00\+00:00 is earlier than the bar before it",
        id="out-of-order",
    ),
    pytest.param(
        lines(GOOD, "2024-01-03,10,11,9,,100"),
        r"line 3: column Close: missing value",
        id="empty-price",
    ),
    pytest.param(
        lines("2024-01-02,NaN,11,9,10.5,100"),
        r"line 2: column Open: missing value \(empty or NaN\)",
        id="nan-price",
    ),
    pytest.param(
        lines("2024-01-02,10,11,9,abc,100"),
        r"line 2: column Close: 'abc' is not a number",
        id="text-price",
    ),
    pytest.param(
        lines("2024-01-02,10,inf,9,10.5,100"), r"line 2: column High: infinite value", id="inf"
    ),
    pytest.param(
        lines("2024-01-02,0,11,0,10.5,100"),
        r"line 2: column Open: price 0 is not > 0",
        id="zero-price",
    ),
    pytest.param(
        lines("2024-01-02,10,11,-9,10.5,100"),
        r"line 2: column Low: price -9 is not > 0",
        id="negative-price",
    ),
    pytest.param(
        lines("2024-01-02,10,11,9,10,0,1", header=ADJ),
        r"line 2: column Adj Close: price 0 is not > 0",
        id="adj-close-zero",
    ),
    pytest.param(
        lines("2024-01-02,10,9,11,10,100"), r"line 2: high 9 < low 11", id="high-below-low"
    ),
    pytest.param(
        lines("2024-01-02,10,11,9,12,100"),
        r"line 2: close 12 outside \[low 9, high 11\]",
        id="close-above-high",
    ),
    pytest.param(
        lines("2024-01-02,8,11,9,10,100"),
        r"line 2: open 8 outside \[low 9, high 11\]",
        id="open-below-low",
    ),
    pytest.param(
        lines("2024-01-02,10,11,9,10,-5"),
        r"line 2: volume must be >= 0, got -5",
        id="negative-volume",
    ),
    pytest.param(
        lines(GOOD, *BAD_ROWS),
        r"line 3: column Close: 'x' is not a number \(3 rows have this problem\)",
        id="count-of-rows",
    ),
]


@pytest.mark.parametrize(("content", "pattern"), BROKEN_CSV)
def test_broken_csv_is_refused(tmp_path: Path, content: str, pattern: str) -> None:
    path = tmp_path / "broken-bars.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=pattern) as caught:
        load_bars(path)
    assert str(path) in str(caught.value)


def test_local_time_skipped_by_daylight_saving_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dst.csv"
    header = "Date,Time,Open,High,Low,Close,Volume"
    path.write_text(
        lines("2024-03-10,01:30:00,1,2,0.5,1,1", "2024-03-10,02:30:00,1,2,0.5,1,1", header=header)
    )
    pattern = r"line 3: column Date\+Time: '2024-03-10 02:30:00' is a local time skipped"
    with pytest.raises(DataError, match=pattern):
        load_bars(path, tz="America/New_York")
    assert len(load_bars(path)) == 2  # fine in UTC


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(lines(GOOD, GOOD, "2024-01-04,10,9,11,10,-1"))
    with pytest.raises(DataError, match=r"3 problem\(s\)") as caught:
        load_bars(path)
    message = str(caught.value)
    assert "line 3: duplicate" in message
    assert "line 4: high 9 < low 11" in message
    assert "line 4: volume must be >= 0" in message


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(lines().encode() + b"2024-01-02,10,11,9,10.5,100\xe9\n")
    with pytest.raises(DataError, match=r"latin1\.csv: not UTF-8 text"):
        load_bars(path)


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ("no-such-set", r"unknown data source 'no-such-set'.*googl-daily, eurusd-hourly"),
        ("missing/bars.csv", r"missing/bars\.csv: file not found"),
    ],
)
def test_unknown_source_is_refused(source: str, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        load_bars(source)


def test_unknown_extension_directory_and_bad_parquet_are_refused(tmp_path: Path) -> None:
    (tmp_path / "bars.xlsx").write_bytes(b"PK")
    (tmp_path / "bars.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"bars\.xlsx: unknown file extension '\.xlsx'"):
        load_bars(tmp_path / "bars.xlsx")
    with pytest.raises(DataError, match=r"is a directory"):
        load_bars(tmp_path)
    with pytest.raises(DataError, match=r"bars\.parquet: not a readable Parquet file"):
        load_bars(tmp_path / "bars.parquet")


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(DataError, match=r"unknown time zone 'Mars/Base'"):
        load_bars("googl-daily", tz="Mars/Base")


def test_data_error_is_an_input_error_and_pickles(tmp_path: Path) -> None:
    import pickle

    with pytest.raises(DataError) as caught:
        load_bars(tmp_path / "none.csv")
    assert isinstance(caught.value, InputError | ValueError)
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)


def test_large_file_loads(tmp_path: Path) -> None:
    n = 200_000
    stamps = pd.date_range("2020-01-01", periods=n, freq="min").strftime("%Y-%m-%d %H:%M:%S")
    frame = pd.DataFrame(
        {"Datetime": stamps, "Open": 10.0, "High": 11.0, "Low": 9.0, "Close": 10.5, "Volume": 1.0}
    )
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    bars = load_bars(path)
    assert len(bars) == n
    assert bars.index[-1] == pd.Timestamp(stamps[-1], tz="UTC")


# --- describe_bars ------------------------------------------------------------------------


def hourly(stamps: list[str]) -> pd.DataFrame:
    index = pd.DatetimeIndex(stamps, tz="UTC", name="time")
    return pd.DataFrame({c: 1.0 for c in OHLCV}, index=index)


@needs_data
def test_intraday_file_is_5_minutes_with_one_session_per_day() -> None:
    path = DATA_DIR / "2006-min-005.txt"
    info = describe_bars(load_bars(path))
    assert info.frequency_label == "5 minutes"
    assert info.frequency == pd.Timedelta(minutes=5)
    assert info.sessions == len({row[0] for row in data_rows(path)})


@needs_data
def test_daily_gaps_are_market_closures_not_weekends() -> None:
    info = describe_bars(load_bars(DATA_DIR / "nvda-1999-2014.txt"))
    assert info.frequency_label == "1 day"
    assert info.sessions is None
    utc = [(a.strftime("%Y-%m-%d"), b.strftime("%Y-%m-%d")) for a, b in info.gaps]
    assert ("2001-09-10", "2001-09-17") in utc  # exchanges closed after 9/11
    assert ("2012-10-26", "2012-10-31") in utc  # hurricane Sandy


def test_hole_of_3_hours_in_an_hourly_day_is_a_gap() -> None:
    day1 = [f"2024-01-02 {h:02d}:00" for h in (9, 10, 11, 14, 15, 16)]  # 12:00, 13:00 missing
    day2 = [f"2024-01-03 {h:02d}:00" for h in range(9, 17)]
    info = describe_bars(hourly(day1 + day2))
    assert info.frequency_label == "1 hour"
    assert info.gaps == (
        (pd.Timestamp("2024-01-02 11:00", tz="UTC"), pd.Timestamp("2024-01-02 14:00", tz="UTC")),
    )
    assert info.sessions == 2
    text = format_bars_info(info, "synthetic")
    assert "rows:      14" in text
    assert "gaps:      1 (spacing > 90 minutes)" in text
    assert "2024-01-02 11:00:00+00:00 -> 2024-01-02 14:00:00+00:00" in text


def test_weekend_is_not_a_gap_but_a_missing_week_is() -> None:
    days = pd.bdate_range("2024-01-01", "2024-02-29")
    days = days[(days < "2024-01-15") | (days > "2024-01-19")]  # drop one whole week
    bars = pd.DataFrame({c: 1.0 for c in OHLCV}, index=days.tz_localize("America/New_York"))
    info = describe_bars(bars)
    assert info.frequency_label == "1 day"
    assert [(a.day, b.day) for a, b in info.gaps] == [(12, 22)]


def test_describe_few_bars_and_wrong_index() -> None:
    info = describe_bars(hourly(["2024-01-02 09:00"]))
    assert (info.rows, info.frequency, info.frequency_label) == (1, None, "unknown")
    assert "gaps:      not assessed" in format_bars_info(info, Path("one.csv"))
    with pytest.raises(DataError, match="DatetimeIndex"):
        describe_bars(pd.DataFrame({"close": [1.0]}))


def test_format_lists_only_the_first_gaps() -> None:
    stamps = [f"2024-01-02 {h:02d}:{m:02d}" for h in range(9, 17) for m in (0, 10, 20, 40, 50)]
    info = describe_bars(hourly(stamps))
    text = format_bars_info(info, "synthetic", shown=2)
    assert info.frequency_label == "10 minutes"
    assert len(info.gaps) == 8
    assert re.search(r"\.\.\. and 6 more$", text)


def test_source_path_keeps_builtins_and_anchors_files(tmp_path: Path) -> None:
    assert source_path("googl-daily", tmp_path) == "googl-daily"
    assert source_path("data/x.csv", tmp_path) == str(tmp_path / "data" / "x.csv")
    assert source_path(tmp_path / "y.parquet") == str(tmp_path / "y.parquet")
