"""Text from files (class names, paths, reasons) made safe to print on a terminal.

Class names come from annotation files, folder names and model sidecars; printed raw, an ANSI escape
in one could clear the screen or rewrite earlier output. ``printable`` escapes every control or
bidirectional-override character (``\\x1b`` is printed as the four characters ``\\x1b``).
"""

from __future__ import annotations

import unicodedata


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode keeps it: show the byte
        code -= 0xDC00
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, keep_newlines: bool = False) -> str:
    """``str(text)`` with control (Unicode Cc), format (Cf: bidi overrides, zero-width) and surrogate (Cs:
    the undecodable bytes of a non-UTF-8 file name) characters escaped; with ``keep_newlines``, ``\\n``
    stays a line break (multi-line messages: never use it on a file name alone)."""
    out = []
    for ch in str(text):
        if keep_newlines and ch == "\n":
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs"):  # Cs: a non-UTF-8 byte of a file name
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)
