"""CSV cells that spreadsheets cannot mistake for formulas and that are always valid UTF-8.

A cell starting with `=`, `+`, `-`, `@`, tab or CR is prefixed with `'` (the OWASP CSV-injection
rule). A value that itself starts with `'` is escaped too, or it could not be told apart from an
escaped one.

A value that is not valid Unicode (a file name that is not valid UTF-8, which Python holds with
`surrogateescape` as lone surrogates) is written as `'%` followed by the value with each
undecodable byte as `%XX` and each `%` as `%25`: `'%/pics/bad%FF%FEname.jpg`. The escaping above
never makes a cell start with `'%` (`%` is no formula character), so the form cannot be confused
with any real name, and `restore` turns it back into the very same string (so the ledger reads the
file back as the same file). Every other cell is written as it is.
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
#: How a cell holding bytes that are not UTF-8 starts.
BYTES_MARK = "'%"

_SURROGATE = re.compile("[\ud800-\udfff%]")
_ESCAPE = re.compile(r"%(?:u([0-9A-F]{4})|([0-9A-F]{2}))")


def spreadsheet_safe(cell: str) -> str:
    if _has_surrogates(cell):
        return BYTES_MARK + _SURROGATE.sub(_escape_one, cell)
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def restore(cell: str) -> str:
    if cell.startswith(BYTES_MARK):
        return _ESCAPE.sub(_unescape_one, cell[len(BYTES_MARK):])
    return cell[1:] if cell.startswith("'") else cell


def printable(text: str) -> str:
    """`text` for a terminal or a log line: undecodable bytes shown as \\xff, always encodable."""
    if not _has_surrogates(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # one byte that was not UTF-8 (surrogateescape)
        return f"%{code - 0xDC00:02X}"
    if char == "%":
        return "%25"
    return f"%u{code:04X}"  # any other lone surrogate (a Windows name that is not UTF-16)


def _unescape_one(match: re.Match[str]) -> str:
    wide, byte = match.groups()
    if wide is not None:
        return chr(int(wide, 16))
    value = int(byte, 16)
    return "%" if value == 0x25 else chr(0xDC00 + value)
