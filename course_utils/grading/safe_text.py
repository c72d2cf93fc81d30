"""Student-controlled text made safe to print: in `report.txt`, `grades.csv` and the terminal.

File names, zip member names, student ids, the messages a check builds from a student's values:
any of them may carry a carriage return that rewrites the line a TA reads in `cat report.txt`,
a terminal escape sequence that hides it or changes the colours, a bidirectional override
that reorders it, or a leading `=` that a spreadsheet runs as a formula. `printable` turns each
control or formatting character into a visible escape, so the text says what it is.
"""
from __future__ import annotations

import unicodedata

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def printable(text: object, limit: int = 2000) -> str:
    """`text` with every control, format (bidirectional overrides, zero-width characters),
    surrogate, private-use or unassigned character written as an escape; at most `limit`
    characters of the original."""
    text = str(text)
    cut = len(text) > limit
    out = []
    for ch in text[:limit]:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out) + ("..." if cut else "")


def spreadsheet_cell(text: object) -> str:
    """`printable(text)`, with a leading character that spreadsheets read as a formula
    (`=`, `+`, `-`, `@`) quoted by a leading apostrophe (OWASP's advice for CSV files)."""
    value = printable(text, 200)
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
