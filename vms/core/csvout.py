"""CSV for people's spreadsheets: every file vms writes goes through `csv_cell`.

A spreadsheet runs a cell that starts with `= + - @` (or a tab or carriage return, which some
programs skip before looking) as a formula: a camera named `=HYPERLINK(...)` in a register
export would otherwise run in the DPO's spreadsheet (CSV injection). Such text cells get a
leading apostrophe, which spreadsheets show as text. Numbers are written as numbers (a west
longitude stays -3.2).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str | int | float:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def to_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Header and rows as CSV text (CRLF line ends, as spreadsheets expect)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return buf.getvalue()
