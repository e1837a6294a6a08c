"""``gatehouse cloud``: serve the API, migrate, and provision sites, tokens and users."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloud.settings import Settings

log = logging.getLogger(__name__)


def _common(parser: argparse.ArgumentParser, inherited: bool) -> None:
    """``--database-url`` and ``--dev``, accepted before or after the action."""
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if inherited else {}
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: GATEHOUSE_DATABASE_URL "
                        "or sqlite:///./var/cloud.db)", **default)
    parser.add_argument("--dev", action="store_true",
                        help="dev mode: allow a missing secret key (never in production)",
                        **default)


def configure(parser: argparse.ArgumentParser) -> None:
    _common(parser, inherited=False)
    sub = parser.add_subparsers(dest="cloud_command", metavar="ACTION", required=True)

    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (PostgreSQL for more than one)")
    serve.add_argument("--no-engine", action="store_true",
                       help="do not run the background engine (SLA checks) in these workers")

    sub.add_parser("migrate", help="bring the database schema up to date and exit")

    site = sub.add_parser("create-site", help="create or update a site and its devices")
    site.add_argument("site_id")
    site.add_argument("--name", default="")
    site.add_argument("--site-config", type=Path, help="site.yaml whose devices are registered")

    tok = sub.add_parser("gateway-token", help="print a new gateway token for SITE")
    tok.add_argument("site_id")
    tok.add_argument("--rotate", action="store_true", help="revoke the site's other tokens")
    tok.add_argument("--ttl", type=float, default=None, help="seconds until it expires")

    rev = sub.add_parser("revoke-token", help="revoke SITE's gateway tokens")
    rev.add_argument("site_id")
    rev.add_argument("--prefix", help="only the token starting with this (first 12 chars)")

    user = sub.add_parser("create-user", help="create or update a user")
    user.add_argument("username")
    user.add_argument("--role", required=True,
                      choices=["admin", "dispatcher", "technician", "security", "viewer"])
    user.add_argument("--site", action="append", default=[], dest="sites",
                      help="a site the user may see (repeat; '*' for every site)")
    user.add_argument("--password-file", type=Path,
                      help="file with the password (default: GATEHOUSE_USER_PASSWORD or prompt)")
    user.add_argument("--team", help="team of a technician (for dispatch)")
    user.add_argument("--on-shift", action="store_true")

    for action in (serve, site, tok, rev, user, sub.choices["migrate"]):
        _common(action, inherited=True)


def run(args: argparse.Namespace) -> int:
    from cloud.settings import Settings as SettingsClass
    from cloud.settings import SettingsError

    logging.getLogger("alembic").setLevel(logging.WARNING)
    overrides: dict[str, object] = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.dev:
        overrides["dev_mode"] = True
    try:
        settings = SettingsClass.model_validate(overrides)
    except (SettingsError, ValueError) as exc:
        print(f"gatehouse cloud: {exc}", file=sys.stderr)
        return 2
    action = args.cloud_command
    if action == "serve":
        return _serve(settings, args)
    if action == "migrate":
        from cloud.db import Database

        db = Database(settings)
        db.migrate()
        db.dispose()
        print("database is up to date")
        return 0
    return _provision(settings, args)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from cloud.app import create_app
    from cloud.db import Database

    if args.workers > 1 and settings.is_sqlite:
        print("gatehouse cloud: several workers need PostgreSQL; SQLite takes one writer",
              file=sys.stderr)
        return 2
    if args.no_engine:
        settings = settings.model_copy(update={"run_engine": False})
    if args.workers <= 1:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
        return 0
    db = Database(settings)
    db.migrate()
    db.dispose()
    os.environ["GATEHOUSE_DATABASE_URL"] = settings.database_url
    os.environ["GATEHOUSE_DEV_MODE"] = "true" if settings.dev_mode else "false"
    os.environ["GATEHOUSE_RUN_ENGINE"] = "true" if settings.run_engine else "false"
    uvicorn.run("cloud.app:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning")
    return 0


def _provision(settings: Settings, args: argparse.Namespace) -> int:
    from cloud import bootstrap
    from device_profiles.site import SiteConfigError, load_site

    action = args.cloud_command
    try:
        if action == "create-site":
            devices = []
            name = args.name
            if args.site_config:
                site = load_site(args.site_config)
                if site.site_id != args.site_id:
                    print(f"gatehouse cloud: {args.site_config} describes site "
                          f"{site.site_id}, not {args.site_id}", file=sys.stderr)
                    return 2
                devices = site.all_devices()
                name = name or site.name
            bootstrap.provision_site(settings, args.site_id, name, devices)
            print(f"site {args.site_id}: {len(devices)} devices registered")
        elif action == "gateway-token":
            if args.rotate:
                print(bootstrap.rotate_gateway_token(settings, args.site_id))
            else:
                print(bootstrap.issue_gateway_token(settings, args.site_id, ttl=args.ttl))
        elif action == "revoke-token":
            n = bootstrap.revoke_gateway_tokens(settings, args.site_id, prefix=args.prefix)
            print(f"{n} token(s) revoked")
        elif action == "create-user":
            if args.password_file:
                password = args.password_file.read_text(encoding="utf-8").strip()
            else:
                password = os.environ.get("GATEHOUSE_USER_PASSWORD") or getpass.getpass()
            bootstrap.create_user(settings, args.username, password, args.role, args.sites,
                                  team=args.team, on_shift=args.on_shift)
            print(f"user {args.username} ({args.role}) on {', '.join(args.sites) or 'no sites'}")
    except (bootstrap.ProvisioningError, SiteConfigError, OSError) as exc:
        print(f"gatehouse cloud: {exc}", file=sys.stderr)
        return 2
    return 0
