"""The ``carehub`` commands of plugins: list them, make a secret key, run an HL7 v2 (MLLP) listener, scaffold a
new plugin."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from core.settings import Settings


def fail(message: str, code: int = 2) -> int:
    print(f"carehub: {message}", file=sys.stderr)
    return code


def cmd_plugins_list(settings: Settings, _args: argparse.Namespace) -> int:
    """Installed plugins with their versions and source, the refused ones with the reason, and the tenants that
    enabled each, with the breaker's state and the last error."""
    from core.plugins.registry import registry

    found = registry()
    usage = asyncio.run(_plugin_usage(settings))
    for plugin in sorted(found.installed.values(), key=lambda p: p.name):
        manifest = plugin.manifest
        scope = "per tenant" if manifest.per_tenant else "network-wide (operator settings)"
        print(f"{plugin.name} {manifest.version}  [{plugin.source}; SDK {manifest.sdk}; {scope}]  {manifest.title}")
        if manifest.per_tenant:
            rows = usage.get(plugin.name, [])
            if not rows:
                print("    enabled nowhere")
            for line in rows:
                print(f"    {line}")
    for refused in found.refused:
        print(f"{refused.name}  REFUSED [{refused.source}]: {refused.reason}")
    return 1 if found.refused else 0


async def _plugin_usage(settings: Settings) -> dict[str, list[str]]:
    from sqlalchemy import select

    from core.db import make_engine, make_sessionmaker, utcnow
    from core.plugins.models import PluginEnablement, PluginPolicy
    from tenants.context import network_scope
    from tenants.models import Tenant

    engine = make_engine(settings.database_url)
    usage: dict[str, list[str]] = {}
    try:
        with network_scope("carehub plugins list: where each plugin is enabled"):
            async with make_sessionmaker(engine)() as session:
                forbidden = {p.plugin for p in await session.scalars(select(PluginPolicy)) if not p.allowed}
                rows = await session.execute(
                    select(PluginEnablement, Tenant.slug)
                    .join(Tenant, Tenant.id == PluginEnablement.tenant_id)
                    .order_by(PluginEnablement.plugin, Tenant.slug)
                )
                for row, slug in rows.tuples():
                    state = "enabled" if row.enabled else "disabled"
                    if row.plugin in forbidden:
                        state += " (forbidden by the network)"
                    if row.open_until is not None and row.open_until > utcnow():
                        state += f", breaker open until {row.open_until:%Y-%m-%d %H:%M:%S} UTC"
                    if row.last_error:
                        state += f", last error {row.last_error_at:%Y-%m-%d %H:%M} UTC: {row.last_error[:200]}"
                    usage.setdefault(row.plugin, []).append(f"{slug}: {state}")
    finally:
        await engine.dispose()
    return usage


def cmd_plugins_new_key(_settings: Settings, _args: argparse.Namespace) -> int:
    """Print a new key for CAREHUB_PLUGIN_SECRET_KEYS (put it first to rotate; keep the old ones after it)."""
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return 0


def cmd_mllp(settings: Settings, args: argparse.Namespace) -> int:
    """Listen for HL7 v2 over MLLP for one tenant until SIGINT or SIGTERM; each message is stored and applied
    before it is acknowledged (run one per tenant and port, as many as you like)."""
    import signal

    from sqlalchemy import select

    from core.db import make_engine, make_sessionmaker
    from core.plugins import mllp
    from core.plugins.invoke import tenant_info
    from core.plugins.registry import registry
    from tenants.context import network_scope
    from tenants.models import Tenant

    plugin = registry().get(args.plugin)
    if plugin is None or not plugin.implements("carehub_inbound_message"):
        return fail(f"--plugin: {args.plugin} is not an installed plugin that reads inbound messages", 2)

    async def run() -> int:
        engine = make_engine(settings.database_url, pool_size=4)
        try:
            with network_scope("carehub mllp: find the listener's tenant"):
                async with make_sessionmaker(engine)() as session:
                    tenant = await session.scalar(select(Tenant).where(Tenant.slug == args.tenant))
            if tenant is None or tenant.status != "active":
                return fail(f"--tenant: no active tenant {args.tenant}", 2)
            feed = mllp.Feed(make_sessionmaker(engine), settings, tenant_info(tenant), plugin, ack=args.ack)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            print(
                f"carehub mllp: {args.tenant} on {args.host}:{args.port} through {plugin.name}, "
                f"acknowledging once {args.ack}",
                flush=True,
            )
            await mllp.serve(feed, args.host, args.port, stop)
            return 0
        finally:
            await engine.dispose()

    return asyncio.run(run())


def cmd_plugin_new(_settings: Settings, args: argparse.Namespace) -> int:
    from plugin_sdk import scaffold

    return scaffold.main([args.name, "--directory", args.directory])


def add_plugin_commands(sub: Any) -> None:
    """The plugin commands on the ``carehub`` parser's sub-commands."""
    plugins = sub.add_parser("plugins", help="installed plugins").add_subparsers(dest="plugins_command", required=True)
    plugins.add_parser("list", help="installed plugins, versions, and where each is enabled").set_defaults(
        func=cmd_plugins_list
    )
    plugins.add_parser("new-key", help="print a new key for CAREHUB_PLUGIN_SECRET_KEYS").set_defaults(
        func=cmd_plugins_new_key
    )
    listener = sub.add_parser("mllp", help="an HL7 v2 (MLLP) listener for one tenant")
    listener.add_argument("--tenant", required=True, help="the tenant's slug")
    listener.add_argument("--port", type=int, required=True)
    listener.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")  # noqa: S104
    listener.add_argument("--plugin", default="ehr_hl7v2", help="the plugin that reads the messages")
    listener.add_argument(
        "--ack",
        choices=("applied", "stored"),  # core.plugins.feed.ACK_MODES (not imported for the parser: it is slow)
        default="applied",
        help="answer AA once a message is applied (default) or once it is stored, applying it right after in batches",
    )
    listener.set_defaults(func=cmd_mllp)
    new = sub.add_parser("plugin", help="plugin development").add_subparsers(dest="plugin_command", required=True)
    scaffold = new.add_parser("new", help="create a new plugin distribution (manifest, a hook, tests)")
    scaffold.add_argument("name", help="2-40 lower-case letters, digits or _")
    scaffold.add_argument("--directory", default=".", help="where to create it (default: here)")
    scaffold.set_defaults(func=cmd_plugin_new)
