"""`goverse-harness` command line: run, up, doctor, report, refstack.

Why thin: every subcommand is a front for library code that the tests exercise directly (`run` is
pytest with our plugin over ``scenarios/``; `report` is harness.report). Bad input gets one line naming
the setting and exit code 2, like argparse does for its own errors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from datetime import UTC
from pathlib import Path
from typing import Any

from harness.interrupts import Terminated, install_sigterm_as_interrupt
from harness.settings import SettingsError, load_settings

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"


# Options (pytest's and ours) whose next argument is a value, never a test path.
_VALUE_OPTIONS = frozenset({
    "-k", "-m", "-p", "-c", "-o", "-n", "-W", "--ignore", "--ignore-glob", "--deselect", "--dist", "--rootdir",
    "--basetemp", "--maxfail", "--durations", "--tb", "--artifacts", "--bug", "--platform", "--stack", "--nodes",
    "--gates", "--shards", "--etcd-members", "--seed", "--goverse-node-bin", "--goverse-gate-bin",
    "--goverse-inspector-bin", "--goverse-pgadmin-bin", "--goverse-persistence-interval", "--object-type",
    "--gvh-config", "--kube-context", "--allow-context",
    "--cluster-name", "--image", "--deploy-with",
})


def _names_test_paths(argv: list[str]) -> bool:
    """Whether the user named test files/dirs themselves (then scenarios/ is not added)."""
    prev = ""
    for a in argv:
        if not a.startswith("-") and prev not in _VALUE_OPTIONS and (Path(a.split("::")[0]).exists()):
            return True
        prev = a
    return False


RUN_USAGE = """usage: goverse-harness run [options] [scenario files or dirs] [pytest options]

Runs the scenarios (default: the bundled scenarios/) with pytest and the goverse-harness plugin; writes
the report to ARTIFACTS/latest/ (report.html, run.json, junit.xml). Exit 0 only if every scenario passed.
"""

# The pytest options a harness user needs most, shown after the harness's own in `run --help`.
_COMMON_PYTEST = [
    ("-m MARKEXPR", "select by marker: e2e (every scenario), chaos, conformance, load, k8s"),
    ("-k EXPRESSION", "select by name words, e.g. -k 'sigkill and one-node'"),
    ("-x, --exitfirst", "stop at the first failing scenario"),
    ("--lf, --last-failed", "rerun only the scenarios that failed last time"),
    ("-q / -v", "quieter (no phase lines) / more verbose"),
    ("--log-cli-level=INFO", "every harness log line live (inject, heal, waits)"),
    ("--collect-only -q", "list the selected scenarios, run nothing"),
    ("-n N", "run N scenario modules in parallel (pytest-xdist; each deploys its own stack)"),
]


def run_help() -> str:
    """Concise help for `run`: the harness's options first, a few pytest ones, a pointer to the rest."""
    from harness.pytest_plugin import _OPTIONS

    lines = [RUN_USAGE, "goverse-harness options:"]
    for flag, kw in _OPTIONS:
        metavar = "" if kw.get("action") == "store_true" else " " + flag.lstrip("-").split("-")[-1].upper()
        lines.append(f"  {flag + metavar:<28} {kw.get('help', '')}")
    lines += ["", "common pytest options:"]
    lines += [f"  {flag:<28} {help_}" for flag, help_ in _COMMON_PYTEST]
    lines += ["", "Every pytest option is accepted; 'goverse-harness run --pytest-help' lists them all.",
              "Settings also come from GVH_* environment variables and --gvh-config FILE (see docs/platforms.md)."]
    return "\n".join(lines) + "\n"


def _pytest_main(argv: list[str]) -> int:
    """pytest.main, but with usage errors and help titled `goverse-harness run` instead of `pytest.main()`."""
    import pytest

    try:
        from _pytest.config import _main  # private: pytest >= 8.4 takes the program name
        return int(_main(args=argv, plugins=None, prog="goverse-harness run"))
    except (ImportError, TypeError):
        return int(pytest.main(argv))


