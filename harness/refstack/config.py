"""Configuration: Goverse's YAML schema, plus GOVERSE_* / POD_* environment overrides — pure.

Why this shape: the reference stack must accept the same YAML file as Goverse v0.1.1 (contract §1.7) so
one rendered config drives both stacks, and it must do what the seed (§2.3/§2.4) asks and Goverse lacks:
every value overridable from the environment, pod identity from ``POD_NAME`` / ``POD_IP``. Loading is
a pure function of (role, flags, environment, file text) so it is tested without processes; every bad
input raises ``ConfigError`` whose message names the setting and what is allowed (exit code 2).

Precedence: built-in defaults < YAML < environment < command-line flags.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from harness.refstack.bugs import UnknownBug, parse_bugs

ROLES = ("node", "gate", "inspector", "schema-init")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# Fast test timers (seconds). Goverse v0.1.1's defaults: lease 15, stability 10, tick 5, call 30.
DEFAULT_SHARDS = 64
DEFAULT_PREFIX = "/goverse"
DEFAULT_LEASE_TTL = 3.0
DEFAULT_STABILITY = 1.0
DEFAULT_TICK = 0.25
DEFAULT_CALL_TIMEOUT = 5.0
DEFAULT_SHUTDOWN_GRACE = 10.0
MIN_LEASE_TTL = 1.0


class ConfigError(ValueError):
    """Bad configuration. ``str()`` is one line: ``<setting>: <what is wrong and what is allowed>``."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


# ------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class ClusterSettings:
    shards: int = DEFAULT_SHARDS
    etcd_endpoints: tuple[str, ...] = ()
    prefix: str = DEFAULT_PREFIX
    stability: float = DEFAULT_STABILITY
    lease_ttl: float = DEFAULT_LEASE_TTL
    tick: float = DEFAULT_TICK
    call_timeout: float = DEFAULT_CALL_TIMEOUT
    create_timeout: float = DEFAULT_CALL_TIMEOUT
    delete_timeout: float = DEFAULT_CALL_TIMEOUT
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE


@dataclass(frozen=True)
class PostgresSettings:
    host: str = ""
    port: int = 5432
    user: str = "goverse"
    password: str = field(default="", repr=False)
    password_file: str = ""
    database: str = "goverse"
    sslmode: str = "disable"
    max_open_conns: int = 25
    max_idle_conns: int = 5

    @property
    def enabled(self) -> bool:
        return bool(self.host or self.database)


@dataclass(frozen=True)
class InstanceSettings:
    """The node's, gate's or inspector's own addresses. For a node ``listen_addr`` is the internal
    API (YAML ``grpc_addr``), ``ops_addr`` serves /healthz /ready /metrics (YAML ``http_addr``). For a
    gate ``http_addr`` is the client API and ``ops_addr`` the ops port. The inspector only has
    ``http_addr``."""

    id: str
    advertise_addr: str
    listen_addr: str = ""
    http_addr: str = ""
    ops_addr: str = ""


