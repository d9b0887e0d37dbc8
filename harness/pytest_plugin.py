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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness import random as hrand
from harness.interrupts import install_sigterm_as_interrupt
from harness.platforms.base import Unsupported
from harness.settings import KNOWN_BUGS, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from harness.platforms.base import Deployment, Platform
    from harness.scenario import Scenario

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
    ("--starved-lag-ms", dict(type=float, help="harness lag (ms) above which a scenario is unknown, 'harness "
                                                "starved' (default 250; 10..60000)")),
    ("--strict-unknown", dict(action="store_true", default=None,
                              help="a scenario unknown because the harness was starved fails the run (default: "
                                   "reported, not a failure)")),
    ("--observer-priority", dict(action="store_true", default=None,
                                 help="Kubernetes: run the harness in a cpu cgroup of the largest weight so a "
                                      "loaded machine starves its probes less (root, a cpu cgroup controller)")),
    ("--object-type", dict(help="object type the workload calls (default Counter)")),
    ("--gvh-config", dict(help="YAML file with harness settings")),
    ("--kube-context", dict(help="kubeconfig context (platform kubernetes)")),
    ("--allow-context", dict(help="allow chaos in this non-test-looking kube context")),
    ("--cluster-name", dict(help="kind cluster name")),
    ("--keep-cluster", dict(action="store_true", default=None,
                            help="keep a cluster the run created (kind; the binaries cluster --platform kubernetes "
                                 "brings up when none answers)")),
    ("--image", dict(help="reference-stack image for Kubernetes")),
    ("--deploy-with", dict(help="Kubernetes: deploy the stack with kustomize (manifests/, default) or helm "
                                "(charts/goverse)")),
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


# Registered by the plugin (not only in this repository's pyproject) so that scenario files kept in
# another repository -- Goverse's own, say -- use them without PytestUnknownMarkWarning.
MARKERS = {
    "e2e": "end-to-end scenario against a deployed stack (every scenario family carries it)",
    "chaos": "fault-injection scenario",
    "conformance": "seed requirement checks against a deployed stack",
    "load": "load-testing scenario",
    "k8s": "needs a reachable Kubernetes cluster",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, help_ in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_}")
    try:
        settings = load_settings(_cli_values(config), config_file=config.getoption("gvh_config", None))
    except SettingsError as exc:
        raise pytest.UsageError(f"goverse-harness: {exc}") from None
    config.stash[_SETTINGS] = settings
    hrand.seed(settings.seed)
    # SIGTERM must clean up exactly like Ctrl-C -- in xdist workers too, which hold stacks of their own
    # and get the signal when CI or `timeout` signals the whole process group.
    install_sigterm_as_interrupt()
    _forward_phase_logs(config)


class _PhaseLines(logging.Handler):
    """Fault injected / healed as a progress line (no --log-cli-level needed; -q silences it)."""

    def __init__(self, config: pytest.Config) -> None:
        super().__init__(logging.INFO)
        self.config = config

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            _progress(self.config, "  " + record.getMessage())


PHASE_LOGGERS = ("harness.faults.nemesis",)


def _forward_phase_logs(config: pytest.Config) -> None:
    handler = _PhaseLines(config)
    for name in PHASE_LOGGERS:
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)

    def remove() -> None:
        for name in PHASE_LOGGERS:
            logging.getLogger(name).removeHandler(handler)

    config.add_cleanup(remove)


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
        latest = Path(settings.artifacts) / "latest"
        config.stash[_PREV_LATEST] = os.readlink(latest) if latest.is_symlink() else None
        path = create_run_dir(settings.artifacts)
        config.stash[_OWN_RUN_DIR] = True
        os.environ[RUN_DIR_ENV] = str(path)
    config.stash[_RUN_DIR] = path
    return path


_PREV_LATEST = pytest.StashKey[str | None]()
_OWN_RUN_DIR = pytest.StashKey[bool]()


def _drop_if_empty(config: pytest.Config, run_dir: Path) -> bool:
    """A run in which no scenario ran and nothing was deployed (a -k that matched nothing, a usage
    error) leaves no directory behind, and ``latest`` goes back to where it pointed before."""
    import shutil

    from harness.report.files import RESULT_FILE

    if not config.stash.get(_OWN_RUN_DIR, False) or any(run_dir.glob(f"*/{RESULT_FILE}")) \
            or any(p.is_file() for p in (run_dir / "stacks").rglob("*")):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    latest = run_dir.parent.parent / "latest"
    prev = config.stash.get(_PREV_LATEST, None)
    with contextlib.suppress(OSError):
        if os.readlink(latest) == os.path.relpath(run_dir, latest.parent):
            latest.unlink()
            if prev is not None:
                latest.symlink_to(prev)
    os.environ.pop(RUN_DIR_ENV, None)
    return True


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
    from harness.report.finalize import finalize_run

    settings = config.stash[_SETTINGS]
    run_dir = config.stash[_RUN_DIR]
    if _drop_if_empty(config, run_dir):
        return
    try:
        summary = finalize_run(run_dir, settings=settings.public(), platform=settings.platform,
                               stack=settings.stack)
    except Exception as exc:  # noqa: BLE001 - a broken report must not hide the test outcome
        log.exception("writing the report failed")
        summary = f"report could not be written: {exc!r}"
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None and summary:
        tr.ensure_newline()
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
def platform(settings: Settings) -> Iterator[Platform]:
    if settings.platform == "local":
        from harness.platforms.local.deploy import LocalPlatform

        yield LocalPlatform()
        return
    from harness.platforms.kubernetes import make_platform

    with _observer_priority(settings.observer_priority):
        yield make_platform(settings)


@contextlib.contextmanager
def _observer_priority(wanted: bool) -> Iterator[None]:
    """``--observer-priority``: this process (and what it starts) in a cpu cgroup of the largest weight
    for the session, moved back and the group removed at its end (Ctrl-C included)."""
    if not wanted:
        yield
        return
    from harness.platforms.base import PlatformError, Unsupported
    from harness.platforms.local.cgroups import OBSERVER_PREFIX, CpuWeight, sweep_dead_observers

    try:
        for gone in sweep_dead_observers():
            log.warning("removed the observer group of a dead run: %s", gone)
        weight = CpuWeight(OBSERVER_PREFIX, str(os.getpid()), os.getpid()).apply()
    except (Unsupported, PlatformError, OSError) as exc:
        raise pytest.UsageError(f"goverse-harness: observer_priority: cannot raise the harness's CPU weight: "
                                f"{exc} (needs root and a cpu cgroup controller)") from None
    log.info("observer priority: cpu weight %d in %s", weight.weight(), weight.group)
    try:
        yield
    finally:
        weight.heal()


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, settings: Settings, platform: Platform,
          run_dir: Path) -> Iterator[Deployment]:
    """The deployed stack for one scenario module. ``STACK = {...}`` in the module overrides the spec."""
    overrides = dict(getattr(request.module, "STACK", {}) or {})
    overrides.setdefault("fault_proxies", not settings.keep_stack)  # in-process proxies die with us
    overrides.setdefault("disk_faults", not settings.keep_stack and _asks_disk_faults(request))
    spec = settings.stack_spec(**overrides)
    name = request.module.__name__.rsplit(".", 1)[-1]
    stack_dir = run_dir / "stacks" / name
    stack_dir.mkdir(parents=True, exist_ok=True)
    _progress(request.config, f"deploying {spec.stack} stack for {name}: {spec.nodes} nodes, {spec.gates} gates, "
              f"{spec.etcd_members} etcd, {spec.shards} shards{' bugs=' + ','.join(spec.bugs) if spec.bugs else ''}")
    try:
        dep = platform.deploy(spec, str(stack_dir))
    except Exception as exc:  # noqa: BLE001 - reported as one line (full text in a file), not 100 lines
        raise DeployError(_deploy_error_line(exc, stack_dir)) from None
    took = dep.timings.get("total_s")
    _progress(request.config, f"stack for {name} ready" + (f" in {took:.1f}s" if took else ""))
    try:
        yield dep
    finally:
        if settings.keep_stack:
            _keep(request.config, dep, name, stack_dir)
        else:
            dep.teardown()


def _asks_disk_faults(request: pytest.FixtureRequest) -> bool:
    return asks_disk_faults(request.session.items, request.module)


def asks_disk_faults(items: Iterable[Any], module: Any) -> bool:
    """Whether a selected scenario of ``module`` injects a disk fault (its ``fault`` parameter): then a
    platform that must prepare PostgreSQL's volume for it at deploy time (Kubernetes) does so."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is module and getattr(params.get("fault"), "kind", None) == "disk":
            return True
    return False


def _keep(config: pytest.Config, dep: Any, name: str, stack_dir: Path) -> None:
    """--keep-stack: a stack that stays usable after the run, and the lines that say how to reach and
    remove it."""
    keep = getattr(dep, "keep", None)
    if not callable(keep):
        log.warning("--keep-stack: leaving %s running (logs in %s)", name, stack_dir)
        return
    record = keep()
    ep = dep.endpoints()
    _progress(config, f"--keep-stack: {name}'s stack keeps running (record {record})")
    for url in ep.gates:
        _progress(config, f"  gate       {url}/api/v1/objects/call/<type>/<id>/<method>")
    if ep.inspector:
        _progress(config, f"  inspector  {ep.inspector}/shards")
    _progress(config, f"  etcd       {', '.join(ep.etcd)} (prefix {ep.prefix})")
    _progress(config, f"  postgres   {ep.postgres_dsn_redacted}")
    _progress(config, f"  remove it: goverse-harness down {record.stem}   (or: goverse-harness down --all)")


class DeployError(Exception):
    """The stack could not be deployed; its message is one line naming the reason and the full text."""


def _deploy_error_line(exc: BaseException, stack_dir: Path) -> str:
    """``deploy failed: <first line of the error> (full error: <file>)``; the file keeps every line."""
    import traceback

    text = "".join(traceback.format_exception(exc))
    path = stack_dir / "deploy-error.txt"
    with contextlib.suppress(OSError):
        path.write_text(text, encoding="utf-8")
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    if len(first) > 300:
        first = first[:297] + "..."
    return f"deploy failed: {type(exc).__name__}: {first} (full error: {path})"


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
def scenario(request: pytest.FixtureRequest, stack: Deployment, platform: Platform, settings: Settings,
             run_dir: Path) -> Iterator[Scenario]:
    """A fresh scenario (history, workload factory, nemesis) against the module's stack. After the
    test, anything left running is stopped, every fault healed, and the stack must have converged
    before the next scenario uses it."""
    from harness.report.store import RunDir
    from harness.scenario import Scenario

    sid = _scenario_id(request.node)
    # one naming scheme for scenario directories: the store's (readable, distinct for lossy ids)
    sdir = RunDir(run_dir).scenario_dir(request.node.nodeid)
    # the key tag comes from the run seed (not hash(), which is salted per process): --seed replays the keys
    sc = Scenario(sid, sdir, stack, platform.injector(stack), settings,
                  seed_tag=f"{hrand.fork(sid).randrange(10**6):06d}", platform=platform)
    request.node.stash[_SCENARIO] = sc
    _progress(request.config, f"{sid}: started (history in {sc.dir})")
    try:
        yield sc
    finally:
        sc.nemesis.heal_all()
        for wl in sc.workloads:
            with contextlib.suppress(Exception):
                wl.stop()


_SCENARIO = pytest.StashKey["Scenario"]()


_DURATION: pytest.StashKey[float] = pytest.StashKey()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """An operation or fault the platform cannot carry out raises ``Unsupported`` wherever the scenario
    meets it (not only inside ``unsupported_is_skip``): that is an explained skip with the platform's
    reason, never an error (DESIGN: a capability a platform lacks is a skip with the reason)."""
    try:
        return (yield)
    except Unsupported as exc:
        pytest.skip(f"unsupported on this platform: {exc}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    item.stash[_DURATION] = item.stash.get(_DURATION, 0.0) + float(report.duration or 0.0)
    if report.when == "teardown":
        _record_duration(item)
    try:
        return _starved_is_not_a_failure(item, call, _record_report(item, call, report))
    finally:
        if report.when == "call" and _SCENARIO in item.stash:
            _progress(item.config, f"{_scenario_id(item)}: {_outcome_word(item)} after "
                      f"{item.stash.get(_DURATION, 0.0):.1f}s")


STARVED_NOTE = "not a failure of the stack; --strict-unknown makes it fail the run"


def _starved_is_not_a_failure(item: pytest.Item, call: pytest.CallInfo[None], report: Any) -> Any:
    """A scenario whose only verdict is "unknown: harness starved" (``Scenario.conclude``: the machine,
    not the stack, made the measurement invalid) is reported to pytest as skipped with that reason, so
    the run does not fail on it; result.json, run.json (``summary.starved``), junit and the summary
    table still say unknown. ``--strict-unknown`` (setting ``strict_unknown``) keeps it a failure.
    Every other unknown still fails, and so does a starved scenario whose lag-independent checks failed
    (``kept_fail_of``: its verdict is fail, and pytest must say so too)."""
    sc: Any = item.stash.get(_SCENARIO, None)
    if (sc is None or report.when != "call" or not report.failed or not sc.concluded or sc.result is None
            or not sc.extra.get("starved") or sc.extra["starved"].get("kept_fail_of")
            or call.excinfo is None or not call.excinfo.errisinstance(AssertionError)
            or item.config.stash[_SETTINGS].strict_unknown):
        return report
    why = next((c.detail for c in sc.result.checks if c.name == "measurement_valid"), "harness starved")
    report.outcome = "skipped"
    report.longrepr = (str(item.path), item.location[1] or 0, f"unknown: {why} ({STARVED_NOTE})")
    return report


def _record_report(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> Any:
    sc = item.stash.get(_SCENARIO, None)
    if sc is None and report.when == "setup" and report.failed and call.excinfo is not None \
            and call.excinfo.errisinstance(DeployError) and RUN_DIR_ENV in os.environ:
        _record_deploy_error(item, str(call.excinfo.value))
        report.longrepr = str(call.excinfo.value)  # one line instead of the fixture's traceback
        return report
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


def _outcome_word(item: pytest.Item) -> str:
    import json

    from harness.report.files import RESULT_FILE

    sc: Any = item.stash.get(_SCENARIO, None)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return str(json.loads((sc.dir / RESULT_FILE).read_text(encoding="utf-8"))["verdict"]).upper()
    return "done"


def _record_deploy_error(item: pytest.Item, reason: str) -> None:
    """A scenario whose stack never came up is an error with its reason in run.json, junit and the report."""
    from harness.report.results import ScenarioResult, write_scenario_result
    from harness.report.store import scenario_dirname

    sid = _scenario_id(item)
    sr = ScenarioResult(id=sid, verdict="unknown", reason=reason, extra={"error": "deploy"})
    with contextlib.suppress(OSError):  # the scenario's own directory, where its duration is added
        write_scenario_result(Path(os.environ[RUN_DIR_ENV]) / scenario_dirname(item.nodeid), sr)


def _record_duration(item: pytest.Item) -> None:
    """The scenario's wall time (setup + call + teardown) into its result, for junit's time attribute."""
    import json

    from harness.report.files import RESULT_FILE, write_json
    from harness.report.store import scenario_dirname

    if RUN_DIR_ENV not in os.environ:
        return
    # the directory the scenario fixture wrote to (RunDir.scenario_dir of the node id), not the dotted
    # scenario id: with the id the path never existed and every junit time was 0
    path = Path(os.environ[RUN_DIR_ENV]) / scenario_dirname(item.nodeid) / RESULT_FILE
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("duration_s") is None:
            took: float = item.stash.get(_DURATION, 0.0)
            data["duration_s"] = round(took, 3)
            write_json(path, data)
