"""Outside text made safe for a terminal (docs/threat-model.md T35).

STS messages, break-glass reasons, program names, working directories and record metadata come
from outside and may carry terminal escapes: ESC and CSI sequences, C1 controls (0x80-0x9f,
which some terminals obey like ESC), a CR that overwrites the line, or bidi overrides that
reorder it.  :func:`terminal_safe` shows each as a visible escape (``\\x1b``, ``\\u202e``), so
the text still reads but the terminal acts on none of it.  Every printer (CLI, prompt, TUI)
uses it; ``vaultd/credproc.py`` keeps a stdlib copy (it imports nothing from vaultd), tested to
agree.
"""

from __future__ import annotations

_FORMAT_CONTROLS = (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F))
_UNSAFE = (*range(0x20), *range(0x7F, 0xA0), *_FORMAT_CONTROLS, *range(0x2066, 0x206A))
_TABLE = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE}
_MULTILINE_TABLE = {c: e for c, e in _TABLE.items() if c not in (0x09, 0x0A)}


def terminal_safe(text: object, *, multiline: bool = False) -> str:
    """``text`` with every control, C1 and bidi/line-separator character shown as an escape.

    ``multiline`` keeps ``\\n`` and ``\\t`` (for text printed as several lines).
    """
    return str(text).translate(_MULTILINE_TABLE if multiline else _TABLE)
