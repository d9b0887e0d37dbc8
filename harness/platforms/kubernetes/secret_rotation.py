"""Rotating the PostgreSQL password of a stack on Kubernetes, the way an operator does it there: the
``goverse-postgres`` Secret and the role's password change; the nodes pick the new password up from
the Secret file mounted into them (``GOVERSE_POSTGRES_PASSWORD_FILE``), without a restart.

How the reload is observed, and why it can take a while: the kubelet rewrites a mounted Secret's files
on its periodic pod sync (up to its sync period plus the Secret cache's TTL, ~60–90 s by default) or
sooner when the pod object changes. The rotation therefore touches an annotation on every node pod
(``SECRET_ANNOTATION``: an update event that makes the kubelet sync that pod now — an operator's
``kubectl annotate``), then waits, as a condition with a deadline, until every node holds a
PostgreSQL session opened after the ``ALTER ROLE`` and no session opened before it is left (what the
local procedure waits for). ``reload_s`` is that wait; the deadline covers the kubelet's slow path.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import psycopg

from harness.operation_kinds import ROTATE_KIND, SECRET_F
from harness.platforms.base import PlatformError
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import naming
from harness.platforms.kubernetes.opshelpers import session_node
from harness.platforms.operations import RotationResult
from harness.waiting import WaitTimeout, wait_until

SECRET = "goverse-postgres"
PASSWORD_KEY = "postgres-password"
SECRET_ANNOTATION = "goverse-harness/secret-rotated-at"
#: the kubelet's slow path: sync period (1 min) + Secret cache TTL + a start of the reload
KUBELET_REFRESH_S = 100.0


class SecretRotation:
    """The secret-rotation half of ``KubernetesOperations`` (which provides ``dep``, ``timers``,
    ``window``, ``_sample`` and ``running``)."""

    dep: Any
    timers: Any
    window: Callable[..., Any]
    _sample: Callable[[str, Any], None]
    running: Callable[..., list[str]]

    def postgres_password(self) -> str:
        """The application role's current password, from the Secret (memory only: for leak scans)."""
        return self._secret()[1]

    def _secret(self) -> tuple[str, str]:
        data = self.dep.core.read_namespaced_secret(SECRET, self.dep.namespace).data or {}
        user = base64.b64decode(data.get("postgres-user", "")).decode() or "goverse"
        password = base64.b64decode(data.get(PASSWORD_KEY, "")).decode()
        if not password:
            raise PlatformError(f"Secret {SECRET} has no {PASSWORD_KEY}")
        return user, password

    def _pg_address(self) -> tuple[str, int]:
        fwd = self.dep._forwards.get("postgres")
        if fwd is None:
            fwd = self.dep._forwards["postgres"] = self.dep._new_forward(
                lambda: naming.statefulset_pod("postgres", 0), 5432)
        host, port = fwd.address.rsplit(":", 1)
        return host, int(port)

    def _connect_once(self, user: str, password: str) -> psycopg.Connection[Any]:
        host, port = self._pg_address()
        return psycopg.connect(host=host, port=port, user=user, password=password, dbname="goverse",
                               connect_timeout=5, autocommit=True, application_name="goverse-harness")

    def _connect(self, user: str, password: str, timeout: float = 45.0) -> psycopg.Connection[Any]:
        """An administrative session, tried again while the forward or a starved PostgreSQL does not
        answer in time (the error text, which never holds the password, is in the timeout message)."""
        conn: psycopg.Connection[Any] = wait_until(lambda: self._connect_once(user, password), timeout,
                                                   "PostgreSQL accepts an administrative session", interval=0.5)
        return conn

    def _login_works(self, user: str, password: str) -> tuple[bool | None, str]:
        """One new TCP login: True, False (authentication refused) or None (inconclusive); the message
        never contains the password."""
        outcome: dict[str, tuple[bool | None, str]] = {}

        def attempt() -> bool:
            try:
                with self._connect_once(user, password) as conn:
                    conn.execute("SELECT 1")
                outcome["r"] = (True, "login succeeded")
            except psycopg.OperationalError as exc:
                text = str(exc).replace(password, "***")
                if "password authentication failed" in text:
                    outcome["r"] = (False, "password authentication failed")
                else:
                    outcome["r"] = (None, text.splitlines()[-1][:200] if text else type(exc).__name__)
            return outcome["r"][0] is not None

        with contextlib.suppress(WaitTimeout):  # inconclusive for 30 s: reported as such
            wait_until(attempt, 30.0, "a conclusive login attempt", interval=0.5)
        return outcome.get("r", (None, "no attempt finished"))

    def _touch_node_pods(self, stamp: str) -> None:
        for name in self.running("node"):
            with contextlib.suppress(Exception):  # a pod replaced meanwhile mounts the new Secret anyway
                k8s.patch_merge(self.dep.dyn, "v1", "Pod", self.dep.pod_name(name), self.dep.namespace,
                                {"metadata": {"annotations": {SECRET_ANNOTATION: stamp}}})

    def rotate_postgres_password(self, reload_timeout: float | None = None,
                                 reconnect_timeout: float | None = None) -> RotationResult:
        """1. patch the Secret with a new password; 2. ``ALTER ROLE`` (open sessions stay open);
        3. nudge the kubelet (pod annotation) and wait until every node holds a session opened after
        the ALTER and none from before is left; 4. terminate what is left of the old sessions;
        5. prove it: the old password is rejected, the new one works, every node is on a new session.
        Neither password is logged or recorded."""
        reload_timeout = reload_timeout if reload_timeout is not None else KUBELET_REFRESH_S + 8 * self.timers.tick
        reconnect_timeout = reconnect_timeout if reconnect_timeout is not None else 8 * self.timers.tick + 10.0
        user, old = self._secret()
        new = secrets.token_urlsafe(24)
        node_pods = {naming.statefulset_pod("node", int(n.rsplit("-", 1)[1])): n for n in self.running("node")}

        def sessions(password: str) -> list[tuple[str | None, Any]]:
            with self._connect(user, password) as conn:
                rows = conn.execute("SELECT application_name, backend_start FROM pg_stat_activity "
                                    "WHERE usename = %s AND pid <> pg_backend_pid()", (user,)).fetchall()
            return [(session_node(r[0] or "", node_pods), r[1]) for r in rows]

        with self.window(ROTATE_KIND, "postgres", {"role": user, "secret": SECRET}) as res:
            self.dep.patch_secret(SECRET, {PASSWORD_KEY: new})
            with self._connect(user, old) as conn:
                conn.execute(psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    psycopg.sql.Identifier(user), psycopg.sql.Literal(new)))
                t_alter = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
            t0 = time.monotonic()
            self._touch_node_pods(str(time.time()))

            def reloaded() -> bool:
                rows = [(n, s) for n, s in sessions(new) if n is not None]
                fresh = {n for n, s in rows if s >= t_alter}
                return fresh >= set(self.running("node")) and not any(s < t_alter for _n, s in rows)

            reload_s: float | None
            try:
                wait_until(reloaded, reload_timeout, "every node on a session opened after the ALTER", interval=0.2)
                reload_s = round(time.monotonic() - t0, 3)
            except WaitTimeout:
                reload_s = None
            with self._connect(user, new) as conn:
                stale_rows = conn.execute(
                    "SELECT application_name, state, clock_timestamp() - backend_start, pg_terminate_backend(pid) "
                    "FROM pg_stat_activity WHERE usename = %s AND backend_start < %s AND pid <> pg_backend_pid()",
                    (user, t_alter)).fetchall()
            stale = [{"application_name": r[0], "state": r[1], "age_s": round(r[2].total_seconds(), 3)}
                     for r in stale_rows]
            old_ok, old_msg = self._login_works(user, old)
            new_ok, new_msg = self._login_works(user, new)

            def on_new() -> dict[str, bool]:
                have = {n for n, s in sessions(new) if s >= t_alter}
                return {n: n in have for n in self.running("node")}

            with contextlib.suppress(WaitTimeout):  # not reached: the sample below says which nodes
                wait_until(lambda: all(on_new().values()), reconnect_timeout, "every node on a new-password session",
                           interval=0.2)
            nodes_on_new = on_new()
            summary = {"reload_s": reload_s, "revoked": len(stale_rows), "old_rejected": old_ok is False,
                       "old_login": old_msg, "new_accepted": new_ok is True, "new_login": new_msg,
                       "nodes_on_new": nodes_on_new, "revoked_sessions": stale[:20],
                       "reload_deadline_s": reload_timeout}
            res.update(summary)
        self._sample(SECRET_F, summary)
        return RotationResult(reload_s, len(stale_rows), old_ok is False, new_ok is True, nodes_on_new)
