"""Append-only, hash-chained audit log with a MAC computed inside the token.

Each line is one JSON object with sorted keys: ``seq``, ``time``, ``event``, the event's fields
and ``prev`` (SHA-256 hex of the previous line, or 64 zeros). The last line of each batch
written together, and of each file, also carries ``mac`` (HMAC-SHA256, computed by the token
over the line without its ``mac``, as lowercase hex; on a token without HMAC, an ECDSA P-256
signature by a token key, written ``ecdsa-p256:`` + hex, see :func:`tag_text`): through the
``prev`` links it authenticates every line before it, so a batch costs one token MAC however
many records it holds. A line that no later MAC of its file covers is refused by :func:`verify`
and by the writer. A record is written and fsynced before anything is released; a failed write
raises :class:`~vaultd.errors.AuditError` and cuts the file back, so the caller refuses the
request (fail closed). A record whose caller was refused can stay only when a later step of its
batch failed (a rotation between two of its records): the log then holds more than was
released, never less. Never pass a secret in the fields: key ids are masked by the
caller. Only regular files are opened (never following a symlink, never blocking on a FIFO), and
a line must be the canonical encoding of its object, so no edit hides behind an equivalent
spelling.

**Rotation.** When the next record would take ``audit.log`` past ``max_bytes``, the file is
renamed ``audit.log.<seq of its first record>`` and the record starts a new ``audit.log``;
its ``prev`` is the hash of the rotated file's last line, so the chain runs unbroken across
files.  :func:`verify` walks the rotated files in sequence order, then ``audit.log``.
Rotated files are never pruned here: deleting one breaks verification from seq 1.

**Two writers.**  The daemon and a CLI command (`vaultd add`, `remove`, ...) may append to the
same chain: each batch is committed under an exclusive ``flock`` on ``audit.log.lock``, and a
writer re-reads the tail whenever the log's inode or size is not what its own last batch left.

**Head anchor.** Cutting whole records off the end leaves a valid chain, so after each batch
of records (see :class:`AuditLog`) the writer replaces ``audit.log.head`` (atomically,
durably) with the last seq and line hash, MACed by the token, right after the batch's callers
were told their records are durable (still under the lock, so a single request does not wait
for two more fsyncs).  :func:`verify` requires the log to reach that record, and the writer
refuses to go on from a log that falls short of it (a deleted or cut log is not silently
restarted at seq 1; move ``audit.log*`` aside to start a new chain).  Limits: the head lags the
log by at most the last batch (a crash, or a full disk, between the append and the head
update), so someone able to write the data dir and to kill the daemon in that moment could cut
that batch; anyone able to write the data dir can already put back an older head together with
a log cut to match it, and only a counter inside the token would close either.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import stat
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from vaultd.core.ports import Clock
from vaultd.errors import AuditError, AuditRecordTampered, AuditTampered
from vaultd.store.atomic import ensure_private_dir, fsync_dir

log = logging.getLogger(__name__)
GENESIS = "0" * 64
MAX_LINE = 64 * 1024
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
HEAD_SUFFIX = ".head"
LOCK_SUFFIX = ".lock"
MAX_BATCH = 256
"""Records committed together at most (one write, one fsync, one head update)."""
IDLE_SECONDS = 1.0
"""The writer thread ends after this long without records (the next one starts it again)."""
_HEAD_KIND = "vaultd-audit-head"
_REQUIRED = (("seq", int), ("time", str), ("event", str), ("prev", str))

HMAC_LEN = 32
_SCHEME_RE = re.compile(rb"[a-z][a-z0-9-]{0,31}")

Mac = Callable[[bytes], bytes]
MacVerify = Callable[[bytes, bytes], None]
"""``mac_verify(data, tag)`` raises ``AuditTampered`` on a bad tag (the token's HMAC verify, or
a signature check)."""


def tag_text(tag: bytes) -> str:
    """A tag as the log writes it: lowercase hex for an HMAC, ``scheme:`` + hex for a tag that
    starts with its scheme's name (``ecdsa-p256:`` signatures), so the log says which."""
    scheme, sep, raw = tag.partition(b":")
    if sep and len(tag) != HMAC_LEN and _SCHEME_RE.fullmatch(scheme):
        return f"{scheme.decode('ascii')}:{raw.hex()}"
    return tag.hex()


