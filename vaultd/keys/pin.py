"""Where the token's user PIN comes from (``pkcs11.pin_source``, docs/threat-model.md T9).

Allowed sources: ``keyring`` (the OS keyring), ``file:PATH`` (a 0600/0400 file owned by the
user, which is how systemd credentials arrive) and ``prompt`` (the terminal). Never argv, the
environment or the config file. PINs are returned as ``bytearray`` so callers can zero them.
"""

from __future__ import annotations

import getpass
import os
import stat
from typing import Final

from vaultd.errors import ConfigError, UnsafePermissions

KEYRING_SERVICE: Final = "vaultd"
MAX_PIN_FILE_BYTES: Final = 4096
_ALLOWED: Final = "'keyring', 'file:/absolute/path' or 'prompt'"


def keyring_username(token_label: str) -> str:
    """The keyring user name under which the PIN of ``token_label`` is stored."""
    return f"pkcs11:{token_label}"


def read_pin(source: str, *, token_label: str) -> bytearray:
    """Read the user PIN of ``token_label`` from ``source``; zero the result after use.

    Raises :class:`ConfigError` for an unknown, empty or unavailable source and
    :class:`UnsafePermissions` for a PIN file that is not a private regular file.
    """
    if source == "keyring":
        return _from_keyring(token_label)
    if source.startswith("file:"):
        return _from_file(source.removeprefix("file:"))
    if source == "prompt":
        return _from_prompt(token_label)
    raise ConfigError(f"pkcs11.pin_source {source!r} is not supported; use {_ALLOWED}")


def store_pin_in_keyring(token_label: str, pin: str | bytearray) -> None:
    """Store the PIN of ``token_label`` in the OS keyring (for ``pin_source = "keyring"``)."""
    # Lazy: keyring loads its backends (D-Bus) on import; only pin_source = keyring needs it.
    import keyring
    import keyring.errors

    text = pin if isinstance(pin, str) else pin.decode("utf-8")
    try:
        keyring.set_password(KEYRING_SERVICE, keyring_username(token_label), text)
    except keyring.errors.KeyringError as exc:
        raise ConfigError(
            f"could not store the PIN in the OS keyring ({type(exc).__name__}); unlock or "
            "install a keyring backend, or use pin_source = 'file:PATH'"
        ) from exc


def _from_keyring(token_label: str) -> bytearray:
    # Lazy: keyring loads its backends (D-Bus) on import; only pin_source = keyring needs it.
    import keyring
    import keyring.errors

    user = keyring_username(token_label)
    try:
        pin = keyring.get_password(KEYRING_SERVICE, user)
    except keyring.errors.KeyringError as exc:
        raise ConfigError(
            f"the OS keyring is not usable ({type(exc).__name__}); unlock or install a keyring "
            "backend, or set pin_source = 'file:PATH' and run `vaultd pin file PATH`"
        ) from exc
    if not pin:
        raise ConfigError(
            f"no PIN for token {token_label!r} in the OS keyring (service {KEYRING_SERVICE!r}, "
            f"user {user!r}); store it with `vaultd pin store`"
        )
    return bytearray(pin.encode("utf-8"))


def _from_file(path: str) -> bytearray:
    path = os.path.expanduser(path)
    if not os.path.isabs(path):
        raise ConfigError(f"PIN file {path!r} must be an absolute path ({_ALLOWED})")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafePermissions(
                f"PIN file {path} is a symlink; point pin_source at the real file",
                path=path,
            ) from exc
        raise ConfigError(f"cannot open PIN file {path}: {exc.strerror}") from exc
    try:
        _check_pin_file(fd, path)
        buf = bytearray(MAX_PIN_FILE_BYTES + 1)
        size = os.readv(fd, [buf])
    finally:
        os.close(fd)
    if size and buf[size - 1] == ord("\n"):
        size -= 1
    pin = bytearray(memoryview(buf)[:size]) if size <= MAX_PIN_FILE_BYTES else bytearray()
    buf[:] = bytes(len(buf))
    if size > MAX_PIN_FILE_BYTES:
        raise ConfigError(f"PIN file {path} is larger than {MAX_PIN_FILE_BYTES} bytes")
    if not pin:
        raise ConfigError(f"PIN file {path} is empty; write the token's user PIN into it")
    return pin


def _check_pin_file(fd: int, path: str) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePermissions(f"PIN file {path} is not a regular file", path=path)
    if st.st_uid != os.getuid():
        raise UnsafePermissions(
            f"PIN file {path} is owned by uid {st.st_uid}, not by you; run `chown "
            f"{os.getuid()} {path}`",
            path=path,
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode not in (0o600, 0o400):
        raise UnsafePermissions(
            f"PIN file {path} has mode {mode:04o}; run `chmod 600 {path}`", path=path
        )


def _from_prompt(token_label: str) -> bytearray:
    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError as exc:
        raise ConfigError(
            "pin_source = 'prompt' needs a terminal and none is attached; unlock from a "
            "terminal or the TUI, or use 'keyring' or 'file:PATH'"
        ) from exc
    os.close(tty)
    try:
        pin = getpass.getpass(f"User PIN for token {token_label!r}: ")
    except EOFError as exc:
        raise ConfigError("no PIN was entered at the prompt") from exc
    if not pin:
        raise ConfigError("no PIN was entered at the prompt")
    return bytearray(pin.encode("utf-8"))
