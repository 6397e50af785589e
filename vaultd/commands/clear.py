"""`vaultd clear PROFILE` (also `vaultd lock PROFILE`): drop one profile's session.

The daemon drops the profile's cached session, cancels its pending approvals and forgets its
deny cooldown; other profiles' sessions (roles chained from it too) stay. The next request for
the profile asks for approval again.
"""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers
from vaultd.commands._client import client
from vaultd.commands.exec import checked_profile


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "clear",
        help="drop one profile's cached session and pending approvals",
        description="Drop one profile's cached session and pending approvals in the daemon "
        "(like `aws-vault clear PROFILE`); other profiles keep theirs. `vaultd lock` drops them "
        "all.",
    )
    p.add_argument("profile")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    clear_profile(args.profile)
    return 0


def clear_profile(profile: str) -> None:
    """Ask the daemon to drop ``profile``'s session; say so on stdout."""

    client().request("lock", profile=checked_profile(profile))
    print(f"cleared: {profile}'s session and pending approvals dropped")
