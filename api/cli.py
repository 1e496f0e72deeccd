"""The ``carehub`` command: migrate, seed, serve, mint tokens, bootstrap a network."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from api.cli_plugins import add_plugin_commands, fail
from core.settings import Settings, SettingsError, load_settings


def _positive(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 256:
        raise argparse.ArgumentTypeError("a number of processes from 1 to 256")
    return number


def cmd_db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    from core import migrate

    migrate.upgrade(settings)
    role = asyncio.run(migrate.grant_app_role(settings))
    print("database schema is up to date" + (f"; application role '{role}' granted data access" if role else ""))
    return 0


async def _seed(settings: Settings) -> list[object]:
    from api.hub import Hub
    from core import demo
    from core.messaging.blobs import blob_store

    hub = Hub.create(settings)
    try:
        return list(await demo.seed(hub.db, blob_store(settings)))
    finally:
        await hub.stop()


def _print_logins(settings: Settings, logins: Sequence[object]) -> None:
    from core.demo import ALL_USERS, DEMO_PASSWORD

    base = f"http://{settings.host}:{settings.port}"
    print(f"\ncarehub demo network at {base}  (API docs: {base}/schema)")
    print(f"Every demo user's password is: {DEMO_PASSWORD}")
    for email, _name, tenant, roles in ALL_USERS:
        print(f"  {email:34} tenant={tenant or '(network)':18} roles={','.join(roles) or 'network_admin'}")
    print("\nGet a token, e.g.:")
    print(f"  curl -s {base}/api/v1/auth/token -H 'content-type: application/json' \\")
    print(f'       -d \'{{"email": "dr.lee@stmarys.example", "password": "{DEMO_PASSWORD}", "tenant": "st-marys"}}\'\n')


def cmd_seed_demo(settings: Settings, _args: argparse.Namespace) -> int:
    logins = asyncio.run(_seed(settings))
    print("demo network created" if logins else "a network exists already: demo data not added")
    return 0


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> int:
    """Relay the outbox to the job broker and run the event handlers, until SIGINT or SIGTERM.

    With Redis (CAREHUB_REDIS_URL) run as many as you like; without, the broker is in this process and this one
    worker handles every event of the database.
    """
    import signal

    import dramatiq

    from core.db import make_engine, make_sessionmaker
    from core.jobs.relay import relay_forever
    from core.jobs.runtime import JobRuntime
    from core.notify import delivery
    from core.plugins import PluginError
    from core.plugins import sync as plugin_sync

    delivery.configure(settings.channel_config)
    plugin_sync.configure(settings)
    try:
        ready = delivery.configured_channels()  # a bad channel setting stops the worker now, not at the first send
    except PluginError as exc:
        print(f"carehub worker: {exc}", file=sys.stderr)
        return 2
    print(f"carehub worker: notification channels: in_app{''.join(', ' + name for name in sorted(ready))}")
    runtime = JobRuntime(settings)
    worker = dramatiq.Worker(runtime.broker, worker_threads=settings.job_worker_threads)
    worker.start()

    async def relay() -> None:
        engine = make_engine(settings.database_url, pool_size=2)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"carehub worker: relaying the outbox and running handlers ({settings.job_worker_threads} threads)")
        try:
            await relay_forever(
                make_sessionmaker(engine), runtime, settings.relay_interval_ms / 1000, settings.relay_batch, stop
            )
        finally:
            await engine.dispose()

    try:
        asyncio.run(relay())
    finally:
        runtime.close()
        worker.stop()
        runtime.broker.close()
    return 0


def cmd_scheduler(settings: Settings, _args: argparse.Namespace) -> int:
    """Write each periodic rule's event once per period, until SIGINT or SIGTERM (run one or several: with Redis
    one leads at a time, and a period's event exists once however many run)."""
    import signal

    from redis.asyncio import Redis

    from core.db import make_engine, make_sessionmaker
    from core.jobs import scheduler

    async def main() -> None:
        engine = make_engine(settings.database_url, pool_size=2)
        redis = (
            Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
            if settings.redis_url
            else None
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("carehub scheduler: ticking the periodic rules")
        try:
            await scheduler.run(make_sessionmaker(engine), redis, settings.scheduler_tick_ms / 1000, stop)
        finally:
            if redis is not None:
                await redis.aclose()
            await engine.dispose()

    asyncio.run(main())
    return 0


def serve(app: Any, settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """Run ``app`` under the server carehub uses in production (the benchmark's floor apps use it too): uvicorn
    with its C HTTP parser and event loop. With more than one worker, ``app`` is the import string of an app
    factory (each worker process builds its own app from the environment)."""
    import uvicorn

    uvicorn.run(
        app,
        factory=workers > 1,
        workers=workers if workers > 1 else None,
        host=host,
        port=port,
        http="httptools",
        loop="uvloop",
        log_level="info",
        access_log=settings.access_log,
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def default_workers(settings: Settings) -> int:
    """One server process per core on PostgreSQL; one on the embedded default (SQLite has one writer) and
    wherever the background jobs run inside the API process (they elect no leader)."""
    if settings.jobs_in_process or not settings.is_postgres:
        return 1
    return os.cpu_count() or 1


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from api.app import create_app

    workers = args.workers if getattr(args, "workers", None) is not None else default_workers(settings)
    if workers > 1 and settings.jobs_in_process:
        return fail("--workers: background jobs in the API process (CAREHUB_JOBS_IN_PROCESS) need one worker", 2)
    host, port = args.host or settings.host, args.port or settings.port
    if workers == 1:
        serve(create_app(settings), settings, host=host, port=port)
    else:
        serve("api.app:create_app", settings, host=host, port=port, workers=workers)
    return 0


def port_in_use(host: str, port: int) -> str | None:
    """Why the API could not listen on ``host:port`` (e.g. another process holds it), or ``None``."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As uvicorn binds: SO_REUSEADDR, so a port left in TIME_WAIT by a stopped server counts as free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    host, port = args.host or settings.host, args.port or settings.port
    problem = port_in_use(host, port)
    if problem:
        print(
            f"carehub: cannot serve the demo on {host}:{port}: {problem}.\n"
            f"Another program (perhaps another carehub) is using port {port}. Stop it, or choose another port:\n"
            f"  CAREHUB_PORT={port + 1} make run        (or: carehub demo --port {port + 1})",
            file=sys.stderr,
        )
        return 2
    # The embedded default does its background work in the one process it has.
    settings = settings.model_copy(update={"jobs_in_process": True})
    cmd_db_upgrade(settings, args)
    asyncio.run(_seed(settings))
    where = {k: v for k, v in (("host", args.host), ("port", args.port)) if v}
    _print_logins(settings.model_copy(update=where), [])
    return cmd_serve(settings, args)


async def _mint(settings: Settings, email: str, tenant_slug: str | None) -> str:
    from api.hub import Hub
    from tenants.context import tenant_context
    from tenants.models import Membership, Tenant, User

    hub = Hub.create(settings)
    try:
        async with hub.db() as session:
            user = await session.scalar(select(User).where(User.email == email.lower()))
            tenant = await session.scalar(select(Tenant).where(Tenant.slug == tenant_slug)) if tenant_slug else None
        if user is None or not user.is_active:
            raise LookupError(f"no active user {email}")
        if tenant_slug is None:
            if user.network_role != "network_admin":
                raise LookupError(f"{email} is not a network administrator: give --tenant")
            return hub.tokens.issue(user.id, None, user.token_version)[0]
        if tenant is None:
            raise LookupError(f"no tenant {tenant_slug}")
        if tenant.status == "suspended":
            raise LookupError(f"tenant {tenant_slug} is suspended")
        with tenant_context(tenant.id):
            async with hub.db() as session:
                membership = await session.scalar(
                    select(Membership).where(Membership.user_id == user.id, Membership.is_active.is_(True))
                )
        if membership is None:
            raise LookupError(f"{email} is not a member of {tenant_slug}")
        return hub.tokens.issue(user.id, tenant.id, user.token_version)[0]
    finally:
        await hub.stop()


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    try:
        print(asyncio.run(_mint(settings, args.user, args.tenant)))
    except LookupError as exc:
        return fail(str(exc), 1)
    return 0


async def _init(
    settings: Settings, network_name: str, network_slug: str, email: str, full_name: str, password: str
) -> None:
    from api.hub import Hub
    from tenants import passwords
    from tenants.models import Network, User

    hub = Hub.create(settings)
    try:
        async with hub.db() as session, session.begin():
            if await session.scalar(select(Network.id).limit(1)) is not None:
                raise LookupError("a network exists already")
            session.add(Network(id=uuid.uuid4(), slug=network_slug, name=network_name))
            session.add(
                User(
                    id=uuid.uuid4(),
                    email=email.lower(),
                    full_name=full_name,
                    password_hash=passwords.hash_password(password),
                    network_role="network_admin",
                )
            )
    finally:
        await hub.stop()


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from core.errors import InvalidInput
    from tenants import passwords

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,61}[a-z0-9]", args.network_slug):
        return fail("--network-slug: 2 to 63 lowercase letters, digits and hyphens", 2)
    for option, value in (("--network-name", args.network_name), ("--name", args.name)):
        if not value.strip() or len(value) > 200:
            return fail(f"{option}: 1 to 200 characters", 2)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", args.email):
        return fail("--email: not an email address", 2)
    password = os.environ.get("CAREHUB_INIT_PASSWORD") or getpass.getpass("network administrator password: ")
    try:
        passwords.check_strength(password)
        asyncio.run(_init(settings, args.network_name, args.network_slug, args.email, args.name, password))
    except (InvalidInput, LookupError) as exc:
        return fail(str(exc), 1)
    print(f"network {args.network_slug} created; {args.email} is its network administrator")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carehub", description="carehub care coordination hub")
    sub = parser.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="migrate to the latest schema (as the table owner)").set_defaults(func=cmd_db_upgrade)
    sub.add_parser("seed-demo", help="add the demo network to an empty database").set_defaults(func=cmd_seed_demo)
    sub.add_parser("worker", help="relay domain events to the job broker and run their handlers").set_defaults(
        func=cmd_worker
    )
    sub.add_parser("scheduler", help="write the periodic rules' events (overdue tasks, ...)").set_defaults(
        func=cmd_scheduler
    )
    for name, func, text in (
        ("serve", cmd_serve, "serve the API"),
        ("api", cmd_serve, "serve the API (same as serve)"),
        ("demo", cmd_demo, "migrate, seed the demo network, print logins and serve"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--host")
        p.add_argument("--port", type=int)
        if func is cmd_serve:
            p.add_argument(
                "--workers",
                type=_positive,
                help="server processes (default: one per core on PostgreSQL, one on SQLite)",
            )
        p.set_defaults(func=func)
    token = sub.add_parser("token", help="mint an access token for a user (operators, scripts)")
    token.add_argument("--user", required=True, help="the user's email")
    token.add_argument("--tenant", help="tenant slug (leave out for a network administrator)")
    token.set_defaults(func=cmd_token)
    init = sub.add_parser(
        "init",
        help="create the network and its first network administrator (password from CAREHUB_INIT_PASSWORD or a prompt)",
    )
    init.add_argument("--network-name", required=True)
    init.add_argument("--network-slug", required=True)
    init.add_argument("--email", required=True)
    init.add_argument("--name", required=True, help="the administrator's full name")
    init.set_defaults(func=cmd_init)
    add_plugin_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        return fail(f"configuration error: {exc}")
    result: int = args.func(settings, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
