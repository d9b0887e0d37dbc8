"""The pytest plugin: options, settings, the run directory, stack and scenario fixtures, the report.

Why a plugin (registered through the ``pytest11`` entry point): users run scenarios with plain
``pytest -m e2e`` as well as through ``goverse-harness run``; both must give the same run directory and
report. Fixtures own lifetimes — the stack per module (a module may ask for its own topology with a
``STACK`` dict), the scenario per test — and the platform, stack kind and seeded bugs come from options,
never from scenario code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import random as hrand
from harness.settings import KNOWN_BUGS, Settings, SettingsError, load_settings

log = logging.getLogger("harness")

RUN_DIR_ENV = "GVH_RUN_DIR"
_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--platform", dict(help="where the stack runs: local | kind | kubernetes (default local)")),
    ("--stack", dict(help="system under test: reference | goverse (default reference)")),
    ("--nodes", dict(type=int, help="number of Goverse nodes (default 3)")),
    ("--gates", dict(type=int, help="number of gates (default 2)")),
    ("--shards", dict(type=int, help="shard count (default 64)")),
    ("--etcd-members", dict(type=int, help="etcd members: 1 or 3")),
    ("--artifacts", dict(help="artifacts directory (default ./artifacts)")),
    ("--keep-stack", dict(action="store_true", default=None, help="leave the stack running after the run")),
    ("--seed", dict(type=int, help="seed for every random choice (recorded in run.json)")),
    ("--bug", dict(action="append", dest="bugs", default=None,
                   help=f"seeded bug of the reference stack (repeatable): {', '.join(KNOWN_BUGS)}")),
    ("--goverse-node-bin", dict(help="path of your Goverse node binary (stack=goverse)")),
    ("--goverse-gate-bin", dict(help="path of the Goverse gate binary (stack=goverse)")),
    ("--goverse-inspector-bin", dict(help="path of the Goverse inspector binary (stack=goverse)")),
    ("--goverse-pgadmin-bin", dict(help="path of Goverse's pgadmin, run as `init` before nodes start (stack=goverse)")),
    ("--goverse-persistence-interval", dict(type=float, help="seconds; passed to the node as --persistence-interval "
                                                               "(goverse-app; default: Goverse's 5 min)")),
    ("--object-type", dict(help="object type the workload calls (default Counter)")),
    ("--gvh-config", dict(help="YAML file with harness settings")),
    ("--kube-context", dict(help="kubeconfig context (platform kubernetes)")),
    ("--allow-context", dict(help="allow chaos in this non-test-looking kube context")),
    ("--cluster-name", dict(help="kind cluster name")),
    ("--keep-cluster", dict(action="store_true", default=None, help="keep a kind cluster the run created")),
    ("--image", dict(help="reference-stack image for Kubernetes")),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("goverse-harness", "Goverse conformance and chaos harness")
    for flag, kw in _OPTIONS:
        group.addoption(flag, **kw)


def _cli_values(config: pytest.Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, kw in _OPTIONS:
        if flag == "--gvh-config":
            continue
        dest = kw.get("dest") or flag.lstrip("-").replace("-", "_")
        value = config.getoption(dest, default=None)
        if value is not None:
            out[dest] = value
    return out


def pytest_configure(config: pytest.Config) -> None:
    try:
        settings = load_settings(_cli_values(config), config_file=config.getoption("gvh_config", None))
    except SettingsError as exc:
        raise pytest.UsageError(f"goverse-harness: {exc}") from None
    config.stash[_SETTINGS] = settings
    hrand.seed(settings.seed)
    if _is_controller(config) and threading_main():
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM must clean up exactly like Ctrl-C: fixtures' finalizers tear the stack down."""
    raise KeyboardInterrupt(f"signal {signum}")


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


_SETTINGS = pytest.StashKey[Settings]()
_RUN_DIR = pytest.StashKey[Path]()


def _run_dir(config: pytest.Config) -> Path:
    """The run directory, created lazily once by the controller and shared with xdist workers."""
    if _RUN_DIR in config.stash:
        return config.stash[_RUN_DIR]
    from harness.report.store import create_run_dir

    existing = os.environ.get(RUN_DIR_ENV)
    if existing:
        path = Path(existing)
        path.mkdir(parents=True, exist_ok=True)
    else:
        settings = config.stash[_SETTINGS]
        path = create_run_dir(settings.artifacts)
        os.environ[RUN_DIR_ENV] = str(path)
    config.stash[_RUN_DIR] = path
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # Only runs that actually deploy need a run directory; creating it here (controller) lets xdist
    # workers inherit the path through the environment.
    if _is_controller(session.config) and _wants_run_dir(session.config):
        _run_dir(session.config)
        if session.config.stash[_SETTINGS].platform == "local":
            _sweep_dead_runs()


def _sweep_dead_runs() -> None:
    """A run killed with SIGKILL could not clean up; the next run does (only runs whose owner is dead)."""
    from harness.platforms.local.sweep import sweep_dead_runs

    try:
        swept = sweep_dead_runs()
    except Exception:  # noqa: BLE001 - a failed sweep must not stop the run; it is logged
        log.exception("sweeping the leftovers of dead runs failed")
        return
    for prefix, removed in swept.items():
        log.warning("removed what dead run %s left behind: %s", prefix, ", ".join(removed) or "its ownership mark")


