"""`goverse-harness` command line: run, up, doctor, report, refstack.

Why thin: every subcommand is a front for library code that the tests exercise directly (`run` is
pytest with our plugin over ``scenarios/``; `report` is harness.report). Bad input gets one line naming
the setting and exit code 2, like argparse does for its own errors.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from harness.settings import SettingsError, load_settings

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"


# Options (pytest's and ours) whose next argument is a value, never a test path.
_VALUE_OPTIONS = frozenset({
    "-k", "-m", "-p", "-c", "-o", "-n", "-W", "--ignore", "--ignore-glob", "--deselect", "--dist", "--rootdir",
    "--basetemp", "--maxfail", "--durations", "--tb", "--artifacts", "--bug", "--platform", "--stack", "--nodes",
    "--gates", "--shards", "--etcd-members", "--seed", "--goverse-node-bin", "--goverse-gate-bin",
    "--goverse-inspector-bin", "--object-type", "--gvh-config", "--kube-context", "--allow-context",
    "--cluster-name", "--image",
})


def _names_test_paths(argv: list[str]) -> bool:
    """Whether the user named test files/dirs themselves (then scenarios/ is not added)."""
    prev = ""
    for a in argv:
        if not a.startswith("-") and prev not in _VALUE_OPTIONS and (Path(a.split("::")[0]).exists()):
            return True
        prev = a
    return False


def _cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    """Run scenarios with pytest (all pytest options pass through), print the summary, exit 0 only if
    every scenario passed."""
    import pytest

    argv = list(rest)
    if not _names_test_paths(argv):
        argv.append(str(SCENARIOS_DIR))
    if not any(a == "-p" for a in argv):
        argv += ["-p", "no:cacheprovider"]
    code = int(pytest.main(argv))
    if code == 5:
        print("goverse-harness: no scenario matched the selection (pytest exit code 5)", file=sys.stderr)
    return code


def _cmd_up(args: argparse.Namespace, rest: list[str]) -> int:
    """Deploy a stack, print its endpoints, keep it up until Ctrl-C, then tear it down."""
    from harness.platforms.local.deploy import LocalPlatform
    from harness.report.store import create_run_dir

    try:
        settings = load_settings({"nodes": args.nodes, "gates": args.gates, "bugs": args.bug or None,
                                  "shards": args.shards})
    except SettingsError as exc:
        print(f"goverse-harness up: {exc}", file=sys.stderr)
        return 2
    if settings.platform != "local":
        print("goverse-harness up: only --platform local is supported by 'up' here", file=sys.stderr)
        return 2
    run_dir = create_run_dir(settings.artifacts)
    print(f"deploying {settings.nodes} nodes, {settings.gates} gates (logs in {run_dir}/stacks/up/logs) ...")
    dep = LocalPlatform().deploy(settings.stack_spec(), run_dir / "stacks" / "up")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        ep = dep.endpoints()
        print("stack is ready:")
        for name, url in dep.gate_urls().items():
            print(f"  {name:10s} {url}/api/v1/objects/call/<type>/<id>/<method>")
        if ep.inspector:
            print(f"  inspector  {ep.inspector}/shards")
        print(f"  etcd       {', '.join(ep.etcd)} (prefix {ep.prefix})")
        print(f"  postgres   {ep.postgres_dsn_redacted}")
        print("press Ctrl-C to tear down")
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("tearing down ...")
        dep.teardown()
    return 0


def _cmd_doctor(args: argparse.Namespace, rest: list[str]) -> int:
    """What this machine can do, each line yes/no with the reason."""
    from harness.platforms.local.deploy import LocalPlatform

    rows = LocalPlatform().doctor()
    width = max(len(r[0]) for r in rows)
    for name, ok, why in rows:
        print(f"{name:<{width}}  {'yes' if ok else 'no ':3}  {why}")
    essentials = {r[0]: r[1] for r in rows}
    return 0 if essentials.get("etcd") and essentials.get("postgres") else 1


def _cmd_cleanup(args: argparse.Namespace, rest: list[str]) -> int:
    from harness.platforms.local.sweep import sweep_dead_runs

    swept = sweep_dead_runs(dry_run=args.dry_run)
    if not swept:
        print("nothing to clean: no dead run left anything behind")
    for prefix, removed in swept.items():
        verb = "would remove" if args.dry_run else "removed"
        print(f"{prefix}: {verb} {len(removed)}: {', '.join(removed) or 'its ownership mark'}")
    return 0


def _cmd_report(args: argparse.Namespace, rest: list[str]) -> int:
    from harness.report.cli import report_main

    return int(report_main(rest))


def _cmd_conformance(args: argparse.Namespace, rest: list[str]) -> int:
    from harness.conformance.cli import conformance_main

    return int(conformance_main(rest))


def _cmd_load_report(args: argparse.Namespace, rest: list[str]) -> int:
    from harness.load.report import load_report_main

    return int(load_report_main(rest))


def _cmd_refstack(args: argparse.Namespace, rest: list[str]) -> int:
    from harness.refstack.main import main as refstack_main

    return int(refstack_main(rest) or 0)


def _cmd_cluster(args: argparse.Namespace, rest: list[str]) -> int:
    """Kubernetes test clusters (kind/k3d/binaries): see harness/platforms/kubernetes/cluster_cli.py."""
    from harness.platforms.kubernetes.cluster_cli import main as cluster_main

    return cluster_main(rest)


COMMANDS = {
    "run": (_cmd_run, "run scenarios (pytest options pass through, e.g. -m e2e -k sigkill --bug NAME)"),
    "up": (_cmd_up, "deploy a local stack, print endpoints, tear down on Ctrl-C"),
    "doctor": (_cmd_doctor, "show what this machine can do (etcd, Postgres, netns, nft, cgroups, ...)"),
    "cleanup": (_cmd_cleanup, "remove what local runs killed without teardown left (namespaces, cgroups, mounts)"),
    "report": (_cmd_report, "re-render a run directory's report; --compare BASELINE shows regressions"),
    "conformance": (_cmd_conformance, "run only the seed conformance checks and print the table"),
    "load-report": (_cmd_load_report, "standalone HTML load report of a run; --compare BASELINE flags regressions"),
    "refstack": (_cmd_refstack, "run a reference-stack process: refstack node|gate|inspector --config F"),
    "cluster": (_cmd_cluster, "Kubernetes test cluster: cluster up|down|status|load-image [--provider ...]"),
}


# Subcommands whose arguments (including --help) belong to the program they front.
PASSTHROUGH = ("run", "report", "refstack", "conformance", "load-report", "cluster")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="goverse-harness",
                                description="Conformance and chaos test harness for Goverse deployments.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_fn, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_, add_help=name not in PASSTHROUGH)
        if name == "up":
            sp.add_argument("--nodes", type=int)
            sp.add_argument("--gates", type=int)
            sp.add_argument("--shards", type=int)
            sp.add_argument("--bug", action="append")
        if name == "cleanup":
            sp.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in PASSTHROUGH:
        args, rest = parser.parse_args(argv[:1]), argv[1:]
    else:
        args = parser.parse_args(argv)
        rest = []
    fn, _help = COMMANDS[args.command]
    return fn(args, rest)


if __name__ == "__main__":
    sys.exit(main())
