"""Command line: ``python -m harness.refstack node|gate|inspector|schema-init --config FILE [flags]``.

``schema-init`` creates the PostgreSQL tables (idempotently, as every node does at start) and exits:
the Kubernetes schema Job runs it so nodes find the schema in place.

Exit codes: 0 after a graceful shutdown, 2 for bad configuration or a failed start-up check (one line
on stderr naming the setting; nothing registered in etcd), 1 for an unexpected crash.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from harness.refstack.config import ConfigError, Flags, Settings, load_settings
from harness.refstack.logs import setup
from harness.refstack.service import StartupError

log = logging.getLogger("harness.refstack")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="refstack", description="Goverse-contract reference stack process")
    p.add_argument("role", choices=["node", "gate", "inspector", "schema-init"])
    p.add_argument("--config", help="Goverse YAML config file (optional when every value comes from GOVERSE_*)")
    p.add_argument("--node-id", help="this node's id in nodes[] (or GOVERSE_NODE_ID / POD_NAME)")
    p.add_argument("--gate-id", help="this gate's id in gates[] (or GOVERSE_GATE_ID / POD_NAME)")
    p.add_argument("--bugs", help="comma-separated seeded bugs to switch on (or REFSTACK_BUGS)")
    p.add_argument("--version-tag", help="version reported in goverse_build_info (upgrade scenarios)")
    return p


def load(argv: Sequence[str]) -> Settings:
    args = build_parser().parse_args(list(argv))
    text = None
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {args.config}: {exc.strerror}") from None
    if args.role != "node" and args.node_id:
        raise ConfigError("--node-id", f"only valid for node, not {args.role}")
    if args.role != "gate" and args.gate_id:
        raise ConfigError("--gate-id", f"only valid for gate, not {args.role}")
    flags = Flags(config_text=text, node_id=args.node_id, gate_id=args.gate_id, bugs=args.bugs,
                  version_tag=args.version_tag)
    return load_settings(args.role, flags, os.environ)


async def _schema_init(settings: Settings) -> int:
    from harness.refstack.store import Store

    store = Store(settings.postgres, "refstack-schema-init", reload_secrets=False)
    try:
        await store.open()  # logs in and creates whatever of the schema is missing
    except Exception as exc:  # noqa: BLE001 - one line naming what failed; the Job retries
        raise StartupError("postgres", f"schema-init on {store.describe()}: {type(exc).__name__}: {exc}") from None
    await store.close()
    log.info("schema present on %s", store.describe())
    return 0


async def _run(settings: Settings) -> int:
    if settings.role == "schema-init":
        return await _schema_init(settings)
    if settings.role == "node":
        from harness.refstack.node import Node

        _exit_now(await Node(settings).run())
    if settings.role == "gate":
        from harness.refstack.gate import Gate

        _exit_now(await Gate(settings).run())
    from harness.refstack.inspector import Inspector

    _exit_now(await Inspector(settings).run())


def _exit_now(code: int) -> NoReturn:
    """A server that has shut down exits at once, as a Go program does when main returns.

    Why not return through ``asyncio.run``: it cancels every task still running and waits for each.
    A call whose drain budget ran out while it was stuck in PostgreSQL then waits out the driver's
    cancel (psycopg: 5 s, "query not terminated after cancellation") — a node that had logged
    "stopped after 5.01s" was SIGKILLed at the end of its grace period
    (tests/refstack/test_refstack_cluster.py, the drain that runs out)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # shut down already: a late SIGTERM must not turn 0 into -15
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = load(argv)
    except ConfigError as exc:
        print(f"refstack: config error: {exc}", file=sys.stderr)
        return 2
    setup(settings.log_format, settings.log_level, settings.role, settings.instance.id)
    for warning in settings.warnings:
        log.warning("config: %s", warning)
    try:
        code = asyncio.run(_run(settings))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # shut down already: a late SIGTERM must not turn 0 into -15
        return code
    except StartupError as exc:
        log.error("startup failed: %s", exc)
        print(f"refstack: startup error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
