"""Rows of a CSV file or an Excel workbook, one at a time (bounded memory).

Row numbers are the spreadsheet's: the header is row 1, the first data row is
row 2, so a rejection report points at the row a council officer sees.
"""

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

import openpyxl

Cell = str | int | float | bool | datetime | date | time | None


class ReadError(ValueError):
    """The file cannot be read as a table with a header row."""


@dataclass(frozen=True, slots=True)
class Row:
    number: int
    cells: dict[str, Cell]


@dataclass
class Table:
    header: list[str]
    rows: Iterator[Row]


def open_table(path: Path, *, sheet: str | None = None) -> Table:
    """The file's header and an iterator over its rows; `.xlsx` by openpyxl, else CSV."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return _workbook(path, sheet)
    return _csv(path)


def _checked_header(header: list[str], path: Path) -> list[str]:
    names = [name.strip() for name in header]
    if not any(names):
        raise ReadError(f"{path}: the first row must name the columns")
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise ReadError(f"{path}: columns named more than once: {', '.join(repeated)}")
    return names


def _csv(path: Path) -> Table:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise ReadError(f"cannot open {path}: {error}") from error
    reader = csv.reader(handle)
    try:
        header = _checked_header(next(reader, []), path)
    except (UnicodeDecodeError, csv.Error) as error:
        handle.close()
        raise ReadError(f"{path}: not a UTF-8 CSV file: {error}") from error

    def rows() -> Iterator[Row]:
        number = 1
        with handle:
            try:
                for number, values in enumerate(reader, start=2):
                    if not any(value.strip() for value in values):
                        continue  # blank lines at the end of exports
                    cells: dict[str, Cell] = {
                        name: (value.strip() or None)
                        for name, value in zip(header, values, strict=False)
                    }
                    yield Row(number, cells)
            except (UnicodeDecodeError, csv.Error) as error:
                raise ReadError(f"{path}: unreadable after row {number}: {error}") from error

    return Table(header, rows())


def _workbook(path: Path, sheet: str | None) -> Table:
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises zipfile, KeyError and its own errors
        raise ReadError(f"cannot open workbook {path}: {error}") from error
    if sheet is not None and sheet not in workbook.sheetnames:
        workbook.close()
        raise ReadError(f"{path}: no sheet {sheet!r} (sheets: {', '.join(workbook.sheetnames)})")
    worksheet = workbook[sheet] if sheet else workbook.worksheets[0]
    values = worksheet.iter_rows(values_only=True)
    # Read-only sheets yield blank rows above the header too: the header is the
    # first row with a value, and row numbers stay the sheet's own.
    header_number, first = 1, next(values, ())
    while first and all(value is None for value in first):
        header_number, first = header_number + 1, next(values, ())
    header = _checked_header(["" if value is None else str(value) for value in first], path)

    def rows() -> Iterator[Row]:
        try:
            for number, line in enumerate(values, start=header_number + 1):
                cells: dict[str, Cell] = {
                    name: _cell(value) for name, value in zip(header, line, strict=False) if name
                }
                if any(value is not None for value in cells.values()):
                    yield Row(number, cells)
        finally:
            workbook.close()

    return Table(header, rows())


def _cell(value: object) -> Cell:
    if isinstance(value, str):
        return value.strip() or None
    if value is None or isinstance(value, int | float | bool | datetime | date | time):
        return value
    return str(value)