def _wants_run_dir(config: pytest.Config) -> bool:
    if config.getoption("collectonly", False):
        return False  # listing scenarios deploys nothing: no run directory, no sweep
    args = " ".join(str(a) for a in config.args)
    return "scenarios" in args or bool(os.environ.get(RUN_DIR_ENV))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not _is_controller(config) or _RUN_DIR not in config.stash:
        return
    from harness.report.store import finalize_run

    settings = config.stash[_SETTINGS]
    run_dir = config.stash[_RUN_DIR]
    try:
        summary = finalize_run(run_dir, settings=settings.public(), platform=settings.platform,
                               stack=settings.stack)
    except Exception as exc:  # noqa: BLE001 - a broken report must not hide the test outcome
        log.exception("writing the report failed")
        summary = f"report could not be written: {exc!r}"
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None and summary:
        tr.write_sep("=", "goverse-harness")
        tr.write_line(str(summary))
        tr.write_line(f"run directory: {run_dir}")


# ---- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def settings(request: pytest.FixtureRequest) -> Settings:
    return request.config.stash[_SETTINGS]


@pytest.fixture(scope="session")
def run_dir(request: pytest.FixtureRequest) -> Path:
    return _run_dir(request.config)


@pytest.fixture(scope="session")
def platform(settings: Settings) -> Any:
    if settings.platform == "local":
        from harness.platforms.local.deploy import LocalPlatform

        return LocalPlatform()
    from harness.platforms.kubernetes import make_platform

    return make_platform(settings)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, settings: Settings, platform: Any, run_dir: Path) -> Iterator[Any]:
    """The deployed stack for one scenario module. ``STACK = {...}`` in the module overrides the spec."""
    overrides = dict(getattr(request.module, "STACK", {}) or {})
    overrides.setdefault("fault_proxies", not settings.keep_stack)  # in-process proxies die with us
    spec = settings.stack_spec(**overrides)
    name = request.module.__name__.rsplit(".", 1)[-1]
    stack_dir = run_dir / "stacks" / name
    stack_dir.mkdir(parents=True, exist_ok=True)
    _progress(request.config, f"deploying {spec.stack} stack for {name}: {spec.nodes} nodes, {spec.gates} gates, "
              f"{spec.etcd_members} etcd, {spec.shards} shards{' bugs=' + ','.join(spec.bugs) if spec.bugs else ''}")
    dep = platform.deploy(spec, stack_dir)
    took = getattr(dep, "timings", {}).get("total_s")
    _progress(request.config, f"stack for {name} ready" + (f" in {took:.1f}s" if took else ""))
    try:
        yield dep
    finally:
        if settings.keep_stack:
            log.warning("--keep-stack: leaving %s running (logs in %s)", name, stack_dir)
        else:
            dep.teardown()


def _progress(config: pytest.Config, message: str) -> None:
    """A progress line on the terminal even while output is captured (long waits must show life)."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if tr is None or config.getoption("verbose", 0) < 0:
        return
    ctx = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
    with ctx:
        tr.write_line(f"[goverse-harness] {message}")


def _scenario_id(item: pytest.Item) -> str:
    name = item.nodeid.split("::", 1)[-1]
    module = Path(item.nodeid.split("::", 1)[0]).stem.removeprefix("test_")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{module}.{name}").strip("-")


@pytest.fixture
def scenario(request: pytest.FixtureRequest, stack: Any, settings: Settings, run_dir: Path) -> Iterator[Any]:
    """A fresh scenario (history, workload factory, nemesis) against the module's stack. After the
    test, anything left running is stopped, every fault healed, and the stack must have converged
    before the next scenario uses it."""
    from harness.scenario import Scenario

    injector = _injector_for(stack)
    sid = _scenario_id(request.node)
    sc = Scenario(sid, run_dir / sid, stack, injector, settings, seed_tag=f"{abs(hash(sid)) % 10**6:06d}")
    request.node.stash[_SCENARIO] = sc
    try:
        yield sc
    finally:
        sc.nemesis.heal_all()
        for wl in sc.workloads:
            with contextlib.suppress(Exception):
                wl.stop()


_SCENARIO = pytest.StashKey[Any]()


def _injector_for(stack: Any) -> Any:
    inj = getattr(stack, "injector", None)
    if callable(inj):
        return inj()
    from harness.faults.local_injector import LocalInjector

    return LocalInjector(stack)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    sc = item.stash.get(_SCENARIO, None)
    if sc is None or sc.concluded:
        return report
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            sc.record_outcome("skipped", str(reason))
        elif report.failed:
            sc.record_outcome("fail" if call.excinfo and call.excinfo.errisinstance(AssertionError)
                              else "unknown", _short_repr(report))
        else:
            sc.record_outcome("unknown", "scenario finished without concluding any check")
    return report


def _short_repr(report: pytest.TestReport) -> str:
    text = str(report.longrepr or "")
    lines = [ln for ln in text.splitlines() if ln.startswith("E ")]
    return "\n".join(ln[2:].strip() for ln in lines[:12]) or text[-1500:]
