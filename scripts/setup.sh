#!/usr/bin/env bash
# Installs what goverse-harness needs on a fresh machine; safe to run again (does nothing when satisfied).
# As root: etcd, PostgreSQL, nftables/iptables from apt. Without root: the Python dependencies only, and
# `goverse-harness doctor` tells what is still missing (etcd/PostgreSQL from your package manager).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)  # disk latency/EIO faults (FUSE layer)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing ${need_apt[*]}; install them with your package manager (see 'goverse-harness doctor')" >&2
  fi
fi

PY=${PYTHON:-python3}
# Reinstall whenever pyproject.toml changed since the last install (new dependencies), not only when absent.
stamp=".setup-stamp"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$PY" -c 'import sys; print(sys.executable)')"
if [ "${GVH_REINSTALL:-}" = 1 ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
   || ! "$PY" -m pip show goverse-harness >/dev/null 2>&1; then
  echo "setup: installing goverse-harness and its dependencies (pip)"
  "$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
  echo "$want" > "$stamp"
fi