def tag_bytes(text: str) -> bytes:
    """The inverse of :func:`tag_text`; ``ValueError`` unless ``text`` is its exact output."""
    scheme, sep, hex_part = text.rpartition(":")
    raw = bytes.fromhex(hex_part)
    tag = scheme.encode("ascii") + b":" + raw if sep else raw
    if not raw or tag_text(tag) != text:
        raise ValueError("not a canonical audit tag")
    return tag


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
"""One encoder for every record (``json.dumps`` with options builds a new one per call)."""


def _canonical(obj: Mapping[str, object]) -> bytes:
    return _CANONICAL.encode(obj).encode()


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@dataclass(frozen=True, slots=True)
class Tail:
    """Where the chain stands: the last sequence number and line hash."""

    seq: int
    digest: str


def head_path(path: Path) -> Path:
    """The head anchor beside the log ``path``."""
    return path.with_name(path.name + HEAD_SUFFIX)


def rotated_files(path: Path) -> list[Path]:
    """Rotated files of the log ``path`` (``<name>.<first seq>``), oldest first."""
    prefix = path.name + "."
    found: list[tuple[int, Path]] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(path.parent):
            suffix = entry.name[len(prefix) :]
            if entry.name.startswith(prefix) and suffix.isascii() and suffix.isdigit():
                found.append((int(suffix), path.parent / entry.name))
    return [p for _, p in sorted(found)]


def chain_files(path: Path) -> list[Path]:
    """Every file of the chain in order: the rotated ones, then ``path`` if it exists."""
    files = rotated_files(path)
    if os.path.lexists(path):
        files.append(path)
    return files


def archive_chain(path: Path, into: Path) -> None:
    """Move the chain of ``path`` (rotated files, the log, then its head anchor) into the
    private directory ``into`` under the same names, so ``verify(into / path.name, ...)`` still
    checks it with the key that wrote it; run again after a crash, it moves what is left."""
    ensure_private_dir(into)
    for file in [*chain_files(path), head_path(path)]:
        if os.path.lexists(file):
            os.rename(file, into / file.name)
    fsync_dir(into)
    fsync_dir(path.parent)


