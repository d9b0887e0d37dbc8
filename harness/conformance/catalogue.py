"""Every conformance check: id (``<seed section>-<words>``), title, kind and why it exists.

Why one table of data: the CLI, the docs (docs/conformance.md), the report and the tests all iterate
the same list, and a test holds the table, the static runners and the runtime tests in
``scenarios/test_conformance.py`` together, so a check cannot exist in one place and be missing in
another. Ids are an interface (``-k 2.2`` in CI): never rename one.
"""

from __future__ import annotations

from harness.conformance.model import CheckSpec, Kind


def _s(check_id: str, title: str, why: str) -> CheckSpec:
    return CheckSpec(check_id, title, "static", why)


def _r(check_id: str, title: str, why: str) -> CheckSpec:
    return CheckSpec(check_id, title, "runtime", why)


CHECKS: tuple[CheckSpec, ...] = (
    # --- §1 images (static, over the Dockerfile and its .dockerignore) ------------------------------
    _s("1.1-multi-stage-build", "Image is a multi-stage build; the runtime stage only copies artifacts",
       "Build toolchains in the runtime image are attack surface and size (seed §1.1, §1.2)."),
    _s("1.1-non-root-user", "The runtime stage runs as a non-root USER",
       "A container escape from a root process is a root process on the node (seed §1.1 `USER nonroot`)."),
    _s("1.2-minimal-base", "The runtime base image is minimal (distroless, alpine, slim or scratch)",
       "Seed §1.2 asks for distroless or alpine bases: fewer packages, fewer CVEs, smaller pulls."),
    _s("1.2-dockerignore", ".dockerignore keeps VCS, CI, tests and docs out, and what the build copies in",
       "Seed §1.2 asks for a .dockerignore; a context that leaks .git slows builds and can leak history."),
    # --- §2 application behaviour (static part: what the manifests give the processes) --------------
    _s("2.2-prestop-grace", "Nodes and gates have a preStop delay and a grace period that outlasts it",
       "Seed §2.2: endpoints must be removed before shutdown starts, and shutdown must finish in the grace."),
    _s("2.4-downward-api-identity", "Goverse pods get POD_NAME and POD_IP from the downward API",
       "Seed §2.4: pod identity and advertise address come from metadata.name and status.podIP."),
    _r("2.1-health-endpoints", "/healthz answers 200 on every node, gate and inspector",
       "Seed §2.1: a liveness probe needs an endpoint that says the process is alive."),
    _r("2.1-ready-endpoints", "/ready answers 200 on every node, gate and inspector of a converged stack",
       "Seed §2.1: a readiness probe needs an endpoint, and on a converged cluster it must say ready."),
    _r("2.1-ready-before-cluster-ready", "/ready is 503 until the cluster is ready, then 200",
       "Seed §2.1: ready means cluster connected and shards claimed; traffic sent earlier fails."),
    _r("2.1-ready-drops-on-etcd-loss", "/ready drops to 503 when etcd is lost, and returns to 200 after",
       "Seed §2.1 IsReady checks the cluster connection; a latched /ready (Goverse v0.1.1) keeps traffic "
       "flowing to an instance that cannot serve."),
    _r("2.1-ready-drops-on-sigterm", "/ready stops answering 200 within 1 s of SIGTERM",
       "Seed §2.1: IsReady returns false during graceful shutdown, so endpoints drop the pod while it drains."),
    _r("2.1-ready-after-restart", "A restarted node reports /ready 200 again",
       "Seed §2.1: readiness must come back, or a rolling restart never finishes."),
    _r("2.2-sigterm-refuses-new-calls", "After SIGTERM a node refuses new calls at once",
       "Seed §2.2: the node stops accepting requests, so no new work starts that the grace cannot finish."),
    _r("2.2-sigterm-drains-in-flight", "After SIGTERM in-flight calls complete before the node exits",
       "Seed §2.2: drain in-flight requests; a call cut off mid-way leaves the client not knowing."),
    _r("2.2-sigterm-exit-within-grace", "A SIGTERMed node exits 0 within the shutdown grace period",
       "Seed §2.2: past the grace Kubernetes SIGKILLs, losing whatever the shutdown had not finished."),
    _r("2.2-sigterm-releases-shards", "A SIGTERMed node releases its shards in etcd before it exits",
       "Seed §2.2: release shards before exiting, so failover does not wait for the lease to expire."),
    _r("2.2-sigterm-no-acked-write-lost", "No acknowledged write is lost across a graceful node stop",
       "Seed §2.2/§7.1: a graceful restart under load must not lose what clients were told succeeded."),
    _r("2.3-env-etcd-endpoints", "GOVERSE_ETCD_ENDPOINTS overrides cluster.etcd.endpoints",
       "Seed §2.3 names it: etcd addresses differ per cluster and must not need a new config file."),
    _r("2.3-env-node-id", "GOVERSE_NODE_ID overrides the node id",
       "Seed §2.3 names it; the StatefulSet sets it from metadata.name."),
    _r("2.3-env-postgres-password", "GOVERSE_POSTGRES_PASSWORD overrides postgres.password",
       "Seed §2.3/§5.3: the password comes from a Secret through the environment, never from the ConfigMap."),
    _r("2.3-env-validated", "An invalid override stops the process at start-up, naming the variable",
       "Seed §2.3: validate the merged configuration at startup (a crash loop with a clear message beats "
       "a half-working pod)."),
    _r("2.4-pod-name-node-id", "POD_NAME becomes the node id when none is configured",
       "Seed §2.4: pod identity from the downward API."),
    _r("2.4-pod-ip-advertise", "POD_IP becomes the advertise address when none is configured",
       "Seed §2.4: pod IPs are dynamic; a static advertise address cannot be written in a shared ConfigMap."),
    _r("2.5-method-call-metrics", "goverse_method_calls_total counts calls under load",
       "Seed §2.5/§4.1: the error-rate alert is computed from it; a counter that does not move alerts on nothing."),
    _r("2.5-shard-gauges", "goverse_shards_total sums to the shard count on every node",
       "Seed §2.5: shard distribution is what operators watch during migrations."),
    _r("2.5-process-metrics", "Process metrics exist: memory and goroutines/threads",
       "Seed §2.5: resource usage metrics (memory, goroutine count)."),
    _r("2.5-pod-info-metric", "goverse_pod_info{pod_name,namespace,node_name} reports the pod identity",
       "Seed §2.5 names it: dashboards join metrics to pods by it."),
    _r("2.5-readiness-metrics", "goverse_k8s_ready and goverse_k8s_startup_time_seconds exist and agree",
       "Seed §2.5 names them: readiness and time-to-ready as metrics, not only as probe results."),
    _r("2.6-json-logs", "LOG_FORMAT=json: every log line is a JSON object with level, time and message",
       "Seed §2.6/§4.2: log pipelines (Fluentd, Loki) parse lines; one unparseable line breaks queries."),
    _r("2.6-log-level", "LOG_LEVEL changes what is logged",
       "Seed §2.6: log level control via the environment."),
    _r("2.6-no-secrets-in-logs", "The PostgreSQL password never appears in any log or report file",
       "Seed §5.3: credentials only live in Secrets; logs are shipped to places Secrets are not."),
    # --- §3 Kubernetes resources (static, over every rendered overlay) -------------------------------
    _s("3.1-core-resources", "Every resource §3.1 lists exists (namespace, config, secret, etcd, PostgreSQL, "
       "nodes, gates, inspector, their Services)", "Seed §3.1 is the list of core manifests."),
    _s("3.1-probes", "Every long-running container has liveness and readiness probes on a declared port",
       "Seed §3.1 (and §2.1): probes are what make the endpoints matter."),
    _s("3.1-resources", "Every container has CPU and memory requests and limits",
       "Seed §3.1: scheduling and OOM behaviour depend on them."),
    _s("3.1-services", "Services select their pods by named ports; StatefulSets have headless Services",
       "Seed §3.1: stable DNS for nodes and etcd members comes from headless Services."),
    _s("3.2-pdb", "A PodDisruptionBudget per multi-replica workload, consistent with its replicas",
       "Seed §3.2: voluntary disruptions must keep the cluster (and etcd quorum) serving."),
    _s("3.2-hpa", "HPAs for nodes and gates target them, keep the HA floor, and own the replica count",
       "Seed §3.2: autoscaling must not scale below what the PodDisruptionBudget assumes."),
    _s("3.2-network-policies", "NetworkPolicies deny by default and allow exactly the stack's paths",
       "Seed §3.2/§5.2: deny all by default, allow specific paths."),
    # --- §4 observability ------------------------------------------------------------------------
    _s("4.1-service-monitors", "ServiceMonitors scrape nodes, gates (and an inspector that has /metrics)",
       "Seed §4.1: Prometheus Operator discovers targets only through ServiceMonitors."),
    _s("4.1-alert-rules", "A PrometheusRule carries the seed's alerts, each with a severity and a summary",
       "Seed §4.1 lists GoverseNodeDown, HighObjectCount and HighMethodCallErrorRate."),
    # --- §5 security ----------------------------------------------------------------------------
    _s("5.1-run-as-non-root", "Every container runs as non-root", "Seed §5.1 restricted Pod Security Standard."),
    _s("5.1-drop-capabilities", "Every container drops ALL capabilities, without privilege escalation",
       "Seed §5.1: drop all capabilities."),
    _s("5.1-seccomp", "Every container runs with the RuntimeDefault seccomp profile",
       "Seed §5.1 securityContext example."),
    _s("5.1-read-only-root-fs", "Every container has a read-only root filesystem",
       "Seed §5.1: read-only root filesystem where possible."),
    _s("5.1-no-host-access", "No pod uses host network, PID, IPC or hostPath volumes",
       "Seed §5.1 restricted standard forbids them."),
    _s("5.1-restricted-namespace", "The namespace enforces the restricted Pod Security Standard",
       "Seed §5.1: admission enforces what the securityContexts promise."),
    _s("5.3-credentials-from-secrets", "Credentials only come from Secrets: none literal in env or ConfigMap",
       "Seed §5.3: PostgreSQL and etcd credentials live in Secrets."),
    _s("5.4-service-accounts", "A ServiceAccount per component, no cluster-admin, no unused API tokens",
       "Seed §5.4: minimal permissions, separate accounts, no cluster-admin."),
)

BY_ID: dict[str, CheckSpec] = {c.id: c for c in CHECKS}
if len(BY_ID) != len(CHECKS):  # pragma: no cover - caught by the tests
    raise RuntimeError("duplicate conformance check ids")


def get(check_id: str) -> CheckSpec:
    try:
        return BY_ID[check_id]
    except KeyError:
        raise KeyError(f"no conformance check {check_id!r}; known: {', '.join(sorted(BY_ID))}") from None


def of_kind(kind: Kind) -> list[CheckSpec]:
    return [c for c in CHECKS if c.kind == kind]


def select(patterns: list[str] | tuple[str, ...] | None, kind: Kind | None = None) -> list[CheckSpec]:
    """Checks whose id contains any of ``patterns`` (all when none), optionally of one kind. A pattern
    ``2.2`` selects ``2.2-*``; ``sigterm`` selects every check with that word."""
    out = [c for c in CHECKS if kind is None or c.kind == kind]
    if patterns:
        out = [c for c in out if any(p.lower() in c.id for p in patterns)]
    return out
