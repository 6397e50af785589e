"""Append-only, hash-chained audit log with a MAC computed inside the token.

Each line is one JSON object with sorted keys: ``seq``, ``time``, ``event``, the event's
fields, ``prev`` (SHA-256 hex of the previous line, or 64 zeros) and ``mac`` (HMAC-SHA256,
computed by the token over the line without its ``mac``).  An edit, a deletion, a reorder
or a truncation breaks the chain or a MAC; :func:`verify` names the first bad record.
A record is written and fsynced before anything is released; a failed write raises
:class:`~vaultd.errors.AuditError` so the caller refuses the request (fail closed).
Never pass a secret in the fields: key ids are masked by the caller.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from vaultd.core.ports import Clock
from vaultd.errors import AuditError, AuditTampered

GENESIS = "0" * 64
MAX_LINE = 64 * 1024

Mac = Callable[[bytes], bytes]


def _canonical(obj: Mapping[str, object]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True, slots=True)
class Tail:
    """Where the chain stands: the last sequence number and line hash."""

    seq: int
    digest: str


class AuditLog:
    """Writes audit records; one writer per process (a lock), O_APPEND, fsync each record."""

    def __init__(self, path: Path, mac: Mac, clock: Clock) -> None:
        self._path = path
        self._mac = mac
        self._clock = clock
        self._lock = threading.Lock()
        self._tail: Tail | None = None

    @property
    def path(self) -> Path:
        return self._path

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        """Append and fsync one record; raise ``AuditError`` if it cannot be written."""
        with self._lock:
            try:
                tail = self._tail or last_record(self._path)
                body: dict[str, object] = dict(fields)
                body.update(
                    seq=tail.seq + 1,
                    time=self._clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    event=event,
                    prev=tail.digest,
                )
                body["mac"] = self._mac(_canonical(body)).hex()
                line = _canonical(body) + b"\n"
                fd = os.open(
                    self._path,
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                )
                try:
                    written = os.write(fd, line)
                    if written != len(line):
                        raise OSError(f"short write ({written} of {len(line)} bytes)")
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self._tail = None  # re-read the tail next time: the file may hold a torn line
                raise AuditError(
                    f"cannot write the audit log {self._path} ({exc.strerror or exc}); "
                    "nothing was released: free space or fix permissions, then retry"
                ) from None
            self._tail = Tail(tail.seq + 1, hashlib.sha256(line.rstrip(b"\n")).hexdigest())


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        with open(path, "rb") as fh:
            yield from enumerate(fh, start=1)
    except FileNotFoundError:
        return


def last_record(path: Path) -> Tail:
    """The chain tail of ``path`` (``seq`` 0 and the genesis hash for an empty log)."""
    tail = Tail(0, GENESIS)
    for _, raw in _lines(path):
        line = raw.rstrip(b"\n")
        if not line:
            continue
        try:
            seq = json.loads(line)["seq"]
        except (ValueError, KeyError, TypeError):
            raise AuditTampered(
                f"{path}: a record does not parse: run `vaultd audit verify`"
            ) from None
        if not isinstance(seq, int):
            raise AuditTampered(f"{path}: a record has no sequence number")
        tail = Tail(seq, hashlib.sha256(line).hexdigest())
    return tail


def parse_line(line: bytes) -> dict[str, object]:
    """Parse one audit line; anything malformed raises ``AuditTampered``."""
    if len(line) > MAX_LINE:
        raise AuditTampered("record longer than 64 KiB")
    try:
        obj = json.loads(line)
    except ValueError:
        raise AuditTampered("record is not JSON") from None
    if not isinstance(obj, dict):
        raise AuditTampered("record is not a JSON object")
    for key, kind in (("seq", int), ("time", str), ("event", str), ("prev", str), ("mac", str)):
        if not isinstance(obj.get(key), kind):
            raise AuditTampered(f"record field {key} is missing or of the wrong type")
    return obj


def verify(path: Path, mac_verify: Callable[[bytes, bytes], None]) -> int:
    """Check every record's chain link and MAC; return the count or raise naming the record.

    ``mac_verify(data, tag)`` raises on a bad tag (the token's HMAC verify).
    """
    prev, expected_seq, count = GENESIS, 1, 0
    for number, raw in _lines(path):
        if not raw.endswith(b"\n"):
            raise AuditTampered(f"{path}: line {number} is torn (no newline): truncated log")
        line = raw.rstrip(b"\n")
        where = f"{path}: record at line {number}"
        try:
            obj = parse_line(line)
        except AuditTampered as exc:
            raise AuditTampered(f"{where}: {exc}") from None
        if obj["seq"] != expected_seq:
            raise AuditTampered(
                f"{where}: sequence {obj['seq']} where {expected_seq} was expected "
                "(a record was deleted, inserted or reordered)"
            )
        if obj["prev"] != prev:
            raise AuditTampered(f"{where} (seq {obj['seq']}): chain broken: previous hash differs")
        tag_hex = str(obj.pop("mac"))
        try:
            tag = bytes.fromhex(tag_hex)
        except ValueError:
            raise AuditTampered(f"{where} (seq {obj['seq']}): MAC is not hex") from None
        try:
            mac_verify(_canonical(obj), tag)
        except AuditTampered:
            raise AuditTampered(f"{where} (seq {obj['seq']}): MAC does not match") from None
        prev, expected_seq, count = hashlib.sha256(line).hexdigest(), expected_seq + 1, count + 1
    return count
