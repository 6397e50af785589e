"""The ``credential_process`` client: asks vaultd for a profile's session credentials.

It runs on every AWS CLI call, so it imports only ``_socket``, ``posix`` and ``sys`` up front
(``posix`` and ``sys`` are built in and already loaded; ``os`` would cost ~0.8 ms) and nothing
from vaultd; ``python3 -I -S path/to/credproc.py PROFILE`` works.  Usage::

    vaultd credential-process [--socket PATH] [--allow-root-daemon] [--] PROFILE

The socket is found as the daemon finds it (see :func:`default_socket_path`): ``--socket``,
else ``$VAULTD_SOCKET``, else the top-level ``socket`` of the config file, else
``$XDG_RUNTIME_DIR/vaultd/vaultd.sock``, else ``/tmp/vaultd-<uid>/vaultd.sock``.  The config file
is read only when it exists, refused like the daemon refuses it (a symlink, another owner,
group/other write), and scanned by a strict line reader; ``tomllib`` (~12 ms to import) is
loaded only for a form that reader does not take.

Before a byte is sent the daemon is verified (docs/threat-model.md T29): the socket's directory
(one ``lstat``) must be a real directory owned by this user and not group/other-writable, and
the connected peer (one ``getsockopt(SO_PEERCRED)``) must run as this user, or as root with
``--allow-root-daemon``.  Otherwise ``UNSAFE_SOCKET``, naming the path and the owner.

One ``credentials`` frame goes out (see :mod:`vaultd.ipc.protocol`).  The daemon's fast-path
reply ``{"v":1,"ok":true,"output":<credential JSON>}`` is checked whole and its output written
to stdout in one write loop; nothing else ever reaches stdout.  An ``approval_pending`` event
(only then is ``json`` imported) makes the client print the request on ``/dev/tty`` and read a
6-digit code there in a background thread, sent as an ``approve`` request on a second
connection; the final reply is awaited meanwhile and ends the prompt.  ``touch_needed`` prints
the request and "touch your security key"; ``also_waiting`` (once the request is shown) prints
the process that joined it and gets the same session (docs/threat-model.md T31); the progress
events (``next_code_wait``, ``calling_sts``) print their line.  Without a terminal it sends its
``DISPLAY``/``WAYLAND_DISPLAY`` (if any; the frame is unchanged without one), where the daemon
may ask in a dialog (``approval.prompt``), and just waits (a dialog, the TUI or
``vaultd approve`` answers; the daemon's notifier says the same states).

Exit status: 0 on success; 1 on any error, with one ``vaultd: CODE: message`` line on stderr
and an empty stdout; 2 on a usage error.
"""

import _socket
import posix
import sys

PREFIX = b'{"v":1,"ok":true,"output":'
MAX_FRAME = 64 * 1024
TIMEOUT = 65.0
USAGE = "usage: vaultd credential-process [--socket PATH] [--allow-root-daemon] [--] PROFILE"
HELP = """
Print PROFILE's session credentials as credential_process JSON, asking vaultd for them.
Use it in ~/.aws/config as `credential_process = vaultd credential-process PROFILE`.

  PROFILE              a vaultd profile: 1 to 64 of A-Z a-z 0-9 . _ -
  --socket PATH        the daemon's socket; default $VAULTD_SOCKET, else `socket` in the
                       vaultd config file ($VAULTD_CONFIG or ~/.config/vaultd/config.toml),
                       else $XDG_RUNTIME_DIR/vaultd/vaultd.sock
  --allow-root-daemon  also trust a daemon run by root
"""
CONFIG_LIMIT = 1 << 20
NOT_RUNNING = (
    "vaultd is not running; start it with `vaultd serve` "
    "(or `systemctl --user start vaultd.socket`)"
)
_ID_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_PROFILE_CHARS = _ID_CHARS | frozenset(b".")
_DISPLAY_CHARS = _PROFILE_CHARS | frozenset(b":/")
_RETRY_CODES = frozenset({"CODE_MALFORMED", "CODE_REUSED", "MFA_REJECTED"})
_PROGRESS_EVENTS = frozenset({"next_code_wait", "calling_sts"})


