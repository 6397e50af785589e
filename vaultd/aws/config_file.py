"""Editing ``~/.aws/config`` text: add or update one profile's ``credential_process`` line.

Pure text in, text out: every other line (comments, spacing, other keys and sections) is left
exactly as it was, so running it twice changes nothing the second time.
"""

from __future__ import annotations

import re

_SECTION_RE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(?:[#;].*)?$")
_KEY_RE = re.compile(r"^\s*credential_process\s*=")


def section_name(profile: str) -> str:
    """The config-file section of ``profile`` (``default`` has no ``profile`` prefix)."""
    return "default" if profile == "default" else f"profile {profile}"


def upsert_credential_process(text: str, profile: str, command: str) -> str:
    """``text`` with ``[profile PROFILE] credential_process = COMMAND`` set."""
    if "\n" in command or "\r" in command:
        raise ValueError("the command must be one line")
    wanted = section_name(profile)
    line_out = f"credential_process = {command}"
    lines = text.splitlines(keepends=True)
    start = None
    for i, line in enumerate(lines):
        match = _SECTION_RE.match(line)
        if match and " ".join(match.group(1).split()) == wanted:
            start = i
            break
    if start is None:
        prefix = text if not text or text.endswith("\n") else text + "\n"
        gap = "\n" if prefix.strip() else ""
        return f"{prefix}{gap}[{wanted}]\n{line_out}\n"
    end = next((j for j in range(start + 1, len(lines)) if _SECTION_RE.match(lines[j])), len(lines))
    for j in range(start + 1, end):
        if _KEY_RE.match(lines[j]):
            newline = "\n" if lines[j].endswith("\n") else ""
            lines[j] = line_out + newline
            return "".join(lines)
    header = lines[start]
    if not header.endswith("\n"):
        lines[start] = header + "\n"
    lines.insert(start + 1, line_out + "\n")
    return "".join(lines)