def _cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    """Run scenarios with pytest (all pytest options pass through), print the summary, exit 0 only if
    every scenario passed."""
    argv = list(rest)
    if any(a in ("-h", "--help") for a in argv):
        print(run_help(), end="")
        return 0
    if "--pytest-help" in argv:
        return _pytest_main(["--help", "-p", "no:locust"])
    if not _names_test_paths(argv):
        argv.append(str(SCENARIOS_DIR))
    # locust's pytest plugin adds options no scenario uses (the load scenario drives locust itself)
    if not any(a.startswith("no:locust") for a in argv):
        argv += ["-p", "no:locust"]
    code = _pytest_main(argv)
    if code == 5:
        print("goverse-harness: no scenario matched the selection (pytest exit code 5)", file=sys.stderr)
    return code


def _harness_option_parser(prog: str) -> argparse.ArgumentParser:
    """The harness options of `run` (the plugin's list), for commands that deploy without pytest."""
    from harness.pytest_plugin import _OPTIONS

    p = argparse.ArgumentParser(prog=prog)
    for flag, kw in _OPTIONS:
        p.add_argument(flag, **kw)
    return p


def _settings_from(ns: argparse.Namespace) -> Any:
    from harness.pytest_plugin import _OPTIONS

    values: dict[str, Any] = {}
    for flag, kw in _OPTIONS:
        dest = kw.get("dest") or flag.lstrip("-").replace("-", "_")
        if dest != "gvh_config" and getattr(ns, dest, None) is not None:
            values[dest] = getattr(ns, dest)
    return load_settings(values, config_file=ns.gvh_config)


# counter.IncrementRequest{by: 5} packed in a google.protobuf.Any, base64 (as in docs/refstack.md)
_INCREMENT_5 = "Cix0eXBlLmdvb2dsZWFwaXMuY29tL2NvdW50ZXIuSW5jcmVtZW50UmVxdWVzdBICCAU="


def _cmd_up(args: argparse.Namespace, rest: list[str]) -> int:
    """Deploy a stack with the same options as `run`, print every address, keep it up until Ctrl-C or
    SIGTERM, then tear it down (``--keep-stack``: leave it running for `goverse-harness down`)."""
    from datetime import datetime

    from harness.platforms.local.deploy import LocalPlatform

    ns = _harness_option_parser("goverse-harness up").parse_args(rest)
    try:
        settings = _settings_from(ns)
    except SettingsError as exc:
        print(f"goverse-harness up: {exc}", file=sys.stderr)
        return 2
    if settings.platform != "local":
        print("goverse-harness up: only --platform local is supported by 'up' here", file=sys.stderr)
        return 2
    # Not a run: its logs go under ARTIFACTS/up/, and artifacts/latest keeps pointing at the last run.
    stack_dir = Path(settings.artifacts) / "up" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    spec = settings.stack_spec(fault_proxies=not settings.keep_stack)  # in-process proxies die with us
    print(f"deploying {spec.stack} stack: {spec.nodes} nodes, {spec.gates} gates, {spec.etcd_members} etcd, "
          f"{spec.shards} shards (logs in {stack_dir}/logs) ...", flush=True)
    dep = LocalPlatform().deploy(spec, stack_dir)
    try:
        ep = dep.endpoints()
        print("stack is ready:")
        for inst in dep.instances():
            addr = inst.api_url or inst.host
            ops = f"  ops {inst.ops_url} (/healthz /ready /metrics)" if inst.ops_url else ""
            print(f"  {inst.name:10s} {addr}{ops}")
        for url in ep.gates:
            print(f"  call:      curl -s -X POST {url}/api/v1/objects/call/Counter/Counter-demo/Increment "
                  f"-H 'Content-Type: application/json' -d '{{\"request\":\"{_INCREMENT_5}\"}}'  "
                  "(Increment by 5; docs/refstack.md)")
        if ep.inspector:
            print(f"  shards:    curl {ep.inspector}/shards")
        print(f"  etcd       {', '.join(ep.etcd)} (prefix {ep.prefix})")
        pw = getattr(dep, "_tmp", None)
        print(f"  postgres   {ep.postgres_dsn_redacted}" + (f" (password in {pw}/pg-password)" if pw else ""))
        if settings.keep_stack:
            record = dep.keep()
            print(f"--keep-stack: the stack keeps running; remove it with: goverse-harness down {record.stem}")
            return 0
        print("press Ctrl-C (or send SIGTERM) to tear down", flush=True)
        threading.Event().wait()  # until KeyboardInterrupt (SIGINT, or SIGTERM via harness.interrupts)
    except KeyboardInterrupt:
        pass
    finally:
        if not settings.keep_stack:
            print("tearing down ...", flush=True)
            dep.teardown()
            print("done: stack removed")
    return 0


