"""Reading and editing ``~/.aws/config`` and ``~/.aws/credentials`` text.

Pure text in, text out: an edit touches only the lines it names; every other line (comments,
spacing, other keys and sections) is left exactly as it was, so running an edit twice changes
nothing the second time.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable, Collection

_SECTION_RE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(?:[#;].*)?$")
_KEY_LINE_RE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=")
MOVED_MARK = "# moved to vaultd: "
"""Prefix of a line :func:`comment_out_keys` disabled (the setting now lives in vaultd)."""


def section_name(profile: str) -> str:
    """The config-file section of ``profile`` (``default`` has no ``profile`` prefix)."""
    return "default" if profile == "default" else f"profile {profile}"


def parse_sections(text: str, source: str) -> dict[str, dict[str, str]]:
    """Every section of an AWS INI file with its keys (lower-cased) and values.

    Raises a one-line ``ValueError`` naming the line when the text is not INI.
    """
    parser = configparser.RawConfigParser(default_section="\0", strict=False)
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise ValueError(str(exc).splitlines()[0].rstrip(".") + where) from None
    return {name: dict(parser.items(name)) for name in parser.sections()}


def config_profiles(sections: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The profiles of ``~/.aws/config`` sections (``[profile X]`` and ``[default]``)."""
    profiles: dict[str, dict[str, str]] = {}
    for name, values in sections.items():
        words = name.split()
        if words == ["default"]:
            profiles["default"] = values
        elif len(words) == 2 and words[0] == "profile":
            profiles[words[1]] = values
    return profiles


def _find_section(lines: list[str], wanted: str) -> tuple[int, int] | None:
    """The header index and the end (exclusive) of section ``wanted`` in ``lines``."""
    for i, line in enumerate(lines):
        match = _SECTION_RE.match(line)
        if match and " ".join(match.group(1).split()) == wanted:
            end = next(
                (j for j in range(i + 1, len(lines)) if _SECTION_RE.match(lines[j])), len(lines)
            )
            return i, end
    return None


def _key_of(line: str) -> str | None:
    match = _KEY_LINE_RE.match(line)
    return match.group(1).lower() if match else None


def _edit_keys(
    text: str, section: str, keys: Collection[str], edit: Callable[[str], str | None]
) -> str:
    """``text`` with each line of ``section`` that sets one of ``keys`` replaced by
    ``edit(line)`` (``None`` drops it); continuation lines of a dropped key go with it."""
    lines = text.splitlines(keepends=True)
    found = _find_section(lines, section)
    if found is None:
        return text
    start, end = found
    out = lines[: start + 1]
    dropping = False
    for line in lines[start + 1 : end]:
        key = _key_of(line)
        if key is None and dropping and line[:1] in (" ", "\t") and line.strip():
            continue  # an indented continuation of the dropped value
        dropping = False
        if key is not None and key in keys:
            new = edit(line)
            if new is None:
                dropping = True
                continue
            line = new
        out.append(line)
    return "".join(out + lines[end:])


def comment_out_keys(text: str, section: str, keys: Collection[str]) -> str:
    """``text`` with ``keys`` of ``section`` turned into ``# moved to vaultd:`` comments."""
    return _edit_keys(text, section, keys, lambda line: MOVED_MARK + line.lstrip())


def remove_keys(text: str, section: str, keys: Collection[str]) -> str:
    """``text`` without the lines setting ``keys`` in ``section``; a section left with no key
    and no comment loses its header too."""
    edited = _edit_keys(text, section, keys, lambda line: None)
    lines = edited.splitlines(keepends=True)
    found = _find_section(lines, section)
    if found is None or any(line.strip() for line in lines[found[0] + 1 : found[1]]):
        return edited
    start, end = found
    return "".join(lines[:start] + lines[end:])


def upsert_credential_process(text: str, profile: str, command: str) -> str:
    """``text`` with ``[profile PROFILE] credential_process = COMMAND`` set."""
    if "\n" in command or "\r" in command:
        raise ValueError("the command must be one line")
    wanted = section_name(profile)
    line_out = f"credential_process = {command}"
    lines = text.splitlines(keepends=True)
    found = _find_section(lines, wanted)
    if found is None:
        prefix = text if not text or text.endswith("\n") else text + "\n"
        gap = "\n" if prefix.strip() else ""
        return f"{prefix}{gap}[{wanted}]\n{line_out}\n"
    start, end = found
    for j in range(start + 1, end):
        if _key_of(lines[j]) == "credential_process":
            newline = "\n" if lines[j].endswith("\n") else ""
            lines[j] = line_out + newline
            return "".join(lines)
    header = lines[start]
    if not header.endswith("\n"):
        lines[start] = header + "\n"
    lines.insert(start + 1, line_out + "\n")
    return "".join(lines)