class Failure(Exception):
    """An error to report as ``vaultd: CODE: message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _clean(text: object, limit: int = 300) -> str:
    """``text`` (at most ``limit`` characters) as one line safe for a terminal: every control,
    C1 and bidi character shown as an escape, as :func:`vaultd.core.termtext.terminal_safe`
    does (a copy: this module imports nothing from vaultd; a test keeps them equal)."""
    unsafe = (*range(0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029)
    unsafe += (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
    table = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in unsafe}
    return str(text)[:limit].translate(table)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[posix.write(fd, data) :]


def _getenv(name: bytes) -> str:
    """An environment variable ("" if unset), decoded as :func:`os.fsdecode` would.

    ``posix.environ`` is the environment at start-up; when ``os`` is loaded (credproc imported
    into a larger program) its ``environb`` is read instead, as the program may have changed it.
    """
    os_module = sys.modules.get("os")
    environ = os_module.environb if os_module is not None else posix.environ
    raw = environ.get(name, b"")
    return raw.decode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def default_socket_path() -> str:
    """The socket the daemon listens on, found as ``vaultd.settings`` finds it.

    ``$VAULTD_SOCKET``, else the config file's top-level ``socket``, else
    ``$XDG_RUNTIME_DIR/vaultd/vaultd.sock``, else ``/tmp/vaultd-<uid>/vaultd.sock``.
    A config file that is unsafe or unreadable, or names a relative socket, raises
    :class:`Failure`.
    """
    explicit = _getenv(b"VAULTD_SOCKET")
    if explicit:
        return explicit
    path = config_path()
    text = _read_config(path)
    configured = None if text is None else config_socket(text, path)
    if configured is not None:
        if not configured.startswith("/"):
            raise Failure(
                "CONFIG_INVALID",
                f"socket = {configured!r} in {path} must be an absolute path (as `vaultd serve` "
                "requires)",
            )
        return configured
    runtime = _getenv(b"XDG_RUNTIME_DIR")
    if runtime:
        return runtime + "/vaultd/vaultd.sock"
    return f"/tmp/vaultd-{posix.getuid()}/vaultd.sock"  # noqa: S108 - checked before use


def config_path() -> str:
    """``$VAULTD_CONFIG``, else ``$XDG_CONFIG_HOME/vaultd/config.toml`` (``~/.config``), as
    :func:`vaultd.settings.default_config_path`."""
    explicit = _getenv(b"VAULTD_CONFIG")
    if explicit:
        return explicit
    base = _getenv(b"XDG_CONFIG_HOME")
    if not base:
        home = _getenv(b"HOME")
        if not home:
            import pwd  # no $HOME (rare): Path.home() asks the password database too

            home = pwd.getpwuid(posix.getuid()).pw_dir
        base = home + "/.config"
    return base + "/vaultd/config.toml"


def _read_config(path: str) -> str | None:
    """The text of the config file, or None when there is none.

    Refused as :func:`vaultd.system.hardening.check_owned_not_writable` refuses it for the
    daemon: a symlink, another owner, or group/other write.  ``O_NOFOLLOW`` and ``fstat``
    check the file that is read; ``O_NONBLOCK`` keeps a FIFO from hanging the open.
    """
    flags = posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_NONBLOCK | posix.O_CLOEXEC
    try:
        fd = posix.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP:
            raise Failure(
                "UNSAFE_PERMISSIONS", f"{path} is a symlink: replace it with a regular file"
            ) from None
        raise Failure("CONFIG_INVALID", f"cannot read config {path}: {exc.strerror}") from None
    try:
        st = posix.fstat(fd)
        uid = posix.getuid()
        if st.st_mode & 0o170000 != 0o100000:  # stat.S_ISREG
            raise Failure("CONFIG_INVALID", f"config {path} is not a regular file")
        if st.st_uid != uid:
            raise Failure(
                "UNSAFE_PERMISSIONS",
                f"{path} is owned by uid {st.st_uid}, not you: `chown {uid} {path}`",
            )
        if st.st_mode & 0o022:
            raise Failure(
                "UNSAFE_PERMISSIONS", f"{path} is writable by group or others: `chmod go-w {path}`"
            )
        data = b""
        while chunk := posix.read(fd, CONFIG_LIMIT + 1 - len(data)):
            data += chunk
            if len(data) > CONFIG_LIMIT:
                raise Failure("CONFIG_INVALID", f"config {path} is over {CONFIG_LIMIT} bytes")
    except OSError as exc:
        raise Failure("CONFIG_INVALID", f"cannot read config {path}: {exc.strerror}") from None
    finally:
        posix.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Failure("CONFIG_INVALID", f"config {path} is not UTF-8 text") from None


def config_socket(text: str, path: str) -> str | None:
    """The top-level ``socket`` setting of config ``text`` (None when it sets none).

    Lines before the first table header are read as ``key = value``.  The ``socket`` value is
    taken when it is a one-line string without escapes (``"..."`` or ``'...'``, then at most a
    comment).  Anything else the reader cannot follow (a multi-line value, an escape, a second
    ``socket``, a line that is not ``key = value``) goes to ``tomllib``, which decides as the
    daemon's own loader does.
    """
    found: str | None = None
    for line in text.split("\n"):
        stripped = line.strip(" \t\r")
        if not stripped or stripped[0] == "#":
            continue
        if stripped[0] == "[":
            break
        key, equals, value = stripped.partition("=")
        value = value.lstrip(" \t")
        if not equals or value[:3] in ('"""', "'''") or value[:1] in ("[", "{"):
            return _toml_socket(text, path)
        if key.rstrip(" \t") in ("socket", '"socket"', "'socket'"):
            if found is not None:
                return _toml_socket(text, path)
            found = _one_line_string(value)
            if found is None:
                return _toml_socket(text, path)
    return found


def _one_line_string(value: str) -> str | None:
    """The text of a TOML string without escapes that ends the line, else None."""
    quote = value[:1]
    end = value.find(quote, 1) if quote in ('"', "'") else -1
    if end < 0:
        return None
    inner, rest = value[1:end], value[end + 1 :].lstrip(" \t")
    if rest[:1] not in ("", "#") or "\\" in inner or any(c < " " or c == "\x7f" for c in inner):
        return None
    return inner


def _toml_socket(text: str, path: str) -> str | None:
    """The top-level ``socket`` as ``tomllib`` reads it (off the fast path)."""
    import tomllib

    try:
        value = tomllib.loads(text).get("socket")
    except tomllib.TOMLDecodeError as exc:
        raise Failure("CONFIG_INVALID", f"cannot read config {path}: {exc}") from None
    if value is not None and not isinstance(value, str):
        raise Failure("CONFIG_INVALID", f"socket in {path} must be a string (a path)")
    return value


def daemon_uids(allow_root: bool = False) -> tuple[int, ...]:
    """The uids a daemon may run as: this user's, and root's when ``allow_root``."""
    uid = posix.geteuid()
    return (uid, 0) if allow_root and uid != 0 else (uid,)


def _unsafe(path: str, what: str, uids: tuple[int, ...]) -> Failure:
    you = " or ".join(f"uid {u}" for u in uids)
    return Failure(
        "UNSAFE_SOCKET",
        f"refusing {path}: {what}, not by you ({you}); nothing was sent: another user may "
        "have planted it; remove it or use a private directory (XDG_RUNTIME_DIR or --socket)",
    )


def check_directory(path: str, uids: tuple[int, ...]) -> None:
    """Refuse a socket whose directory is a symlink, not ours, or group/other-writable."""
    directory = path.rpartition("/")[0] or ("/" if path.startswith("/") else ".")
    try:
        st = posix.lstat(directory)
    except OSError:
        raise Failure("DAEMON_NOT_RUNNING", NOT_RUNNING) from None
    if st.st_mode & 0o170000 != 0o040000:  # a symlink or not a directory (stat.S_ISDIR)
        raise _unsafe(path, f"{directory} is not a directory (a symlink?) owned", uids)
    if st.st_uid not in uids:
        raise _unsafe(path, f"its directory {directory} is owned by uid {st.st_uid}", uids)
    if st.st_mode & 0o022:
        mode = oct(st.st_mode & 0o7777)[2:]
        raise _unsafe(path, f"its directory {directory} (mode {mode}) is writable by others", uids)


def peer_uid(sock: _socket.socket) -> tuple[int, int]:
    """``(pid, uid)`` of the process at the other end of a connected Unix socket (kernel's word)."""
    if sys.platform == "darwin":  # LOCAL_PEERCRED (struct xucred) and LOCAL_PEERPID, level 0
        uid = int.from_bytes(sock.getsockopt(0, 0x001, 76)[4:8], sys.byteorder)
        return int.from_bytes(sock.getsockopt(0, 0x002, 4), sys.byteorder), uid
    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # struct ucred
    return int.from_bytes(raw[0:4], sys.byteorder), int.from_bytes(raw[4:8], sys.byteorder)


def check_peer(sock: _socket.socket, path: str, uids: tuple[int, ...]) -> None:
    """Refuse a connected daemon that does not run as one of ``uids``."""
    try:
        pid, uid = peer_uid(sock)
    except OSError:
        pid, uid = 0, -1
    if uid not in uids:
        raise _unsafe(path, f"the process serving it (pid {pid}) is run by uid {uid}", uids)


def _connect(path: str, uids: tuple[int, ...]) -> _socket.socket:
    check_directory(path, uids)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        try:
            sock.connect(path)
        except BlockingIOError:  # a full listen backlog: wait for the daemon to accept
            _connect_when_accepted(sock, path)
        check_peer(sock, path, uids)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        sock.close()
        raise Failure("DAEMON_NOT_RUNNING", NOT_RUNNING) from None
    except OSError as exc:
        sock.close()
        reason = exc.strerror or type(exc).__name__
        raise Failure("PROTOCOL_ERROR", f"cannot connect to {path}: {reason}") from None
    except Failure:
        sock.close()
        raise
    return sock


def _connect_when_accepted(sock: _socket.socket, path: str) -> None:
    """Retry a connect refused with EAGAIN (backlog full) until ``TIMEOUT``."""
    import time

    deadline = time.monotonic() + TIMEOUT
    while True:
        time.sleep(0.05)
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise


def _send(sock: _socket.socket, data: bytes) -> None:
    """Send a request; if the daemon already closed (it refused us, e.g. BUSY), carry on
    so that the frame it queued before closing is still read."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _recv_exact(sock: _socket.socket, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        try:
            chunk = sock.recv(size - len(buf))
        except TimeoutError:
            raise Failure("PROTOCOL_ERROR", "no reply from vaultd in time") from None
        except OSError:
            chunk = b""
        if not chunk:
            raise Failure("PROTOCOL_ERROR", "vaultd closed the connection before replying")
        buf += chunk
    return buf


def _read_frame(sock: _socket.socket) -> bytes:
    length = int.from_bytes(_recv_exact(sock, 4), "big")
    if length > MAX_FRAME:
        raise Failure("FRAME_TOO_LARGE", f"vaultd announced a {length}-byte reply; refused")
    return _recv_exact(sock, length)


def fast_output(body: bytes) -> bytes | None:
    """The credential JSON inside a fast-path reply, or None if ``body`` is another frame."""
    if not body.startswith(PREFIX):
        return None
    inner = body[len(PREFIX) : -1]
    if body.endswith(b"}") and inner.endswith(b"}"):
        for head in (b'{"Version": 1', b'{"Version":1'):
            if inner.startswith(head) and inner[len(head) : len(head) + 1] in (b",", b"}", b" "):
                return inner
    raise Failure("PROTOCOL_ERROR", "vaultd sent a malformed credentials reply")


def _parse(body: bytes) -> dict[str, object]:
    import json  # only off the fast path

    try:
        obj = json.loads(body.decode("utf-8"))
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise Failure("PROTOCOL_ERROR", "vaultd sent a frame that is not a JSON object")
    return obj


def _raise_error(msg: dict[str, object]) -> None:
    error = msg.get("error")
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        if isinstance(code, str) and code and all(c in _ID_CHARS for c in code.encode()):
            raise Failure(code, _clean(message))
    raise Failure("PROTOCOL_ERROR", "vaultd sent a malformed error reply")


def _approve(path: str, uids: tuple[int, ...], approval_id: str, code: str) -> None:
    """Send ``approve`` on a second connection; raise :class:`Failure` on an error reply."""
    import json

    body = json.dumps({"v": 1, "op": "approve", "id": approval_id, "code": code})
    sock = _connect(path, uids)
    try:
        _send(sock, _frame(body.encode()))
        while "event" in (msg := _parse(_read_frame(sock))):
            pass
    finally:
        sock.close()
    if msg.get("ok") is not True:
        _raise_error(msg)


class _Terminal:
    """The requester's terminal while an approval is pending.

    The prompt thread and the main thread both write here; a lock keeps their lines whole and
    in order, and nothing is written after the line that ends the request.
    """

    def __init__(self, fd: int) -> None:
        import threading

        self.fd = fd
        self.code_sent = False
        self.touch_asked = False
        self._lock = threading.Lock()
        self._at_prompt = False
        self._ended = False

    def _put(self, text: str, *, prompt: bool = False) -> bool:
        if self._ended:
            return False
        lead = "\n" if self._at_prompt else ""  # the prompt line is still open: end it first
        _write_all(self.fd, (lead + text + ("" if prompt else "\n")).encode())
        self._at_prompt = prompt
        return True

    def say(self, text: str) -> bool:
        """Write lines; False once the request has ended (the caller stops)."""
        with self._lock:
            return self._put(text)

    def end(self, text: str) -> None:
        """Write the request's last line."""
        with self._lock:
            self._put(text)
            self._ended = True

    def ask(self, prompt: str) -> str | None:
        """Show ``prompt`` and read one line (None when the request ended or the read failed)."""
        with self._lock:
            if not self._put(prompt, prompt=True):
                return None
        try:
            answer = posix.read(self.fd, 64).decode("ascii", "replace").strip()
        except OSError:
            return None
        with self._lock:
            self._at_prompt = False  # the typed newline ended the prompt line
        return answer


def _request_lines(event: dict[str, object], approval_id: str) -> str:
    """The pending request as a heading and labelled lines, each value terminal-safe."""
    requester = event.get("requester")
    who = requester if isinstance(requester, dict) else {}

    def with_pid(executable: object, pid: object) -> str:
        return f"{executable or '?'} (pid {pid})" if pid else str(executable or "")

    rows = (
        ("profile", event.get("profile")),
        ("MFA device", event.get("mfa_serial")),
        ("program", with_pid(who.get("parent_executable"), who.get("parent_pid"))),
        ("command line", who.get("parent_command")),
        ("client", with_pid(who.get("executable"), who.get("pid"))),
        ("directory", who.get("cwd")),
        ("expires", event.get("expires")),
    )
    lines = [f"vaultd: a program asks for profile {_clean(event.get('profile'))}"]
    lines[0] += f" (approval {approval_id})"
    lines += [f"  {label:<14}{_clean(value)}" for label, value in rows if value not in (None, "")]
    return "\n".join(lines)


def _prompt(
    terminal: _Terminal, path: str, uids: tuple[int, ...], event: dict[str, object]
) -> None:
    """Show the pending approval on the terminal and send the code typed there."""
    approval_id = event.get("id")
    if not isinstance(approval_id, str) or not all(c in _ID_CHARS for c in approval_id.encode()):
        return
    if not terminal.say(_request_lines(event, approval_id)):
        return
    for _attempt in range(3):
        code = terminal.ask("vaultd: MFA code (or approve elsewhere): ")
        if code is None:
            return
        if len(code) != 6 or not all("0" <= c <= "9" for c in code):
            terminal.say("vaultd: a code is 6 digits")
            continue
        terminal.code_sent = True
        try:
            _approve(path, uids, approval_id, code)
        except Failure as failure:
            terminal.say(f"vaultd: {failure.code}: {_clean(failure.message)}")
            if failure.code in _RETRY_CODES:
                continue
            return
        terminal.say("vaultd: code accepted; waiting for the credentials (calling STS)")
        return


def _open_tty() -> int:
    try:
        return posix.open("/dev/tty", posix.O_RDWR | posix.O_NOCTTY | posix.O_CLOEXEC)
    except OSError:
        return -1


def _display_fields() -> bytes:
    """The ``display`` fields of a client with no terminal: its ``DISPLAY`` (``aqua`` on
    macOS) and ``WAYLAND_DISPLAY``, where the daemon may draw a prompt dialog; b"" for none."""
    fields = b""
    for field, value in (
        (b"display", "aqua" if sys.platform == "darwin" else _getenv(b"DISPLAY")),
        (b"wayland_display", _getenv(b"WAYLAND_DISPLAY")),
    ):
        raw = value.encode("utf-8", "replace")
        if 1 <= len(raw) <= 255 and all(c in _DISPLAY_CHARS for c in raw):
            fields += b',"' + field + b'":"' + raw + b'"'
    return fields


def fetch(
    path: str,
    profile: str,
    action: str = "credential_process",
    *,
    allow_root: bool = False,
    duration: int | None = None,
) -> bytes:
    """Ask the daemon for ``profile`` and return the checked credential JSON.

    ``action`` is ``credential_process`` or ``exec`` (`vaultd exec`): the op sent, from which
    the daemon derives what its policy judges; ``allow_root`` also trusts a daemon run by root
    (see :func:`daemon_uids`); ``duration`` (exec only) asks for a session of that length.
    """
    uids = daemon_uids(allow_root)
    sock = _connect(path, uids)
    tty = _open_tty()
    terminal: _Terminal | None = None
    try:
        interactive = b"true" if tty >= 0 else (b"false" + _display_fields())
        op = b"credentials" if action == "credential_process" else action.encode()
        body = b'{"v":1,"op":"' + op + b'","profile":"' + profile.encode()
        extra = b"" if duration is None else b',"duration":' + str(int(duration)).encode()
        _send(sock, _frame(body + b'","interactive":' + interactive + extra + b"}"))
        while True:
            reply = _read_frame(sock)
            output = fast_output(reply)
            if output is not None:
                if terminal is not None:
                    asked_here = terminal.code_sent or terminal.touch_asked
                    elsewhere = "" if asked_here else " (approved elsewhere: no code needed)"
                    terminal.end("vaultd: credentials issued" + elsewhere)
                return output
            msg = _parse(reply)
            if "event" not in msg:
                _end_with_error(terminal, msg)
            elif tty >= 0:
                terminal = _show_event(terminal, tty, path, uids, msg)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise Failure("PROTOCOL_ERROR", f"talking to vaultd failed: {reason}") from None
    finally:
        sock.close()
        if tty >= 0 and terminal is None:
            posix.close(tty)


def _show_event(
    terminal: _Terminal | None, tty: int, path: str, uids: tuple[int, ...], msg: dict[str, object]
) -> _Terminal | None:
    """Show a pushed event on the terminal: the code prompt (``approval_pending``), the touch
    prompt (``touch_needed``), a process that joined the request (``also_waiting``), or a
    progress line; returns the terminal once it is in use."""
    event = msg.get("event")
    if event == "approval_pending" and terminal is None:
        import threading

        terminal = _Terminal(tty)
        args = (terminal, path, uids, msg)
        threading.Thread(target=_prompt, args=args, daemon=True).start()
    elif event == "touch_needed":
        touch = f"vaultd: touch your security key for profile {_clean(msg.get('profile'))}"
        if terminal is None:
            terminal = _Terminal(tty)
            approval_id = msg.get("id")
            if isinstance(approval_id, str) and all(c in _ID_CHARS for c in approval_id.encode()):
                terminal.say(_request_lines(msg, approval_id))
        terminal.touch_asked = True
        terminal.say(touch)
    elif event == "token_touch":  # before any approval: the terminal may be unused yet
        terminal = terminal or _Terminal(tty)
        terminal.say(f"vaultd: {_clean(msg.get('message'))}")
    elif event == "also_waiting" and terminal is not None:
        terminal.say(f"vaultd: also waiting: {_joiner(msg)}")
    elif event in _PROGRESS_EVENTS and terminal is not None and not terminal.code_sent:
        terminal.say(f"vaultd: {_clean(msg.get('message'))}")
    return terminal


def _joiner(msg: dict[str, object]) -> str:
    """The process that joined the shown request, terminal-safe: pid, executable, program."""
    requester = msg.get("requester")
    who = requester if isinstance(requester, dict) else {}
    line = f"pid {who.get('pid')} ({who.get('executable') or '?'})"
    program = who.get("parent_command")
    return _clean(line + (f" from {program}" if program else ""))


def _end_with_error(terminal: _Terminal | None, msg: dict[str, object]) -> None:
    """Raise the error reply ``msg``, saying on the terminal (if it prompted) that it failed."""
    try:
        _raise_error(msg)
    except Failure as failure:
        if terminal is not None:
            terminal.end(f"vaultd: the request failed: {failure.code}")
        raise
    raise Failure("PROTOCOL_ERROR", "vaultd sent an unexpected reply")


def _parse_args(argv: list[str]) -> tuple[str, bool, str] | None:
    """``(socket path or "", allow root daemon, profile)``, or None on a usage error."""
    args = list(argv)
    path, allow_root = None, False
    while args and args[0].startswith("--") and args[0] != "--":
        flag = args.pop(0)
        if flag.startswith("--socket=") and path is None:
            path = flag[len("--socket=") :]
        elif flag == "--socket" and path is None and args:
            path = args.pop(0)
        elif flag == "--allow-root-daemon":
            allow_root = True
        else:
            return None
    if args and args[0] == "--":
        args.pop(0)
    elif args and args[0].startswith("-"):
        return None
    if len(args) != 1 or path == "":
        return None
    raw = args[0].encode("utf-8", "replace")
    if not 1 <= len(raw) <= 64 or not all(c in _PROFILE_CHARS for c in raw):
        return None
    return path or "", allow_root, args[0]


def main(argv: list[str]) -> int:
    """Run the client; see the module docstring for the arguments and exit status."""
    if argv[:1] in (["--help"], ["-h"]):
        sys.stdout.write(USAGE + "\n" + HELP)
        return 0
    parsed = _parse_args(argv)
    if parsed is None:
        sys.stderr.write(USAGE + "\n  PROFILE: 1 to 64 of A-Z a-z 0-9 . _ -\n")
        return 2
    path, allow_root, profile = parsed
    try:
        output = fetch(path or default_socket_path(), profile, allow_root=allow_root)
        _write_all(1, output)
    except Failure as failure:
        sys.stderr.write(f"vaultd: {failure.code}: {_clean(failure.message)}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"vaultd: OUTPUT_FAILED: writing to stdout failed: {exc.strerror}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