def _open_regular(path: Path, flags: int, mode: int = 0o600) -> int:
    """Open without following symlinks or blocking on a FIFO; refuse anything but a file."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        fd = _open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    with os.fdopen(fd, "rb") as fh:
        yield from enumerate(fh, start=1)


def parse_line(line: bytes) -> dict[str, object]:
    """Parse one audit line (without its newline); anything malformed raises ``AuditTampered``.

    The line must be the canonical encoding of its object (sorted keys, no spaces, ASCII), so
    no edit can hide behind an equivalent spelling.
    """
    if len(line) > MAX_LINE:
        raise AuditTampered("record longer than 64 KiB")
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        raise AuditTampered("record is not JSON") from None
    if not isinstance(obj, dict):
        raise AuditTampered("record is not a JSON object")
    for key, kind in _REQUIRED:
        value = obj.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise AuditTampered(f"record field {key} is missing or of the wrong type")
    if not isinstance(obj.get("mac", ""), str):
        raise AuditTampered("record field mac is of the wrong type")
    try:
        canonical = _canonical(obj)
    except (ValueError, RecursionError):
        raise AuditTampered("record does not re-encode") from None
    if canonical != line:
        raise AuditTampered("record is not in canonical form (it was edited)")
    return obj


def _last_line(path: Path) -> bytes | None:
    last = None
    for _, raw in _lines(path):
        last = raw
    if last is None or not last.strip():
        return None
    if not last.endswith(b"\n"):
        raise AuditTampered(f"{path}: the last line is torn: run `vaultd audit verify`")
    return last[:-1]


def last_record(path: Path) -> Tail:
    """The chain tail of the log ``path`` and its rotated files (seq 0 and genesis if empty)."""
    return _last_parsed(path)[0]


def _last_parsed(path: Path) -> tuple[Tail, dict[str, object] | None]:
    """The chain tail and its record parsed (``None`` when the chain is empty)."""
    for file in reversed(chain_files(path)):
        line = _last_line(file)
        if line is None:
            continue
        try:
            record = parse_line(line)
        except AuditTampered as exc:
            raise AuditTampered(
                f"{file}: the last record is bad ({exc}): run `vaultd audit verify`"
            ) from None
        seq = record["seq"]
        assert isinstance(seq, int)  # noqa: S101 - parse_line checked it
        return Tail(seq, _digest(line)), record
    return Tail(0, GENESIS), None


def _append(path: Path, line: bytes) -> None:
    """Append ``line`` and fsync it; on any failure cut the file back to its old length."""
    fd = _open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.EIO, f"short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    if size == 0:
        fsync_dir(path.parent)  # the file may be new: make its name durable


def _replace(path: Path, data: bytes) -> None:
    """Replace ``path`` durably through ``<name>.tmp`` (the one writer thread makes the name
    safe; the store's temp-file sweep of the data dir does not match it)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, "short write")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def _writer_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock that serialises every process appending to the log ``path``."""
    fd = _open_regular(path.with_name(path.name + LOCK_SUFFIX), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the lock


def _stamp(path: Path) -> tuple[int, int] | None:
    """The log's inode and size: what another writer's append or rotation changes."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size


def _head_body(tail: Tail) -> bytes:
    """What the head anchor's MAC covers."""
    return _canonical({"anchor": _HEAD_KIND, "digest": tail.digest, "seq": tail.seq})


class _Entry:
    """One queued record and how to tell its caller the outcome."""

    __slots__ = ("error", "event", "fields", "future", "ok", "written")

    def __init__(
        self,
        event: str,
        fields: Mapping[str, object],
        *,
        written: threading.Event | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.event = event
        self.fields = fields
        self.written = written  # set for a thread caller
        self.future = future  # resolved on its loop for a coroutine caller
        self.ok = False  # set only once the record is durable
        self.error: BaseException | None = None

    def outcome(self) -> BaseException | None:
        """None if the record was written, else the error for its caller (fail closed)."""
        if self.ok:
            return None
        return self.error or AuditError("the audit writer stopped; nothing was released")


_Result = tuple["asyncio.Future[None]", BaseException | None]
_Chunk = tuple[bool, list[bytes]]
"""Lines to append to one file, and whether the log is rotated first."""


def _settle(results: list[_Result]) -> None:
    """Resolve the futures of one batch (on their event loop); a cancelled one is skipped."""
    for future, error in results:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class _Watchdog:
    """Fails the records awaited on one event loop that outlive their deadline (one timer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: deque[tuple[float, float, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, future: asyncio.Future[None], timeout: float) -> None:
        """Fail ``future`` with ``AuditError`` unless it is done within ``timeout`` seconds."""
        entry = (self._loop.time() + timeout, timeout, future)
        if self._waiting and entry[0] < self._waiting[-1][0]:  # a shorter timeout: keep order
            self._waiting = deque(sorted([*self._waiting, entry], key=lambda e: e[0]))
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        else:
            self._waiting.append(entry)
        self._arm()

    def _arm(self) -> None:
        while self._waiting and self._waiting[0][2].done():
            self._waiting.popleft()
        if self._timer is None and self._waiting:
            self._timer = self._loop.call_at(self._waiting[0][0], self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._waiting and self._waiting[0][0] <= now:
            _, timeout, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(
                    AuditError(
                        f"the audit log did not take the record within {timeout:g} s; nothing "
                        "was released: check the disk holding the audit log"
                    )
                )
        self._arm()


class AuditLog:
    """Writes audit records with group commit: one writer thread, one write and fsync a batch.

    Records queued by concurrent callers (threads through :meth:`record`, coroutines through
    :meth:`record_async`) are chained, MACed and appended together, then the head anchor is
    replaced once.  Each caller returns only after its batch is durable, and gets
    :class:`~vaultd.errors.AuditError` if that batch failed (fail closed).  The writer thread
    starts on the first record and ends after :data:`IDLE_SECONDS` without work.
    """

    def __init__(
        self,
        path: Path,
        mac: Mac,
        clock: Clock,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        mac_verify: MacVerify | None = None,
    ) -> None:
        """``mac_verify`` checks tags on load; without it a tag must equal a fresh ``mac``,
        which only a deterministic MAC (HMAC) passes, never a signature."""
        self._path = path
        self._mac = mac
        self._mac_verify = mac_verify
        self._clock = clock
        self._max_bytes = max_bytes
        self._tail: Tail | None = None  # touched by the writer thread only
        self._stamp: tuple[int, int] | None = None  # the log as our last batch left it
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Entry] = []
        self._writer: threading.Thread | None = None
        self._watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def path(self) -> Path:
        return self._path

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        """Append one record and wait until it is fsynced with the head; blocking, thread-safe.

        Raises ``AuditError`` (nothing may be released) if its batch could not be written.
        """
        written = threading.Event()
        entry = _Entry(event, fields, written=written)
        self._enqueue(entry)
        written.wait()
        error = entry.outcome()
        if error is not None:
            raise error.with_traceback(None)

    async def record_async(
        self, event: str, fields: Mapping[str, object], *, timeout: float
    ) -> None:
        """:meth:`record` for the event loop: queue the record and await its batch's fsync.

        Raises ``AuditError`` if the batch is not durable within ``timeout`` seconds (fail
        closed: nothing may be released).  No executor thread is held while waiting, and one
        timer per event loop watches every waiting record.  Neither a timeout nor cancelling
        the wait withdraws the record (it may still be written).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._enqueue(_Entry(event, fields, future=future))
        watchdog = self._watchdogs.get(loop)
        if watchdog is None:
            watchdog = self._watchdogs[loop] = _Watchdog(loop)
        watchdog.watch(future, timeout)
        await future

    def _enqueue(self, entry: _Entry) -> None:
        with self._cond:
            self._queue.append(entry)
            if self._writer is not None:
                self._cond.notify()
                return
            writer = threading.Thread(target=self._run, name="vaultd-audit", daemon=True)
            try:
                writer.start()
            except RuntimeError as exc:  # no thread to be had: refuse, never wait forever
                self._queue.remove(entry)
                raise AuditError(
                    f"cannot start the audit writer ({exc}); nothing was released: retry"
                ) from None
            self._writer = writer

    def _run(self) -> None:
        """The writer thread: take whatever is queued, commit it as one batch, repeat."""
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait(IDLE_SECONDS)
                if not self._queue:
                    self._writer = None
                    return
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
            self._commit(batch)

    @staticmethod
    def _notify(batch: list[_Entry]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        for entry in batch:
            if entry.future is not None:
                by_loop.setdefault(entry.future.get_loop(), []).append(
                    (entry.future, entry.outcome())
                )
            elif entry.written is not None:
                entry.written.set()
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, results)

    def _commit(self, batch: list[_Entry]) -> None:
        """Chain, MAC and write ``batch``, tell its callers, and move the head anchor.

        Each caller hears once: its record is durable, or its ``error``.  Event-loop callers
        (the daemon) hear before the head is replaced (still under the lock; until then it lags
        the log, as after a crash); thread callers (a CLI command that exits next) after.  A
        head that cannot be written is logged and moved with the next batch, never a refusal
        of records already durable.
        """
        told = False
        try:
            with _writer_lock(self._path):
                tail = self._tail if self._stamp == _stamp(self._path) else None
                tail = tail or self._load_tail()
                chunks, tail = self._chain(batch, tail)
                for rotate, lines in chunks:
                    if rotate:
                        self._rotate()
                    _append(self._path, b"".join(lines))
                self._stamp = _stamp(self._path)
                self._tail = tail
                for entry in batch:
                    entry.ok = entry.error is None
                self._notify([entry for entry in batch if entry.future is not None])
                told = True
                if chunks:
                    self._move_head(tail)
        except OSError as exc:
            self._fail(
                batch,
                f"cannot write the audit log {self._path} ({exc.strerror or exc}); "
                "nothing was released: free space or fix permissions, then retry",
            )
        except Exception as exc:  # AuditTampered, a token error: every caller fails closed
            self._fail(batch, exc)
        self._notify([entry for entry in batch if not told or entry.future is None])

    def _move_head(self, tail: Tail) -> None:
        """Replace the head anchor with ``tail``; a failure is logged (the head lags)."""
        try:
            self._write_head(tail)
        except Exception as exc:  # ENOSPC, a token gone: the records are durable all the same
            log.warning(
                "could not move the audit head anchor to seq %d (%s): it lags the log until "
                "the next batch",
                tail.seq,
                exc,
            )

    def _fail(self, batch: list[_Entry], error: str | Exception) -> None:
        """Fail every entry of ``batch`` not failed already (a message: one error each)."""
        self._tail = None  # re-read the tail next time
        for entry in batch:
            if entry.error is None:
                entry.error = AuditError(error) if isinstance(error, str) else error

    def _chain(self, batch: list[_Entry], tail: Tail) -> tuple[list[_Chunk], Tail]:
        """Encode ``batch`` after ``tail``: the lines to append to each file, and the new tail.

        Each chunk says whether the log is rotated before it.  The last line of the batch, and
        every line that could be the last of its file before a rotation (one ending within
        :data:`MAX_LINE` of ``max_bytes``), carries the token MAC.  A record that cannot be
        encoded (too long, not JSON) fails alone: its ``error`` is set and it is left out.
        """
        try:
            size = os.lstat(self._path).st_size
        except FileNotFoundError:
            size = 0
        last = max((i for i, e in enumerate(batch) if e.error is None), default=-1)
        chunks: list[_Chunk] = []
        for i, entry in enumerate(batch):
            try:
                line = self._encode(tail, entry.event, entry.fields, maced=i == last)
                if i != last and size + len(line) >= self._max_bytes - MAX_LINE - 1:
                    line = self._encode(tail, entry.event, entry.fields, maced=True)
            except (AuditError, TypeError, ValueError) as exc:
                entry.error = exc  # this record alone (too long, not JSON)
                if i == last:  # the batch must still end with a MAC: re-encode the one before
                    return self._chain([e for e in batch if e.error is None], tail)
                continue
            rotate = bool(size) and size + len(line) > self._max_bytes
            if rotate:
                size = 0
            if rotate or not chunks:
                chunks.append((rotate, []))
            chunks[-1][1].append(line)
            size += len(line)
            tail = Tail(tail.seq + 1, _digest(line[:-1]))
        return chunks, tail

    def _encode(
        self, tail: Tail, event: str, fields: Mapping[str, object], *, maced: bool
    ) -> bytes:
        body: dict[str, object] = dict(fields)
        body.update(
            seq=tail.seq + 1,
            time=self._clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            event=event,
            prev=tail.digest,
        )
        body.pop("mac", None)
        if maced:
            body["mac"] = tag_text(self._mac(_canonical(body)))
        line = _canonical(body)
        if len(line) > MAX_LINE:
            raise AuditError(f"audit record {event!r} is longer than 64 KiB; nothing was released")
        return line + b"\n"

    def _rotate(self) -> None:
        for _, raw in _lines(self._path):
            first = parse_line(raw.rstrip(b"\n"))["seq"]
            break
        else:
            return
        target = self._path.with_name(f"{self._path.name}.{first}")
        if os.path.lexists(target):
            raise AuditTampered(f"cannot rotate the audit log: {target} already exists")
        os.rename(self._path, target)
        fsync_dir(self._path.parent)

    def _load_tail(self) -> Tail:
        """The tail on disk; refused when the head anchor shows records missing at the end."""
        anchor = _read_head(self._path)
        _cut_tail(self._path, anchor[0] if anchor else None)
        tail, record = _last_parsed(self._path)
        if record is not None and (anchor is None or anchor[0].seq < tail.seq):
            self._check_last_mac(tail, record)
        if anchor is None:
            return tail
        head, tag = anchor
        if not self._tag_ok(_head_body(head), tag):
            raise AuditTampered(
                f"{head_path(self._path)}: the head anchor's MAC does not match: "
                "run `vaultd audit verify`"
            )
        if head.seq > tail.seq or (head.seq == tail.seq and head.digest != tail.digest):
            raise AuditTampered(
                f"{self._path} ends at seq {tail.seq} but its head anchor records seq "
                f"{head.seq}: records are missing; run `vaultd audit verify`, then move "
                f"{self._path.name}* aside to start a new chain"
            )
        return tail

    def _check_last_mac(self, at: Tail, record: dict[str, object]) -> None:
        """Refuse to chain on from a last record (``record``, parsed; its ``mac`` is removed)
        that carries no valid MAC: it was appended by hand."""
        text = record.pop("mac", "")
        try:
            tag = tag_bytes(text) if isinstance(text, str) else b""
        except ValueError:
            tag = b""
        if not tag or not self._tag_ok(_canonical(record), tag):
            raise AuditTampered(
                f"{self._path}: the last record (seq {at.seq}) carries no valid MAC, so records "
                "were appended without the token: run `vaultd audit verify`"
            )

    def _tag_ok(self, data: bytes, tag: bytes) -> bool:
        if self._mac_verify is None:
            return hmac.compare_digest(self._mac(data), tag)
        try:
            self._mac_verify(data, tag)
        except AuditTampered:
            return False
        return True

    def _write_head(self, tail: Tail) -> None:
        body: dict[str, object] = {"anchor": _HEAD_KIND, "digest": tail.digest, "seq": tail.seq}
        body["mac"] = tag_text(self._mac(_head_body(tail)))
        _replace(head_path(self._path), _canonical(body) + b"\n")


def _bad(file: Path, line: int | None, seq: int | None, reason: str) -> AuditRecordTampered:
    where = f"{file}" if line is None else f"{file}, line {line}"
    if seq is not None:
        where += f", seq {seq}"
    return AuditRecordTampered(
        f"{where}: {reason}", path=str(file), line=line, seq=seq, reason=reason
    )


def _read_head(path: Path) -> tuple[Tail, bytes] | None:
    """The head anchor of the log ``path`` and its tag (not yet checked), or ``None``."""
    file = head_path(path)
    lines = list(_lines(file))
    if not lines:
        if os.path.lexists(file):
            raise _bad(file, None, None, "the head anchor is empty")
        return None
    try:
        obj = json.loads(lines[0][1])
        seq, digest, tag = obj.pop("seq"), obj.pop("digest"), tag_bytes(obj.pop("mac"))
        if len(lines) != 1 or obj != {"anchor": _HEAD_KIND} or isinstance(seq, bool):
            raise ValueError
        if not isinstance(seq, int) or not isinstance(digest, str):
            raise ValueError
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        raise _bad(file, None, None, "the head anchor does not parse") from None
    return Tail(seq, digest), tag


def _check_head(path: Path, head: Tail, tag: bytes, mac_verify: MacVerify) -> None:
    try:
        mac_verify(_head_body(head), tag)
    except AuditTampered:
        raise _bad(head_path(path), None, None, "the head anchor's MAC does not match") from None


def _check_mac(file: Path, number: int, obj: dict[str, object], mac_verify: MacVerify) -> None:
    """Check the MAC of the parsed line ``obj`` (``mac`` is removed from ``obj``)."""
    seq = obj["seq"]
    assert isinstance(seq, int)  # noqa: S101 - parse_line checked it
    try:
        tag = tag_bytes(str(obj.pop("mac")))
    except ValueError:
        raise _bad(file, number, seq, "the MAC is not lowercase hex") from None
    try:
        mac_verify(_canonical(obj), tag)
    except AuditTampered:
        raise _bad(file, number, seq, "the MAC does not match") from None


# Long: one pass over the chain; each record's link, MAC and seq checks need the previous one.
def verify(path: Path, mac_verify: MacVerify) -> int:
    """Check every record's link and MAC across all files; return the count.

    A line without a MAC must be followed in its file by one with a MAC (which covers it
    through the ``prev`` links).

    Raises :class:`AuditRecordTampered` naming the first bad record (file, line, seq, reason),
    or the head anchor when records at the end are missing.
    """
    anchor = _read_head(path)  # before the log: a writer appends, then moves the head
    head = anchor[0] if anchor else None
    prev, expected, at_head = GENESIS, 1, None
    last: tuple[Path, int, int] | None = None  # where the previous record is
    current = path.resolve()
    for file in chain_files(path):
        rotated = file.resolve() != current
        number, uncovered, torn = 0, None, False
        for number, raw in _lines(file):
            if not raw.endswith(b"\n"):
                if rotated:
                    raise _bad(file, number, None, "the line is torn (no newline): truncated log")
                torn = True  # a write a crash cut short; see _unacknowledged below
                break
            line = raw[:-1]
            try:
                obj = parse_line(line)
            except AuditTampered as exc:
                raise _bad(file, number, None, f"{exc} (seq {expected} expected)") from None
            seq = obj["seq"]
            assert isinstance(seq, int)  # noqa: S101 - parse_line checked it
            if seq != expected:
                raise _bad(
                    file,
                    number,
                    seq,
                    f"sequence {seq} where {expected} was expected "
                    "(a record was deleted, inserted or reordered)",
                )
            if rotated and number == 1 and file.name != f"{path.name}.{seq}":
                raise _bad(file, number, seq, "a rotated file's name does not match its first seq")
            if "mac" in obj:
                _check_mac(file, number, obj, mac_verify)
                uncovered = None
            elif uncovered is None:
                uncovered = (number, seq)
            if obj["prev"] != prev:
                if uncovered is None and last is not None:  # this line is authentic
                    raise _bad(
                        *last,
                        "the record was changed: its hash no longer matches the link in "
                        "the next record",
                    )
                raise _bad(
                    file,
                    number,
                    seq,
                    "chain broken: the previous line's hash differs "
                    f"(record {seq - 1} or this one was changed)",
                )
            prev, expected, last = _digest(line), expected + 1, (file, number, seq)
            if head is not None and seq == head.seq:
                at_head = prev
        if rotated and number == 0:
            raise _bad(file, None, None, "a rotated file is empty")
        if torn:
            expected, uncovered = _unacknowledged(file, number, expected, uncovered, head)
        if uncovered is not None:
            raise _bad(
                file,
                *uncovered,
                "no MAC covers this record and the ones after it up to the end of the file "
                "(they were appended without the token)",
            )
    count = expected - 1
    if anchor is None:
        if count:
            raise _bad(head_path(path), None, None, "the head anchor is missing")
        return count
    head, tag = anchor
    _check_head(path, head, tag, mac_verify)
    if head.seq > count:
        raise _bad(
            head_path(path),
            None,
            head.seq,
            f"the log ends at seq {count} but the head anchor records seq {head.seq}: "
            "records were cut off the end",
        )
    elif at_head != head.digest:
        raise _bad(head_path(path), None, head.seq, "the head anchor's hash does not match")
    return count


def _unacknowledged(
    file: Path, number: int, expected: int, uncovered: tuple[int, int] | None, head: Tail | None
) -> tuple[int, None]:
    """The live log ends in a torn line (line ``number``): a crash cut a batch short.  That
    batch (the torn line and its lines before it that no MAC covers yet) lies beyond the head
    anchor, so no caller was ever told it was written (records are acknowledged only once their
    whole batch, MAC included, is fsynced): it is not counted, and the writer cuts it before it
    appends (``_cut_tail``).
    A torn line at or before the head is damage.  Returns the next expected seq."""
    first = uncovered[1] if uncovered is not None else expected
    if head is not None and first <= head.seq:
        raise _bad(file, number, expected, "the line is torn (no newline): truncated log")
    log.warning(
        "%s: records from seq %d on were cut short by a crash before they were acknowledged; "
        "they are not part of the chain",
        file,
        first,
    )
    return first, None


def _cut_tail(path: Path, head: Tail | None) -> None:
    """Cut what a crash left after the last MAC-covered record of the live log (a torn line,
    or lines of a batch no MAC covers yet), when it lies beyond the head anchor: it was never
    acknowledged, and appending after it would tear the chain."""
    end = covered_end = last_seq = 0
    first_open: int | None = None
    for _, raw in _lines(path):
        end += len(raw)
        if not raw.endswith(b"\n"):
            break
        try:
            record = parse_line(raw[:-1])
        except AuditTampered:
            return  # not a crash's leftovers: leave it for `vaultd audit verify` to name
        seq = record["seq"]
        last_seq = seq if isinstance(seq, int) else last_seq
        if "mac" in record:
            covered_end, first_open = end, None
        elif first_open is None:
            first_open = last_seq
    if end == covered_end or raw.endswith(b"\n"):
        return  # nothing torn: lines no MAC covers are for `vaultd audit verify` to name
    first = first_open if first_open is not None else last_seq + 1
    if head is not None and first <= head.seq:
        return  # acknowledged records are damaged: `vaultd audit verify` names them
    log.warning("%s: cutting %d bytes a crash left unacknowledged", path, end - covered_end)
    fd = _open_regular(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, covered_end)
        os.fsync(fd)
    finally:
        os.close(fd)


def tail(path: Path, n: int) -> list[bytes]:
    """The last ``n`` complete lines of the chain (rotated files included), oldest first."""
    return _tail_of(chain_files(path), n)


def _tail_of(files: list[Path], n: int) -> list[bytes]:
    out: list[bytes] = []
    for file in reversed(files):
        if len(out) >= n:
            break
        kept = deque(
            (raw[:-1] for _, raw in _lines(file) if raw.endswith(b"\n")), maxlen=n - len(out)
        )
        out[:0] = kept
    return out


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _position(files: list[Path], fd: int) -> int | None:
    return next((i for i, f in enumerate(files) if _same_file(f, fd)), None)


def _successor(path: Path, fd: int | None) -> int | None:
    """Open the chain file after the one ``fd`` holds, or return ``None`` if there is none yet.

    ``fd`` None means nothing is open yet: the successor is the live log once it exists.
    """
    while True:
        files = chain_files(path)
        pos = None if fd is None else _position(files, fd)
        if pos is None:
            nxt = (
                path if os.path.lexists(path) and (fd is None or not _same_file(path, fd)) else None
            )
        else:
            nxt = files[pos + 1] if pos + 1 < len(files) else None
        if nxt is None:
            return None
        try:
            new = _open_regular(nxt, os.O_RDONLY)
        except FileNotFoundError:
            continue  # rotated while we looked: look again
        if fd is None or pos is None:
            return new
        files = chain_files(path)  # confirm no rotation slipped in between ours and ``new``
        pos = _position(files, fd)
        if pos is not None and pos + 1 < len(files) and _same_file(files[pos + 1], new):
            return new
        os.close(new)


def follow(
    path: Path,
    *,
    backlog: int = 0,
    poll: float = 0.25,
    stop: threading.Event | None = None,
) -> Iterator[bytes]:
    """Yield the last ``backlog`` lines, then each line appended, across rotations.

    Polls every ``poll`` seconds at the end of the file; returns once ``stop`` is set.
    """
    fd: int | None = None
    with contextlib.suppress(FileNotFoundError):
        fd = _open_regular(path, os.O_RDONLY)
    try:
        if fd is None:
            buf, lines = b"", tail(path, backlog)
        else:
            *lines, buf = _read_all(fd).split(b"\n")
            older = [f for f in rotated_files(path) if not _same_file(f, fd)]
            lines = _tail_of(older, backlog - len(lines)) + lines
        yield from lines[len(lines) - backlog :] if backlog > 0 else ()
        while True:
            chunk = os.read(fd, 65536) if fd is not None else b""
            if chunk:
                *lines, buf = (buf + chunk).split(b"\n")
                yield from lines
                continue
            nxt = _successor(path, fd)
            if nxt is not None:
                if fd is not None:  # rotated: nothing more comes, take what is left
                    yield from (buf + _read_all(fd)).split(b"\n")[:-1]
                    os.close(fd)
                fd, buf = nxt, b""
            elif stop is not None:
                if stop.wait(poll):
                    return
            else:
                time.sleep(poll)
    finally:
        if fd is not None:
            os.close(fd)


def _read_all(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 65536):
        parts.append(chunk)
    return b"".join(parts)
