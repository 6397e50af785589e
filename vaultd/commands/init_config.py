"""`vaultd init` with no config yet: find the PKCS#11 modules and tokens on this machine, pick
a PIN source that works here, and write a commented config.

The choices come from flags (scripts) or, on a terminal, from numbered questions.  Nothing
secret is asked here: the PIN is stored afterwards with `vaultd pin store` or `vaultd pin file`.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vaultd.errors import ConfigError

KNOWN_MODULES: tuple[tuple[str, str], ...] = (
    ("SoftHSM2 (a software token: tests and the demo only)", "libsofthsm2.so"),
    ("YubiKey PIV (Yubico ykcs11)", "libykcs11.so*"),
    ("OpenSC (PIV cards, Nitrokey, SmartCard-HSM)", "opensc-pkcs11.so"),
    ("YubiHSM 2", "yubihsm_pkcs11.so"),
    ("TPM 2.0 (tpm2-pkcs11)", "libtpm2_pkcs11.so*"),
)
LIB_DIRS: tuple[str, ...] = (
    "/usr/lib",
    "/usr/lib/softhsm",
    "/usr/lib/pkcs11",
    "/usr/lib/*-linux-gnu",
    "/usr/lib/*-linux-gnu/softhsm",
    "/usr/lib/*-linux-gnu/pkcs11",
    "/usr/lib64",
    "/usr/lib64/pkcs11",
    "/usr/local/lib",
    "/usr/local/lib/softhsm",
    "/opt/homebrew/lib",
    "/opt/homebrew/lib/softhsm",
)


@dataclass(frozen=True, slots=True)
class FoundModule:
    """A PKCS#11 module present on this machine."""

    name: str
    path: str


@dataclass(frozen=True, slots=True)
class InitChoices:
    """What the written config says."""

    module: str
    token_label: str
    pin_source: str


def find_modules(lib_dirs: Sequence[str] = LIB_DIRS) -> list[FoundModule]:
    """Known PKCS#11 modules installed here, each path once (symlinks resolved)."""
    found: dict[str, FoundModule] = {}
    for name, pattern in KNOWN_MODULES:
        for directory in lib_dirs:
            for path in sorted(glob.glob(os.path.join(directory, pattern))):
                real = os.path.realpath(path)
                if os.path.isfile(real) and real not in found:
                    found[real] = FoundModule(name, path)
    return list(found.values())


def token_labels(module: str) -> list[str]:
    """Labels of the initialised tokens the module shows now (none if it fails to load)."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import pkcs11

    try:
        tokens = list(pkcs11.lib(module).get_tokens())
    except (pkcs11.PKCS11Error, OSError, RuntimeError):
        return []
    initialised = pkcs11.TokenFlag.TOKEN_INITIALIZED
    return sorted(t.label for t in tokens if t.label and t.flags & initialised)


def keyring_usable() -> bool:
    """Whether an OS keyring backend other than keyring's "fail" backend is available."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import keyring
    from keyring.backends import fail

    return not isinstance(keyring.get_keyring(), fail.Keyring)


def default_pin_file(config_path: Path) -> str:
    """Where `vaultd pin file` puts the PIN when the keyring is not usable."""
    return f"file:{config_path.parent / 'pin'}"


def render_config(choices: InitChoices) -> str:
    """The commented config file for ``choices``."""
    return f"""# vaultd configuration, written by `vaultd init`.
# Every setting: `vaultd config-reference`.

[pkcs11]
# The PKCS#11 module that holds the vault key.
module = "{choices.module}"
# The token (by label) and where its user PIN comes from: "keyring" (the OS keyring),
# "file:/absolute/path" (a 0600 file, as systemd credentials arrive) or "prompt" (start
# sealed; `vaultd unlock` asks).  Never the PIN itself.
token_label = "{choices.token_label}"
pin_source = "{choices.pin_source}"

# One section per AWS profile, for example:
# [profiles.work]
# credentials = "work"                                # a key pair stored with `vaultd add work`
# mfa_serial = "arn:aws:iam::123456789012:mfa/alice"  # every session is made with MFA
# approval = "code"                                   # or "touch" with a sealed seed
#
# [profiles.work-admin]
# source_profile = "work"
# role_arn = "arn:aws:iam::123456789012:role/Admin"
"""