def _cmd_down(args: argparse.Namespace, rest: list[str]) -> int:
    """Remove stacks kept by --keep-stack (`up --keep-stack` or `run --keep-stack`)."""
    from harness.platforms.local.keep import down, kept_stacks

    kept = [k["prefix"] for k in kept_stacks()]
    if not args.stack and not args.all:
        if not kept:
            print("no kept stack")
        for k in kept_stacks():
            print(f"{k['prefix']}: gates {', '.join(k.get('gates') or [])}; remove with: goverse-harness down "
                  f"{k['prefix']}")
        return 0
    wanted = kept if args.all else args.stack
    unknown = sorted(set(wanted) - set(kept))
    if unknown:
        print(f"goverse-harness down: no kept stack {', '.join(unknown)} (kept: {', '.join(kept) or 'none'})",
              file=sys.stderr)
        return 2
    for prefix in wanted:
        removed = down(prefix)
        print(f"{prefix}: removed {len(removed)}: {', '.join(removed)}")
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


def _cmd_bugs(args: argparse.Namespace, rest: list[str]) -> int:
    from harness.bugmatrix import bugs_main

    return bugs_main(rest)


def _cmd_explore(args: argparse.Namespace, rest: list[str]) -> int:
    from harness.explore.runner import explore_main

    return explore_main(rest)


def _cmd_refstack(args: argparse.Namespace, rest: list[str]) -> int:
    from harness.refstack.main import main as refstack_main

    return int(refstack_main(rest) or 0)


def _cmd_cluster(args: argparse.Namespace, rest: list[str]) -> int:
    """Kubernetes test clusters (kind/k3d/binaries): see harness/platforms/kubernetes/cluster_cli.py."""
    from harness.platforms.kubernetes.cluster_cli import main as cluster_main

    return cluster_main(rest)


COMMANDS = {
    "run": (_cmd_run, "run scenarios (pytest options pass through, e.g. -m e2e -k sigkill --bug NAME)"),
    "up": (_cmd_up, "deploy a local stack (run's options), print its addresses, tear down on Ctrl-C/SIGTERM"),
    "down": (_cmd_down, "remove stacks kept with --keep-stack (no argument: list them)"),
    "doctor": (_cmd_doctor, "show what this machine can do (etcd, Postgres, netns, nft, cgroups, ...)"),
    "cleanup": (_cmd_cleanup, "remove what local runs killed without teardown left (namespaces, cgroups, mounts)"),
    "report": (_cmd_report, "re-render a run directory's report; --compare BASELINE shows regressions"),
    "conformance": (_cmd_conformance, "run only the seed conformance checks and print the table"),
    "load-report": (_cmd_load_report, "standalone HTML load report of a run; --compare BASELINE flags regressions"),
    "bugs": (_cmd_bugs, "run each seeded bug against the scenarios meant to catch it (and the correct build): "
                        "caught k/N matrix; --repeat N, --only BUG, --quick (CI: one quick catcher each)"),
    "explore": (_cmd_explore, "random fault schedules (seeded, overlapping) against one stack, every checker on; "
                              "--seed S --budget 10m [--bug BUG] [--faults KINDS]; --replay DIR re-runs a failure"),
    "refstack": (_cmd_refstack, "run a reference-stack process: refstack node|gate|inspector --config F"),
    "cluster": (_cmd_cluster, "Kubernetes test cluster: cluster up|down|status|load-image [--provider ...]"),
}


# Subcommands whose arguments (including --help) belong to the program they front.
PASSTHROUGH = ("run", "up", "report", "refstack", "conformance", "load-report", "cluster", "bugs", "explore")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser (subcommands in PASSTHROUGH parse their own arguments)."""
    p = argparse.ArgumentParser(prog="goverse-harness",
                                description="Conformance and chaos test harness for Goverse deployments.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_fn, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_, add_help=name not in PASSTHROUGH)
        if name == "down":
            sp.add_argument("stack", nargs="*", help="kept stack prefix (see `goverse-harness down`)")
            sp.add_argument("--all", action="store_true", help="remove every kept stack")
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
    install_sigterm_as_interrupt()
    try:
        return fn(args, rest)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: whatever was started has been torn down
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"goverse-harness {args.command}: {what}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # `... | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the interpreter's flush at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