@dataclass(frozen=True)
class Settings:
    role: str
    cluster: ClusterSettings
    postgres: PostgresSettings
    instance: InstanceSettings
    bugs: frozenset[str] = frozenset()
    version_tag: str = "dev"
    log_format: str = "text"
    log_level: str = "info"
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------- primitives
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, setting: str) -> float:
    """Go-style duration ("3s", "250ms", "1m30s") or a number of seconds -> seconds (> 0)."""
    allowed = 'a positive duration such as "3s", "250ms", "1m30s" or a number of seconds'
    if isinstance(value, bool):
        raise ConfigError(setting, f"expected {allowed}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _DURATION_RE.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ConfigError(setting, f"expected {allowed}, got {value!r}") from None
    else:
        raise ConfigError(setting, f"expected {allowed}, got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(setting, f"expected {allowed}, got {value!r}")
    return seconds


def parse_int(value: Any, setting: str, minimum: int = 1, maximum: int | None = None) -> int:
    bound = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    if isinstance(value, bool):
        raise ConfigError(setting, f"expected {bound}, got {value!r}")
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(setting, f"expected {bound}, got {value!r}")
    return value


def parse_str(value: Any, setting: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(setting, f"expected a string, got {value!r}")
    return str(value)


def parse_float(value: Any, setting: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(setting, f"expected a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ConfigError(setting, f"expected a number, got {value!r}") from None


def split_hostport(value: str, setting: str) -> tuple[str, int]:
    """``"host:port"`` (host may be empty for listen addresses) -> (host, port)."""
    text = value.strip()
    m = re.fullmatch(r"\[?([^\[\]]*?)\]?:(\d+)", text)
    if not m:
        raise ConfigError(setting, f"expected host:port, got {value!r}")
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise ConfigError(setting, f"port must be 1-65535, got {value!r}")
    return m.group(1), port


def listen_hostport(value: str, setting: str) -> tuple[str, int]:
    host, port = split_hostport(value, setting)
    return (host or "0.0.0.0"), port


def check_advertise(value: str, setting: str) -> str:
    host, port = split_hostport(value, setting)
    if host in ("", "0.0.0.0", "::"):
        raise ConfigError(setting, f"must be an address others can dial (host:port), got {value!r}")
    return f"{host}:{port}"


def normalize_endpoint(value: str, setting: str) -> str:
    """``host:port`` or ``http://host:port`` -> ``http://host:port``."""
    text = value.strip().rstrip("/")
    if text.startswith("https://"):
        raise ConfigError(setting, f"TLS endpoints are not supported by the reference stack, got {value!r}")
    if text.startswith("http://"):
        text = text[len("http://"):]
    host, port = split_hostport(text, setting)
    if not host:
        raise ConfigError(setting, f"expected host:port, got {value!r}")
    return f"http://{host}:{port}"


# ------------------------------------------------------------------------------------------ schema
# A leaf is a parser (value, setting) -> value; a dict is a nested mapping; a list of one dict is a
# list of mappings. Keys Goverse parses but the reference stack does not use map to ``_ignored``.
Parser = Callable[[Any, str], Any]


def _ignored(value: Any, setting: str) -> Any:
    return value


def _str_list(value: Any, setting: str) -> list[str]:
    if isinstance(value, str):
        return [v for v in (x.strip() for x in value.split(",")) if v]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(setting, f"expected a list of strings, got {value!r}")
    return list(value)


_NODE_ENTRY: dict[str, Any] = {"id": parse_str, "grpc_addr": parse_str, "advertise_addr": parse_str,
                               "http_addr": parse_str}
_GATE_ENTRY: dict[str, Any] = {"id": parse_str, "grpc_addr": parse_str, "advertise_addr": parse_str,
                               "http_addr": parse_str, "ops_addr": parse_str}
SCHEMA: dict[str, Any] = {
    "version": lambda v, s: parse_int(v, s, 1),
    "cluster": {
        "shards": lambda v, s: parse_int(v, s, 1),
        "provider": parse_str,
        "etcd": {"endpoints": _str_list, "prefix": parse_str},
        "cluster_state_stability_duration": parse_duration,
        "stuck_shard_reallocation_timeout": parse_duration,
        "default_call_timeout": parse_duration,
        "default_create_timeout": parse_duration,
        "default_delete_timeout": parse_duration,
        "imbalance_threshold": parse_float,
        "auto_load_objects": _ignored,
        "lease_ttl": parse_duration,
        "management_tick": parse_duration,
        "shutdown_grace": parse_duration,
    },
    "postgres": {
        "host": parse_str,
        "port": lambda v, s: parse_int(v, s, 1, 65535),
        "user": parse_str,
        "password": parse_str,
        "password_file": parse_str,
        "database": parse_str,
        "sslmode": parse_str,
        "max_open_conns": lambda v, s: parse_int(v, s, 1),
        "max_idle_conns": lambda v, s: parse_int(v, s, 0),
    },
    "inspector": {"grpc_addr": parse_str, "http_addr": parse_str, "advertise_addr": parse_str},
    "nodes": [_NODE_ENTRY],
    "gates": [_GATE_ENTRY],
    "object_access_rules": _ignored,
    "object_lifecycle_rules": _ignored,
}
UNUSED_KEYS = ("cluster.stuck_shard_reallocation_timeout", "cluster.imbalance_threshold",
               "cluster.auto_load_objects", "object_access_rules", "object_lifecycle_rules",
               "inspector.grpc_addr", "inspector.advertise_addr")


def _validate(doc: Any, schema: Any, path: str) -> Any:
    if isinstance(schema, dict):
        if doc is None:
            return {}
        if not isinstance(doc, dict):
            raise ConfigError(path or "config", f"expected a mapping, got {type(doc).__name__}")
        out = {}
        for key, value in doc.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in schema:
                raise ConfigError(where, f"unknown key; allowed here: {', '.join(sorted(schema))}")
            out[key] = _validate(value, schema[key], where)
        return out
    if isinstance(schema, list):
        if doc is None:
            return []
        if not isinstance(doc, list):
            raise ConfigError(path, f"expected a list, got {type(doc).__name__}")
        return [_validate(item, schema[0], f"{path}[{i}]") for i, item in enumerate(doc)]
    return schema(doc, path)


def parse_yaml(text: str) -> dict[str, Any]:
    """YAML text -> validated nested dict (unknown keys and wrong types are errors)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError("config", f"invalid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if doc is None:
        doc = {}
    parsed = _validate(doc, SCHEMA, "")
    if "version" not in parsed:
        raise ConfigError("version", "required; must be 1")
    if parsed["version"] != 1:
        raise ConfigError("version", f"unsupported config version {parsed['version']}; must be 1")
    return parsed


# ------------------------------------------------------------------------------------- environment
# env var -> (dotted setting, parser). Instance-scoped variables (addresses, ids) are handled apart.
ENV_CLUSTER: dict[str, tuple[str, Parser]] = {
    "GOVERSE_SHARDS": ("cluster.shards", SCHEMA["cluster"]["shards"]),
    "GOVERSE_NUM_SHARDS": ("cluster.shards", SCHEMA["cluster"]["shards"]),
    "GOVERSE_ETCD_ENDPOINTS": ("cluster.etcd.endpoints", _str_list),
    "GOVERSE_ETCD_PREFIX": ("cluster.etcd.prefix", parse_str),
    "GOVERSE_STABILITY_DURATION": ("cluster.cluster_state_stability_duration", parse_duration),
    "GOVERSE_LEASE_TTL": ("cluster.lease_ttl", parse_duration),
    "GOVERSE_MANAGEMENT_TICK": ("cluster.management_tick", parse_duration),
    "GOVERSE_CALL_TIMEOUT": ("cluster.default_call_timeout", parse_duration),
    "GOVERSE_DEFAULT_CALL_TIMEOUT": ("cluster.default_call_timeout", parse_duration),
    "GOVERSE_CREATE_TIMEOUT": ("cluster.default_create_timeout", parse_duration),
    "GOVERSE_DELETE_TIMEOUT": ("cluster.default_delete_timeout", parse_duration),
    "GOVERSE_SHUTDOWN_GRACE": ("cluster.shutdown_grace", parse_duration),
    "GOVERSE_POSTGRES_HOST": ("postgres.host", parse_str),
    "GOVERSE_POSTGRES_PORT": ("postgres.port", SCHEMA["postgres"]["port"]),
    "GOVERSE_POSTGRES_USER": ("postgres.user", parse_str),
    "GOVERSE_POSTGRES_PASSWORD": ("postgres.password", parse_str),
    "GOVERSE_DB_PASSWORD": ("postgres.password", parse_str),
    "GOVERSE_POSTGRES_PASSWORD_FILE": ("postgres.password_file", parse_str),
    "GOVERSE_POSTGRES_DATABASE": ("postgres.database", parse_str),
    "GOVERSE_POSTGRES_SSLMODE": ("postgres.sslmode", parse_str),
    "GOVERSE_POSTGRES_MAX_OPEN_CONNS": ("postgres.max_open_conns", SCHEMA["postgres"]["max_open_conns"]),
    "GOVERSE_POSTGRES_MAX_IDLE_CONNS": ("postgres.max_idle_conns", SCHEMA["postgres"]["max_idle_conns"]),
}
ENV_INSTANCE = ("GOVERSE_NODE_ID", "GOVERSE_GATE_ID", "GOVERSE_GRPC_ADDR", "GOVERSE_ADVERTISE_ADDR",
                "GOVERSE_HTTP_ADDR", "GOVERSE_OPS_ADDR", "GOVERSE_VERSION_TAG")
KNOWN_ENV = frozenset(ENV_CLUSTER) | frozenset(ENV_INSTANCE)


def _set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = doc
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def _get_dotted(doc: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    cur: Any = doc
    for p in dotted.split("."):
        if not isinstance(cur, Mapping) or p not in cur:
            return default
        cur = cur[p]
    return cur


# ------------------------------------------------------------------------------------------ loading
@dataclass(frozen=True)
class Flags:
    """Command-line values (``None`` = not given)."""

    config_text: str | None = None
    node_id: str | None = None
    gate_id: str | None = None
    bugs: str | None = None
    version_tag: str | None = None


def load_settings(role: str, flags: Flags, environ: Mapping[str, str]) -> Settings:
    """Build validated settings for ``role``; raises ``ConfigError`` naming the bad setting."""
    if role not in ROLES:
        raise ConfigError("role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    try:
        bugs = parse_bugs(flags.bugs, "--bugs") if flags.bugs is not None else parse_bugs(
            environ.get("REFSTACK_BUGS"), "REFSTACK_BUGS")
    except UnknownBug as exc:
        setting, _, msg = str(exc).partition(": ")
        raise ConfigError(setting, msg) from None
    log_format = environ.get("LOG_FORMAT", "text").strip().lower() or "text"
    if log_format not in LOG_FORMATS:
        raise ConfigError("LOG_FORMAT", f"must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    log_level = environ.get("LOG_LEVEL", "info").strip().lower() or "info"
    if log_level not in LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

    doc = parse_yaml(flags.config_text) if flags.config_text is not None else {}
    warnings = [f"{key}: parsed but not used by the reference stack" for key in UNUSED_KEYS
                if _get_dotted(doc, key) not in (None, [], {})]
    env = {} if "env-ignored" in bugs else {k: v for k, v in environ.items()
                                            if k.startswith(("GOVERSE_", "POD_"))}
    for name in sorted(env):
        if name.startswith("GOVERSE_") and name not in KNOWN_ENV:
            warnings.append(f"{name}: unknown GOVERSE_* variable, ignored")
    for name, (dotted, parser) in ENV_CLUSTER.items():
        if name in env:
            _set_dotted(doc, dotted, parser(env[name], name))

    cluster = _cluster(doc)
    postgres = _postgres(doc, required=(role in ("node", "schema-init")))
    if role == "schema-init":  # creates the tables and exits: no identity, no listener
        instance = InstanceSettings(id="schema-init", advertise_addr="")
    elif role == "node":
        instance = _node_instance(doc, flags, env)
    elif role == "gate":
        instance = _gate_instance(doc, flags, env)
    else:
        instance = _inspector_instance(doc, env)
    version_tag = flags.version_tag or env.get("GOVERSE_VERSION_TAG") or "dev"
    return Settings(role=role, cluster=cluster, postgres=postgres, instance=instance, bugs=bugs,
                    version_tag=version_tag, log_format=log_format, log_level=log_level,
                    warnings=tuple(warnings))


def _cluster(doc: Mapping[str, Any]) -> ClusterSettings:
    provider = _get_dotted(doc, "cluster.provider", "etcd")
    if provider != "etcd":
        raise ConfigError("cluster.provider", f'must be "etcd", got {provider!r}')
    endpoints = _get_dotted(doc, "cluster.etcd.endpoints") or []
    if not endpoints:
        raise ConfigError("cluster.etcd.endpoints",
                          "required: at least one etcd endpoint (or GOVERSE_ETCD_ENDPOINTS=host:port,...)")
    norm = tuple(normalize_endpoint(e, f"cluster.etcd.endpoints[{i}]") for i, e in enumerate(endpoints))
    prefix = str(_get_dotted(doc, "cluster.etcd.prefix", DEFAULT_PREFIX)).rstrip("/")
    if not prefix.startswith("/"):
        raise ConfigError("cluster.etcd.prefix", f'must start with "/", got {prefix!r}')
    lease_ttl = _get_dotted(doc, "cluster.lease_ttl", DEFAULT_LEASE_TTL)
    if lease_ttl < MIN_LEASE_TTL:
        raise ConfigError("cluster.lease_ttl", f"must be >= {MIN_LEASE_TTL:g}s, got {lease_ttl:g}s")
    tick = _get_dotted(doc, "cluster.management_tick", DEFAULT_TICK)
    if tick > lease_ttl / 2:
        raise ConfigError("cluster.management_tick",
                          f"must be <= half the lease TTL ({lease_ttl / 2:g}s), got {tick:g}s")
    call_timeout = _get_dotted(doc, "cluster.default_call_timeout", DEFAULT_CALL_TIMEOUT)
    return ClusterSettings(
        shards=_get_dotted(doc, "cluster.shards", DEFAULT_SHARDS),
        etcd_endpoints=norm,
        prefix=prefix,
        stability=_get_dotted(doc, "cluster.cluster_state_stability_duration", DEFAULT_STABILITY),
        lease_ttl=lease_ttl,
        tick=tick,
        call_timeout=call_timeout,
        create_timeout=_get_dotted(doc, "cluster.default_create_timeout", call_timeout),
        delete_timeout=_get_dotted(doc, "cluster.default_delete_timeout", call_timeout),
        shutdown_grace=_get_dotted(doc, "cluster.shutdown_grace", DEFAULT_SHUTDOWN_GRACE),
    )


def _postgres(doc: Mapping[str, Any], required: bool) -> PostgresSettings:
    pg = dict(_get_dotted(doc, "postgres", {}) or {})
    settings = PostgresSettings(**{k: v for k, v in pg.items() if k in PostgresSettings.__dataclass_fields__})
    if settings.sslmode not in SSL_MODES:
        raise ConfigError("postgres.sslmode", f"must be one of {', '.join(SSL_MODES)}, got {settings.sslmode!r}")
    if required:
        if not settings.host:
            raise ConfigError("postgres.host", "required for nodes: the reference stack persists objects in "
                                               "PostgreSQL (or GOVERSE_POSTGRES_HOST)")
        if not settings.password and not settings.password_file:
            raise ConfigError("postgres.password", "required: set postgres.password or postgres.password_file "
                                                   "(or GOVERSE_POSTGRES_PASSWORD[_FILE])")
        if settings.password_file:
            try:
                with open(settings.password_file, encoding="utf-8") as f:
                    if not f.read().strip():
                        raise ConfigError("postgres.password_file", f"{settings.password_file} is empty")
            except OSError as exc:
                raise ConfigError("postgres.password_file",
                                  f"cannot read {settings.password_file}: {exc.strerror}") from None
    return settings


def _find_entry(doc: Mapping[str, Any], section: str, ident: str) -> tuple[int, dict[str, Any]] | None:
    entries = doc.get(section) or []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        eid = entry.get("id")
        if not eid:
            raise ConfigError(f"{section}[{i}].id", "required")
        if eid in seen:
            kind = section[:-1]
            raise ConfigError(f"{section}[{i}].id", f"duplicate {kind} id: {eid}")
        seen.add(eid)
    for i, entry in enumerate(entries):
        if entry.get("id") == ident:
            return i, dict(entry)
    return None


def _identity(flag: str | None, flag_name: str, env: Mapping[str, str], env_name: str) -> str:
    ident = flag or env.get(env_name) or env.get("POD_NAME")
    if not ident:
        raise ConfigError(flag_name, f"required (or {env_name} / POD_NAME)")
    return ident


def _advertise(entry: Mapping[str, Any], where: str, env: Mapping[str, str], listen_key: str) -> str:
    advertise = env.get("GOVERSE_ADVERTISE_ADDR") or entry.get("advertise_addr") or ""
    if not advertise and env.get("POD_IP") and entry.get(listen_key):
        _, port = split_hostport(entry[listen_key], f"{where}.{listen_key}")
        advertise = f"{env['POD_IP']}:{port}"
    if not advertise:
        raise ConfigError(f"{where}.advertise_addr", "required (or GOVERSE_ADVERTISE_ADDR, or POD_IP with "
                                                     f"{where}.{listen_key})")
    return check_advertise(advertise, f"{where}.advertise_addr")


def _node_instance(doc: Mapping[str, Any], flags: Flags, env: Mapping[str, str]) -> InstanceSettings:
    node_id = _identity(flags.node_id, "--node-id", env, "GOVERSE_NODE_ID")
    found = _find_entry(doc, "nodes", node_id)
    where = f"nodes[{found[0]}]" if found else "nodes[]"
    entry = found[1] if found else {}
    for key, env_name in (("grpc_addr", "GOVERSE_GRPC_ADDR"), ("http_addr", "GOVERSE_HTTP_ADDR")):
        if env.get(env_name):
            entry[key] = env[env_name]
    if not entry.get("grpc_addr"):
        if found is None:
            raise ConfigError("--node-id", f"no nodes[] entry with id {node_id!r} and GOVERSE_GRPC_ADDR is not set")
        raise ConfigError(f"{where}.grpc_addr", "required (the node's internal API listen address)")
    listen_hostport(entry["grpc_addr"], f"{where}.grpc_addr")
    if entry.get("http_addr"):
        listen_hostport(entry["http_addr"], f"{where}.http_addr")
    advertise = _advertise(entry, where, env, "grpc_addr")
    return InstanceSettings(id=node_id, advertise_addr=advertise, listen_addr=entry["grpc_addr"],
                            ops_addr=entry.get("http_addr", ""))


def _gate_instance(doc: Mapping[str, Any], flags: Flags, env: Mapping[str, str]) -> InstanceSettings:
    gate_id = _identity(flags.gate_id, "--gate-id", env, "GOVERSE_GATE_ID")
    found = _find_entry(doc, "gates", gate_id)
    where = f"gates[{found[0]}]" if found else "gates[]"
    entry = found[1] if found else {}
    for key, env_name in (("grpc_addr", "GOVERSE_GRPC_ADDR"), ("http_addr", "GOVERSE_HTTP_ADDR"),
                          ("ops_addr", "GOVERSE_OPS_ADDR")):
        if env.get(env_name):
            entry[key] = env[env_name]
    if not entry.get("http_addr"):
        if found is None:
            raise ConfigError("--gate-id", f"no gates[] entry with id {gate_id!r} and GOVERSE_HTTP_ADDR is not set")
        raise ConfigError(f"{where}.http_addr", "required (the gate's client HTTP API listen address)")
    listen_hostport(entry["http_addr"], f"{where}.http_addr")
    if entry.get("ops_addr"):
        listen_hostport(entry["ops_addr"], f"{where}.ops_addr")
    identity_key = "grpc_addr" if entry.get("grpc_addr") else "http_addr"
    if not entry.get("advertise_addr") and entry.get("grpc_addr") and not env.get("POD_IP"):
        host, _ = split_hostport(entry["grpc_addr"], f"{where}.grpc_addr")
        if host not in ("", "0.0.0.0", "::"):
            entry["advertise_addr"] = entry["grpc_addr"]  # Goverse: advertise defaults to grpc_addr
    advertise = _advertise(entry, where, env, identity_key)
    return InstanceSettings(id=gate_id, advertise_addr=advertise, listen_addr=entry.get("grpc_addr", ""),
                            http_addr=entry["http_addr"], ops_addr=entry.get("ops_addr", ""))


def _inspector_instance(doc: Mapping[str, Any], env: Mapping[str, str]) -> InstanceSettings:
    http_addr = env.get("GOVERSE_HTTP_ADDR") or _get_dotted(doc, "inspector.http_addr") or ""
    if not http_addr:
        raise ConfigError("inspector.http_addr", "required (or GOVERSE_HTTP_ADDR)")
    listen_hostport(http_addr, "inspector.http_addr")
    return InstanceSettings(id="inspector", advertise_addr=http_addr, http_addr=http_addr)


def read_password(pg: PostgresSettings) -> str:
    """The current PostgreSQL password: the file's content (stripped) if a file is set."""
    if pg.password_file:
        with open(pg.password_file, encoding="utf-8") as f:
            return f.read().strip()
    return pg.password
