"""One typed, validated settings object for a run.

Sources, highest priority first: command-line / pytest options, ``GVH_*`` environment variables, an
optional YAML file (``--gvh-config`` or ``GVH_CONFIG``), defaults. Everything is validated before anything
is deployed: a bad value stops the run with one message naming the setting, where it came from and what
is allowed (never a half-deployed stack).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.platforms.base import StackSpec, Timers

# Seeded bugs of the reference stack (docs/seeded-bugs.md). Kept here so a typo fails before deploying.
KNOWN_BUGS: tuple[str, ...] = (
    "ack-before-persist",
    "no-fencing",
    "stale-overwrite-on-rejoin",
    "no-dedup",
    "ignore-sigterm",
    "ready-latched",
    "slow-failover",
    "lose-state-on-handover",
    "env-ignored",
    "no-secret-reload",
    "no-lease-deadline",
    "gate-watch-not-resumed",
    "drain-gives-up-early",
    "ready-before-serving",
)


_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SettingsError(ValueError):
    """A setting has a bad value. The message names it and the allowed values."""


class Settings(BaseModel):
    """Everything a run can be told. Field docs are what `--help` shows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    platform: Literal["local", "kind", "kubernetes"] = "local"
    stack: Literal["reference", "goverse"] = "reference"
    nodes: int = Field(3, ge=1, le=16)
    gates: int = Field(2, ge=1, le=8)
    shards: int = Field(64, ge=1, le=16384)
    etcd_members: Literal[1, 3] = 1
    artifacts: Path = Path("artifacts")
    keep_stack: bool = False
    seed: int = 0
    bugs: tuple[str, ...] = ()
    isolate_network: bool | None = None
    # timers (seconds); reference-stack fast defaults
    lease_ttl: float = Field(3.0, gt=0, le=120)
    stability: float = Field(1.0, ge=0, le=120)
    tick: float = Field(0.25, gt=0, le=60)
    call_timeout: float = Field(5.0, gt=0, le=120)
    shutdown_grace: float = Field(10.0, gt=0, le=300)
    # measurement: a probe that succeeded slower than this counts as unavailable (docs/definitions.md)
    slo_ms: float = Field(1000.0, gt=0, le=600_000)
    # measurement: harness lag (late probes, a late event loop) above this makes a scenario's verdict
    # unknown, "harness starved" (docs/definitions.md); 10 ms .. 60 s
    starved_lag_ms: float = Field(250.0, ge=10, le=60_000)
    # a scenario that is unknown only because the harness was starved fails the run too (default: it is
    # reported as unknown, counted in the summary, and does not fail the run)
    strict_unknown: bool = False
    # the harness (the observer: probes, clocks, lag) runs in a cpu cgroup of the largest weight, so a
    # loaded machine starves it less (needs root and a cpu cgroup controller; not on the local platform,
    # whose stack processes are the harness's children and would share it)
    observer_priority: bool = False
    # real Goverse (stack=goverse)
    goverse_node_bin: Path | None = None
    goverse_gate_bin: Path | None = None
    goverse_inspector_bin: Path | None = None
    goverse_pgadmin_bin: Path | None = None  # Goverse's cmd/pgadmin: `init` runs once per database
    goverse_persistence_interval: float | None = Field(None, gt=0, le=3600)  # node flag, seconds
    # the type name the counter workload (probe, increments, reads, final reads) calls; its methods and
    # messages are Counter's (Increment/Get, counter.*). Wallet stays "Wallet" (its own methods).
    object_type: str = "Counter"
    # kubernetes
    kube_context: str | None = None
    allow_context: str | None = None
    cluster_name: str = "goverse-harness"
    keep_cluster: bool = False
    image: str = "goverse-harness/refstack:dev"
    # how the Kubernetes platform deploys the stack: the kustomize tree (manifests/) or the Helm chart
    deploy_with: Literal["kustomize", "helm"] = "kustomize"

    @field_validator("etcd_members", mode="before")
    @classmethod
    def _members_number(cls, v: Any) -> Any:
        """Environment variables are strings: ``GVH_ETCD_MEMBERS=3`` means 3."""
        if isinstance(v, str) and v.strip().isdigit():
            return int(v.strip())
        return v

    @field_validator("lease_ttl", "stability", "tick", "call_timeout", "shutdown_grace", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        """Durations as a person (and the stack's own YAML) writes them: ``3s``, ``250ms``, ``1m``, ``2.5``."""
        if isinstance(v, str):
            parsed = parse_duration(v)
            if isinstance(parsed, str):
                raise ValueError("a duration is a number of seconds or a number with a unit: 3s, 250ms, 1m, 1m30s")
            return parsed
        return v

    @field_validator("goverse_node_bin", "goverse_gate_bin", "goverse_inspector_bin", "goverse_pgadmin_bin")
    @classmethod
    def _executable(cls, v: Path | None) -> Path | None:
        if v is not None and Path(v).is_file() and not os.access(v, os.X_OK):
            raise ValueError(f"{v} is not executable (chmod +x it, or name the Goverse binary)")
        return v

    @field_validator("artifacts")
    @classmethod
    def _writable_artifacts(cls, v: Path) -> Path:
        """Checked before anything runs: an unwritable directory must not become an INTERNALERROR."""
        probe = Path(v)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:  # access() says yes to root everywhere, also on /proc: try it
            tempfile.TemporaryDirectory(dir=probe, prefix=".gvh-write-check-").cleanup()
        except OSError:
            raise ValueError(f"cannot create or write {v} ({probe} is not a writable directory)") from None
        return v

    @field_validator("bugs", mode="before")
    @classmethod
    def _split_bugs(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(b.strip() for b in v.split(",") if b.strip())
        if isinstance(v, list | tuple):
            out: list[str] = []
            for item in v:
                out.extend(b.strip() for b in str(item).split(",") if b.strip())
            return tuple(out)
        return v

    @field_validator("bugs")
    @classmethod
    def _known_bugs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [b for b in v if b not in KNOWN_BUGS]
        if unknown:
            raise ValueError(f"unknown seeded bug {', '.join(unknown)}; allowed: {', '.join(KNOWN_BUGS)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _goverse_timer_defaults(cls, data: Any) -> Any:
        """With stack=goverse, the timers a source did not set are Goverse v0.1.1's (lease 15 s,
        stability 10 s, tick 5 s, call timeout 30 s), so budgets fit the stack under test."""
        if isinstance(data, dict) and data.get("stack") == "goverse":
            data = dict(data)
            g = Timers.goverse_defaults()
            for name in ("lease_ttl", "stability", "tick", "call_timeout", "shutdown_grace"):
                data.setdefault(name, getattr(g, name))
        return data

    @field_validator("object_type")
    @classmethod
    def _type_name(cls, v: str) -> str:
        """A Goverse object type is registered under its Go type name, so the name is an identifier."""
        if not _TYPE_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not an object type name (letters, digits and _, not starting "
                             "with a digit, as Goverse registers a Go type: Counter, PersistentCounter)")
        if v == "Wallet":
            raise ValueError("'Wallet' has no counter methods (Increment/Get); allowed: a type with "
                             "Counter's methods and messages, e.g. Counter")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.stack == "reference" and self.object_type != "Counter":
            raise ValueError(f"object_type: the reference stack serves the counter methods only on type "
                             f"Counter, not {self.object_type!r}; allowed with stack=reference: Counter "
                             "(another name needs stack=goverse and a node that registers it)")
        if self.bugs and self.stack != "reference":
            raise ValueError("bugs: seeded bugs exist only in the reference stack (stack=reference)")
        if self.observer_priority and self.platform == "local":
            raise ValueError("observer_priority: allowed with --platform kubernetes or kind only; on the local "
                             "platform the stack's processes are the harness's children and would share its "
                             "CPU priority")
        if self.deploy_with == "helm" and self.platform == "local":
            raise ValueError("deploy_with: helm deploys on Kubernetes only (--platform kubernetes or kind); "
                             "the local platform runs processes")
        if self.deploy_with == "helm" and (self.bugs or self.stack != "reference"):
            raise ValueError("deploy_with: helm installs the reference stack without seeded bugs; use "
                             "deploy_with=kustomize for bugs or stack=goverse")
        if self.stack == "goverse" and self.platform == "local":
            missing = [n for n in ("goverse_node_bin", "goverse_gate_bin", "goverse_pgadmin_bin")
                       if getattr(self, n) is None]
            if missing:
                raise ValueError(f"{missing[0]}: required with stack=goverse on the local platform "
                                 "(path to your Goverse binary)")
            for n in ("goverse_node_bin", "goverse_gate_bin", "goverse_inspector_bin", "goverse_pgadmin_bin"):
                p = getattr(self, n)
                if p is not None and not Path(p).is_file():
                    raise ValueError(f"{n}: no such file {p}")
        return self

    # ---- derived -------------------------------------------------------------------------------
    @property
    def timers(self) -> Timers:
        return Timers(lease_ttl=self.lease_ttl, stability=self.stability, tick=self.tick,
                      call_timeout=self.call_timeout, shutdown_grace=self.shutdown_grace)

    def stack_spec(self, **overrides: Any) -> StackSpec:
        base: dict[str, Any] = dict(
            stack=self.stack, nodes=self.nodes, gates=self.gates, shards=self.shards,
            etcd_members=self.etcd_members, timers=self.timers, bugs=self.bugs,
            isolate_network=self.isolate_network,
            goverse_node_bin=str(self.goverse_node_bin) if self.goverse_node_bin else None,
            goverse_gate_bin=str(self.goverse_gate_bin) if self.goverse_gate_bin else None,
            goverse_inspector_bin=str(self.goverse_inspector_bin) if self.goverse_inspector_bin else None,
            goverse_pgadmin_bin=str(self.goverse_pgadmin_bin) if self.goverse_pgadmin_bin else None,
            goverse_persistence_interval=self.goverse_persistence_interval,
        )
        base.update(overrides)
        return StackSpec(**base)

    def public(self) -> dict[str, Any]:
        """What goes into run.json (no secrets exist in settings; paths as strings)."""
        return self.model_dump(mode="json")


ENV_PREFIX = "GVH_"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | str:
    """``"3s"`` -> 3.0, ``"250ms"`` -> 0.25, ``"1m"`` -> 60.0, ``"1m30s"`` -> 90.0, ``"2.5"`` -> 2.5 seconds.
    Anything else is returned unchanged, for the field's validation to reject with its message."""
    import re

    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", t)
    if parts and "".join(n + u for n, u in parts) == t:
        return sum(float(n) * _UNITS[u] for n, u in parts)
    return text


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env and env[key] != "":
            out[name] = env[key]
    return out


def _from_file(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SettingsError(f"config file: {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file: {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise SettingsError(f"config file: {path} must hold a mapping of setting: value")
    return {str(k).replace("-", "_"): v for k, v in doc.items()}


def load_settings(cli: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                  config_file: str | Path | None = None) -> Settings:
    """Merge the sources and validate; raises SettingsError with one clear message."""
    env = os.environ if env is None else env
    sources: dict[str, str] = {}
    merged: dict[str, Any] = {}
    cfg = config_file or env.get(ENV_PREFIX + "CONFIG")
    if cfg:
        layer = _from_file(Path(cfg))
        merged.update(layer)
        sources.update({k: f"config file {cfg}" for k in layer})
    layer = _from_env(env)
    merged.update(layer)
    sources.update({k: f"environment {ENV_PREFIX}{k.upper()}" for k in layer})
    layer = {k: v for k, v in (cli or {}).items() if v is not None and v != () and v != []}
    merged.update(layer)
    sources.update({k: "command line" for k in layer})
    try:
        return Settings(**merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        named, sep, rest = msg.partition(": ")
        if loc == "settings" and sep and named in Settings.model_fields:  # a cross-field check names its setting
            loc, msg = named, rest
            err = {**err, "input": merged.get(named)}
        src = sources.get(loc.split(".")[0], "default")
        if err.get("type") == "extra_forbidden":
            allowed = ", ".join(sorted(Settings.model_fields))
            raise SettingsError(f"{loc}: unknown setting (from {src}); known settings: {allowed}") from None
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r} from {src})"
        raise SettingsError(f"{loc}: {msg}{shown}") from None