def next_commands(choices: InitChoices, config_path: Path) -> list[str]:
    """The three commands to run after the config is written."""
    if choices.pin_source == "keyring":
        pin = "vaultd pin store          # the token PIN into the OS keyring (asked, hidden)"
    elif choices.pin_source.startswith("file:"):
        pin = (
            f"vaultd pin file {choices.pin_source.removeprefix('file:')}"
            "   # the token PIN into a 0600 file (asked, hidden)"
        )
    else:
        pin = "vaultd serve &            # starts sealed; then `vaultd unlock` asks for the PIN"
    return [
        pin,
        "vaultd init               # creates the vault key in the token and the store",
        "vaultd add work           # seals an access key pair (or: vaultd import aws-config)",
    ]


Ask = Callable[[str], str]


def _pick(ask: Ask, title: str, options: Sequence[str]) -> int:
    """The index of the option a person chose by number (the first one by default)."""
    print(title, file=sys.stderr)
    for i, option in enumerate(options, 1):
        print(f"  {i}) {option}", file=sys.stderr)
    for _ in range(3):
        answer = ask(f"choose 1-{len(options)} [1]: ").strip() or "1"
        if answer.isdigit() and 1 <= int(answer) <= len(options):
            return int(answer) - 1
        print(f"  type a number from 1 to {len(options)}", file=sys.stderr)
    raise ConfigError(f"no valid choice for {title.rstrip(':')}; nothing was written")


def choose(
    *,
    module: str | None,
    token: str | None,
    pin_source: str | None,
    config_path: Path,
    ask: Ask | None,
) -> InitChoices:
    """Fill in what the flags left open: from a person (``ask``) or refuse naming the flag."""
    if module is None:
        found = find_modules()
        if not found:
            raise ConfigError(
                "no PKCS#11 module found: install one (`apt-get install softhsm2` for a "
                "software token to try vaultd, ykcs11 for a YubiKey, opensc for smart cards) "
                "or pass --module PATH"
            )
        if ask is None:
            listed = ", ".join(f"{m.path} ({m.name})" for m in found)
            raise ConfigError(f"pass --module: modules found here: {listed}")
        module = found[_pick(ask, "PKCS#11 module:", [f"{m.name}: {m.path}" for m in found])].path
    if token is None:
        labels = token_labels(module)
        if not labels:
            raise ConfigError(
                f"{module} shows no token: insert it, or for SoftHSM2 create one with "
                "`softhsm2-util --init-token --free --label vaultd` (it asks for the PINs)"
            )
        if ask is None:
            raise ConfigError(f"pass --token: tokens in {module}: {', '.join(labels)}")
        token = labels[_pick(ask, "token:", labels)]
    if pin_source is None:
        options = ["keyring"] if keyring_usable() else []
        options += [default_pin_file(config_path), "prompt"]
        if ask is None:
            pin_source = options[0]
        else:
            if options[0] != "keyring":
                print("no OS keyring is usable here (headless?)", file=sys.stderr)
            pin_source = options[_pick(ask, "where the token PIN comes from:", options)]
    elif pin_source == "keyring" and not keyring_usable():
        raise ConfigError(
            "no OS keyring is usable here (no Secret Service or Keychain): use --pin-source "
            f"prompt or --pin-source {default_pin_file(config_path)}"
        )
    return InitChoices(module=module, token_label=token, pin_source=pin_source)


def write_config(path: Path, choices: InitChoices) -> None:
    """Write the config (0600, in a 0700 directory), never over an existing one."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.store.atomic import atomic_write

    if path.exists():
        raise ConfigError(f"{path} exists; edit it instead of running the first-run setup")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, render_config(choices).encode(), mode=0o600)
