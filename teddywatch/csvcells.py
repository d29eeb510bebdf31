"""CSV cells that spreadsheets cannot mistake for formulas (the OWASP CSV-injection rule).

A cell starting with `=`, `+`, `-`, `@`, tab or CR is prefixed with `'`. `restore` undoes it when
reading back, so every path round-trips exactly. A value that itself starts with `'` is escaped
too, or it could not be told apart from an escaped one.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_safe(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def restore(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell
