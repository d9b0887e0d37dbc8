"""Day-2 operations on a running local stack: scale, roll out config, rotate the PostgreSQL password,
upgrade and roll back, back up, wipe, restore, lose a data volume (seed §6.1, §6.2, §7.1).

Why a module of operations rather than faults: these are what an operator does on purpose, and each one
has a *procedure* whose correctness the harness also judges — a rolling restart that takes two instances
down at once, a rotation that leaves sessions authenticated with the old secret, a restore that does not
return what was acknowledged before the backup. So every operation

- records its window(s) into the scenario's history (``nemesis`` start/stop events, one window per
  instance for rolling operations) so the report shades them and checkers can judge them offline;
- records what it observed (versions scraped from ``/metrics``, the log level in effect, the sessions
  PostgreSQL holds, the values a restore brought back) as ``sample`` events, never a secret;
- waits on conditions with deadlines (``harness.waiting``), never on fixed sleeps.

This module is the local implementation only. The contract and result types are in
``harness/platforms/operations.py`` (with the pure procedure helpers: rolling order, ``/metrics`` and log
parsing, RPO); the checkers that judge the recorded windows and samples in ``harness/checkers/operations.py``;
the tools (etcdctl, pg_dump) in ``tools.py``. Kubernetes implements the same ``Operations`` surface in
``harness/platforms/kubernetes/operations.py`` (a ConfigMap/Secret patch + rollout, StatefulSet and
Deployment replicas).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import requests

from harness.operation_kinds import (
    CONFIG_F,
    RESTART_ROLL_KIND,
    ROTATE_KIND,
    SECRET_F,
    VERSIONS_F,
)
from harness.platforms.base import Unsupported
from harness.platforms.local.backup import BackupOperations
from harness.platforms.operations import (
    COMPONENT_ORDER,
    RollbackToPrevious,
    RollResult,
    RollStep,
    RotationResult,
    ScaleStep,
    last_run,
    level_in_effect,
    log_levels,
    parse_build_versions,
    rolling_order,
)
from harness.waiting import WaitTimeout, wait_until

log = logging.getLogger(__name__)
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class LocalOperations(RollbackToPrevious, BackupOperations):
    """Operator actions on a :class:`~harness.platforms.local.deploy.LocalDeployment` (the
    ``Operations`` contract): scaling, rolling restarts and upgrades, secret rotation here; backup and
    restore in :class:`BackupOperations`; ``recorder`` and ``on_endpoints`` as in :class:`OperationsBase`."""

    # ----------------------------------------------------------------------------------- scaling
    def scale(self, component: str, n: int, timeout: float | None = None,
              drain_endpoints: bool = True) -> ScaleStep:
        """Scale nodes or gates to ``n`` (new instances start, the highest ordinals stop gracefully),
        then wait until started instances are ready and, for nodes, until the shard map converged and
        is balanced over the running nodes. ``converged_s`` counts from the start of the step;
        ``None`` if it did not converge within ``timeout`` (default 2× the convergence budget) — the
        step is not aborted, the checkers judge it.

        Gates: added gates enter the endpoint list once ready. Removed gates leave it before they
        stop with ``drain_endpoints`` (a readiness-gated load balancer), else only after they stopped
        (an endpoint controller that lags), so their clients must fail over by themselves."""
        if component not in ("node", "gate"):
            raise Unsupported(f"scale: only node and gate scale, got {component!r}")
        timeout = timeout if timeout is not None else 2 * self._converge_budget()
        before = len(self.running(component))
        map_before = self.dep.shard_map()
        t0 = time.monotonic()
        with self.window(f"scale-{component}", component, {"from": before, "to": n}) as res:
            if component == "gate" and n < before and drain_endpoints:  # out of the list before they stop
                leaving = self.running("gate")[n:]
                self._publish_endpoints(exclude=leaving)
            changed = self.dep.scale(component, n)
            res.update(to=n, changed=changed)
            converged: float | None = None
            try:
                for name in changed:
                    if self._proc(name).instance.running:
                        self.wait_instance_ready(name, max(1.0, timeout - (time.monotonic() - t0)))
                if component == "node":
                    self.dep.wait_converged(max(1.0, timeout - (time.monotonic() - t0)), balanced=True)
                converged = round(time.monotonic() - t0, 3)
            except WaitTimeout as exc:
                res["wait_error"] = str(exc)[:300]
            if component == "gate":
                self._publish_endpoints()
            res["converged_s"] = converged
        return ScaleStep(component, before, n, changed, converged, map_before, self.dep.shard_map())

    # --------------------------------------------------------------------------- rolling restarts
    def _restart_one(self, name: str, apply: Callable[[Any], None], timeout: float) -> tuple[int | None, float]:
        """Stop gracefully, apply the change, start, wait for /ready and (nodes) for a balanced shard
        map: the next instance goes down only after this returns."""
        p = self._proc(name)
        gate = p.instance.component == "gate"
        if gate:
            self._publish_endpoints(exclude=[name])
        code = self.dep.stop(name, graceful=True)
        apply(p)
        self.dep.start(name)
        t0 = time.monotonic()
        self.wait_instance_ready(name, timeout)
        if p.instance.component == "node":
            self.dep.wait_converged(max(1.0, timeout - (time.monotonic() - t0)), balanced=True)
        if gate:
            self._publish_endpoints()
        return code, time.monotonic() - t0

    def _roll(self, kind: str, apply: Callable[[Any], None], params: dict[str, Any],
              components: Sequence[str] = COMPONENT_ORDER, timeout: float | None = None) -> list[RollStep]:
        # Generous on purpose: how long each instance took is recorded (``ready_s``), not judged here; the
        # wait only halts a roll whose instance does not come back at all.
        timeout = timeout if timeout is not None else 2 * self._converge_budget()
        names = [n for n in self.running() if self._proc(n).instance.component in components]
        order = rolling_order([(n, self._proc(n).instance.component) for n in names], self._leader())
        steps = []
        for i, name in enumerate(order, 1):
            with self.window(kind, name, {**params, "step": i, "of": len(order)}) as res:
                t_down = self._now()
                code, ready_s = self._restart_one(name, apply, timeout)
                res.update(exit_code=code, ready_s=round(ready_s, 3))
                steps.append(RollStep(name, t_down, self._now(), code))
        return steps

    def _log_offsets(self, names: Iterable[str]) -> dict[str, int]:
        out = {}
        for n in names:
            path = Path(self._proc(n).instance.log_path or "")
            out[n] = path.stat().st_size if path.exists() else 0
        return out

    def _log_since(self, name: str, offset: int) -> str:
        path = Path(self._proc(name).instance.log_path or "")
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def update_config(self, key: str, value: str, components: Sequence[str] = COMPONENT_ORDER,
                      timeout: float | None = None) -> RollResult:
        """Change one setting delivered through the environment (``LOG_LEVEL``, ``GOVERSE_*``: what a
        ConfigMap mounted as env vars carries) and roll it out one instance at a time, each restarted
        gracefully and ready before the next goes down. For ``LOG_LEVEL`` the new value is then
        verified on every instance from the log lines it wrote since its restart."""
        if not _ENV_KEY.match(key):
            raise Unsupported(f"update_config: {key!r} is not an environment setting (LOG_LEVEL, GOVERSE_*); "
                              "file settings are rendered from the StackSpec at deploy time")
        names = [n for n in self.running() if self._proc(n).instance.component in components]
        offsets: dict[str, int] = {}
        before: dict[str, tuple[str | None, str]] = {}  # name -> (old value, what its last run logged)

        def apply(p: Any) -> None:  # between stop and start: the old process's shutdown lines are before
            name = p.instance.name
            offsets.update(self._log_offsets([name]))
            stack_env = getattr(self.dep, "_stack_env", None)  # the stack's own default (LOG_LEVEL=info)
            old = p.env.get(key, stack_env().get(key) if stack_env is not None else None)
            before[name] = (old, last_run(self._log_since(name, 0)))
            p.env[key] = value

        steps = self._roll("config-update", apply, {"key": key, "value": value}, components, timeout)
        verified: dict[str, Any] = {}
        if key == "LOG_LEVEL":
            for n in names:
                old, old_text = before.get(n, (None, ""))
                ok, why = level_in_effect(log_levels(self._log_since(n, offsets.get(n, 0))), value,
                                          before=log_levels(old_text), before_value=old)
                verified[n] = {"ok": ok, "why": why}
        else:
            verified = {n: {"ok": self._proc(n).env.get(key) == value and self._proc(n).instance.running,
                            "why": "set in the instance's environment at its restart (no runtime probe)"}
                        for n in names}
        self._sample(CONFIG_F, {"key": key, "value": value, "instances": verified})
        return RollResult("config-update", steps, verified)

    def config_value(self, key: str, components: Sequence[str] = COMPONENT_ORDER) -> dict[str, str | None]:
        """The value of ``key`` in each running instance's environment as it was started: its own
        override, else the stack-wide environment every instance gets (``None``: not set)."""
        stack_env = self.dep._stack_env()
        return {n: self._proc(n).env.get(key, stack_env.get(key)) for n in self.running()
                if self._proc(n).instance.component in components}

    def rolling_restart(self, components: Sequence[str] = ("node",), timeout: float | None = None) -> RollResult:
        """Restart every running instance of ``components`` with the roll's procedure and nothing
        changed in between (a ``kubectl rollout restart``)."""
        steps = self._roll(RESTART_ROLL_KIND, lambda p: None, {}, components, timeout)
        return RollResult(RESTART_ROLL_KIND, steps, {n.name: {"exit_code": n.exit_code} for n in steps})

    # ------------------------------------------------------------------------------- versions
    def versions(self) -> dict[str, list[str]]:
        """Versions each running instance reports on ``/metrics`` (``goverse_build_info``)."""
        out: dict[str, list[str]] = {}
        for n in self.running():
            p = self._proc(n)
            try:
                text = requests.get(f"{p.instance.ops_url}/metrics", timeout=2).text
                out[n] = sorted(parse_build_versions(text))
            except requests.RequestException as exc:
                out[n] = [f"<unreachable: {type(exc).__name__}>"]
        return out

    def version_of(self, name: str) -> str:
        p = self._proc(name)
        return p.version if p.version is not None else str(self.dep.spec.version)

    def rolling_upgrade(self, version: str, components: Sequence[str] = COMPONENT_ORDER,
                        timeout: float | None = None, kind: str = "rolling-upgrade") -> RollResult:
        """Replace every instance, one at a time and each ready before the next, with ``version``;
        then scrape ``/metrics`` of every instance and record what they report (sample ``versions``).

        The reference stack's version is a tag on the same binary; real Goverse is rolled onto the same
        binaries it runs (the harness takes one build per component), so on it ``version`` only labels
        the roll: the procedure under load is what is tested, and since Goverse exports no version
        (capabilities ``build_version``), ``version_everywhere`` is not applicable there."""
        if not version or not re.fullmatch(r"[\w.+-]+", version):
            raise ValueError(f"version must be a plain tag, got {version!r}")
        names = [n for n in self.running() if self._proc(n).instance.component in components]
        previous = {n: self.version_of(n) for n in names}

        def apply(p: Any) -> None:
            p.version = version

        steps = self._roll(kind, apply, {"version": version}, components, timeout)
        if kind == "rolling-upgrade":
            self._previous_versions = previous
        seen = self.versions()
        self._sample(VERSIONS_F, {"expected": version, "instances": {n: seen.get(n, []) for n in names}})
        return RollResult(kind, steps, {"versions": seen, "previous": previous})

    # -------------------------------------------------------------------------------- secrets
    def _pg_sessions(self) -> list[tuple[str, str | None, Any]]:
        """(application_name, client_addr, backend_start) of the application role's sessions."""
        pg = self.dep.postgres
        with pg.admin_connect() as conn:
            rows = conn.execute("SELECT application_name, host(client_addr), backend_start FROM pg_stat_activity "
                                "WHERE usename = %s", (pg.user,)).fetchall()
        return [(r[0] or "", r[1], r[2]) for r in rows]

    def _node_of_session(self) -> Callable[[str, str | None], str | None]:
        """Map a session to the node that opened it: by its ``application_name`` (the reference
        stack's ``refstack-<node id>``, real Goverse's ``goverse-<node>`` from the PGAPPNAME the local
        deployment sets), else by its client IP (which names the node only when it connects from its
        own network namespace without the TCP fault proxy in between)."""
        nodes = self.running("node")
        by_app = {f"{prefix}-{n}": n for n in nodes for prefix in ("refstack", "goverse")}  # goverse: PGAPPNAME
        by_ip = {self._proc(n).instance.host: n for n in nodes} if self.dep.network is not None else {}
        return lambda app, ip: by_app.get(app) or by_ip.get(ip or "")

    def _server_now(self) -> Any:
        with self.dep.postgres.admin_connect() as conn:
            return conn.execute("SELECT clock_timestamp()").fetchone()[0]

    def _login_works(self, password: str) -> tuple[bool | None, str]:
        """Try one new TCP login as the application role: True, False (authentication refused) or
        None (some other error — the test is inconclusive). The message never contains the password."""
        pg = self.dep.postgres
        try:
            with psycopg.connect(pg.dsn(password=password), connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return True, "login succeeded"
        except psycopg.OperationalError as exc:
            text = str(exc).replace(password, "***")
            if "password authentication failed" in text:
                return False, "password authentication failed"
            return None, text.splitlines()[-1][:200] if text else type(exc).__name__

    def postgres_password(self) -> str:
        """The application role's current password, from the stack's password file (memory only)."""
        assert self.dep.topology is not None
        return Path(self.dep.topology.pg_password_file).read_text(encoding="utf-8").strip()

    def rotate_postgres_password(self, reload_timeout: float | None = None,
                                 reconnect_timeout: float | None = None) -> RotationResult:
        """Rotate the application role's password under load, the way an operator does:

        1. write the new password to the stack's password file (atomically: write + rename);
        2. ``ALTER ROLE`` to the new password (sessions already open stay open);
        3. SIGHUP every node (the stack also notices the file change by itself) and wait until each
           node holds a session opened after the ALTER and none opened before it is left;
        4. revoke what is left of the old secret: terminate the sessions opened before the ALTER;
        5. prove it: a login with the old password is rejected, one with the new password works, and
           every node holds a session opened with the new password (after step 4 only those exist).

        Neither password is ever logged or recorded; the sample ``secret-rotation`` holds outcomes only.
        """
        dep = self.dep
        pg = dep.postgres
        assert dep.topology is not None
        reload_timeout = reload_timeout if reload_timeout is not None else 8 * self.timers.tick + 3.0
        reconnect_timeout = reconnect_timeout if reconnect_timeout is not None else 8 * self.timers.tick + 3.0
        pw_file = Path(dep.topology.pg_password_file)
        old = pw_file.read_text(encoding="utf-8").strip()
        new = secrets.token_urlsafe(24)
        node_of = self._node_of_session()
        with self.window(ROTATE_KIND, "postgres", {"role": pg.user, "password_file": pw_file.name}) as res:
            tmp = pw_file.with_name(pw_file.name + ".new")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(new)
            tmp.replace(pw_file)
            pg.set_password(new)
            dep._pg_password = new
            t_alter = self._server_now()
            t0 = time.monotonic()
            if dep.spec.stack == "goverse":
                # Real Goverse reads its password only from its config file and cannot reload it (a
                # SIGHUP ends a Go process that does not handle it): an operator rolls the nodes onto
                # the new config, one at a time, each ready before the next.
                dep.topology.pg_password = new
                dep._write_config()
                self._roll("secret-rollout", lambda p: None, {}, ("node",), None)
            else:
                for n in self.running("node"):
                    with contextlib.suppress(ProcessLookupError):
                        dep.process(n).signal(signal.SIGHUP)

            def reloaded() -> bool:
                fresh, stale = set(), 0
                for app, ip, started in self._pg_sessions():
                    node = node_of(app, ip)
                    if node is None:
                        continue
                    if started >= t_alter:
                        fresh.add(node)
                    else:
                        stale += 1
                return fresh >= set(self.running("node")) and stale == 0

            reload_s: float | None
            try:
                wait_until(reloaded, reload_timeout, "every node on a session opened after the ALTER", interval=0.1)
                reload_s = round(time.monotonic() - t0, 3)
            except WaitTimeout:
                reload_s = None
            with pg.admin_connect() as conn:
                stale_rows = conn.execute(
                    "SELECT application_name, state, clock_timestamp() - backend_start, pg_terminate_backend(pid) "
                    "FROM pg_stat_activity WHERE usename = %s AND backend_start < %s", (pg.user, t_alter)).fetchall()
            revoked = len(stale_rows)
            stale = [{"application_name": r[0], "state": r[1], "age_s": round(r[2].total_seconds(), 3)}
                     for r in stale_rows]
            old_ok, old_msg = self._login_works(old)
            new_ok, new_msg = self._login_works(new)

            def on_new() -> dict[str, bool]:
                have = {node_of(app, ip) for app, ip, started in self._pg_sessions() if started >= t_alter}
                return {n: n in have for n in self.running("node")}

            with contextlib.suppress(WaitTimeout):  # not reached: the sample below says which nodes
                wait_until(lambda: all(on_new().values()), reconnect_timeout, "every node on a new-password session",
                           interval=0.1)
            nodes_on_new = on_new()
            result = RotationResult(reload_s, revoked, old_ok is False, new_ok is True, nodes_on_new)
            summary = {"reload_s": reload_s, "revoked": revoked, "old_rejected": old_ok is False,
                       "old_login": old_msg, "new_accepted": new_ok is True, "new_login": new_msg,
                       "nodes_on_new": nodes_on_new, "revoked_sessions": stale[:20]}
            res.update(summary)
        self._sample(SECRET_F, summary)
        return result
