"""`vaultd login PROFILE [--print] [--duration S]`: open the AWS console for a profile.

A role profile signs in with its role session; a profile without a role with a
GetFederationToken session that the daemon makes after an approval (the long-lived keys
never leave the daemon).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vaultd.commands._args import Subparsers, settings
from vaultd.errors import BrowserUnavailable, ConfigError, UnknownProfile

if TYPE_CHECKING:
    import threading
    from http.server import BaseHTTPRequestHandler

    from vaultd.core.model import SessionCredentials

HANDOFF_WAIT = 60.0
"""Seconds the one-shot local redirect waits for the browser."""


def _duration(text: str) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.aws.federation import check_session_duration

    try:
        return check_session_duration(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "login",
        help="open the AWS console signed in with a role profile's session",
        description="Gets the profile's session from the daemon (approval as for `vaultd "
        "exec`), exchanges it at the AWS federation endpoint for a sign-in token and opens "
        "the console in a web browser. Only role profiles (role_arn) work: AWS does not "
        "sign in GetSessionToken sessions. The sign-in URL grants console access to anyone "
        "who opens it for 15 minutes: the browser receives it through a one-shot redirect "
        "on 127.0.0.1, so it never appears in a command line. VAULTD_FEDERATION_URL "
        "replaces the endpoint (default https://signin.aws.amazon.com/federation; "
        "http:// only on 127.0.0.1 or localhost).",
    )
    p.add_argument("profile")
    p.add_argument(
        "--print",
        action="store_true",
        help="print the sign-in URL on stdout instead of opening a browser",
    )
    p.add_argument(
        "--duration",
        type=_duration,
        metavar="S",
        help="console session length, 900-43200 s (AWS may refuse it for a role chained "
        "from an MFA session; default: the role session's own lifetime)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.aws import federation
    from vaultd.aws.container_endpoint import fetch_from_daemon, parse_session

    conf = settings()
    profile = conf.profiles.get(args.profile)
    if profile is None:
        raise UnknownProfile(
            f"no profile {args.profile!r} in the vaultd config: add [profiles.{args.profile}]"
        )
    base = federation.endpoint(os.environ)
    if profile.role_arn is not None:
        creds = parse_session(fetch_from_daemon(str(conf.socket), args.profile))
    else:
        creds = _federation_session(conf.socket, args.profile)
    url = federation.login_url(base, federation.get_signin_token(base, creds, args.duration))
    if args.print:
        sys.stderr.write(
            "vaultd: WARNING: this URL signs anyone who opens it in to the AWS console as "
            f"{profile.role_arn or args.profile} for the next 15 minutes; do not paste it "
            "anywhere shared\n"
        )
        sys.stdout.write(url + "\n")
        return 0
    refused: list[int | None] = []
    if not open_in_browser(url, on_refused=refused.append):
        raise BrowserUnavailable(
            "no web browser fetched the sign-in link; set BROWSER, or run "
            f"`vaultd login {args.profile} --print` and open the URL yourself"
        )
    if refused:  # each was reported as it happened; do not claim a clean sign-in
        return 1
    sys.stderr.write(f"vaultd: opened the AWS console for {args.profile} in the browser\n")
    return 0


def _federation_session(socket: Path, profile: str) -> SessionCredentials:
    """GetFederationToken through the daemon (profiles without a role; needs an approval)."""

    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.aws.container_endpoint import parse_session
    from vaultd.ipc.client import DaemonClient

    def hint(event: object) -> None:
        fields = getattr(event, "fields", {})
        name = getattr(event, "name", "")
        if name == "touch_needed":
            print("vaultd: touch your security key", file=sys.stderr)
        elif name == "approval_pending":
            print(
                f"vaultd: approval {fields.get('id')} pending: run "
                f"`vaultd approve {fields.get('id')} --code CODE` in another terminal",
                file=sys.stderr,
            )

    reply = DaemonClient(socket).request("federation", on_event=hint, profile=profile)
    return parse_session(json.dumps(reply["output"]).encode())


def open_in_browser(
    url: str,
    *,
    wait: float = HANDOFF_WAIT,
    on_refused: Callable[[int | None], None] | None = None,
) -> bool:
    """Open ``url`` through a one-shot redirect on 127.0.0.1, so no browser argv holds it.

    The browser gets ``http://127.0.0.1:PORT/NONCE``, which sits in its argv where any user
    can read it, so a connection from another user's process gets 403 whatever it asks
    (docs/threat-model.md T30): a warning goes to stderr and ``on_refused`` gets its uid.
    The first request of the user's own for the link is answered with a redirect to ``url``
    and every other request with 404.  True once it was served.
    """
    # Not loaded by `vaultd --help`, which imports this module's parser.
    import secrets
    import threading
    import webbrowser
    from http.server import HTTPServer

    served = threading.Event()
    nonce = secrets.token_urlsafe(32)
    handler = _redirect_handler(url, f"/{nonce}", served, on_refused)
    with HTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, args=(0.1,), daemon=True)
        thread.start()
        try:
            port = httpd.server_address[1]
            try:
                opened = webbrowser.open(f"http://127.0.0.1:{port}/{nonce}")
            except (webbrowser.Error, OSError, ValueError):  # e.g. a malformed $BROWSER
                opened = False
            return opened and served.wait(wait)
        finally:
            httpd.shutdown()
            thread.join()


def _redirect_handler(
    url: str,
    path: str,
    served: threading.Event,
    on_refused: Callable[[int | None], None] | None,
) -> type[BaseHTTPRequestHandler]:
    """The request handler of :func:`open_in_browser`: one redirect to ``url`` at ``path``."""
    # Not loaded by `vaultd --help`, which imports this module's parser.
    import hmac
    from http.server import BaseHTTPRequestHandler

    from vaultd.system import tcp_owner

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Requests are not logged."""

        def do_GET(self) -> None:
            allowed, uid = tcp_owner.is_own_user(self.connection)
            if not allowed:
                sys.stderr.write(tcp_owner.refusal_warning(uid, "the sign-in link") + "\n")
                if on_refused is not None:
                    on_refused(uid)
                self.send_error(403)
                return
            if served.is_set() or not hmac.compare_digest(self.path.encode(), path.encode()):
                self.send_error(404)
                return
            served.set()
            self.send_response(302)
            self.send_header("Location", url)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Redirect
