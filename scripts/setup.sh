#!/usr/bin/env bash
# Installs what goverse-harness needs on a fresh machine; safe to run again (does nothing when satisfied).
# As root: etcd, PostgreSQL, nftables/iptables (and python3-venv when missing) from apt. Without root: the
# Python side only, and `.venv/bin/goverse-harness doctor` tells what is still missing.
#
# Why a virtual environment (.venv/ in this checkout): Debian 12 and Ubuntu 24.04 mark the system Python
# externally managed (pip refuses to install into it), and one global `goverse-harness` shared by two
# checkouts would silently run whichever was installed last. Each checkout gets its own .venv whose
# editable install points at that checkout; PYTHON picks the interpreter that creates it (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)  # disk latency/EIO faults (FUSE layer)
is_root_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_install() {
  echo "setup: installing $* (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "$@" >/dev/null
}
if [ ${#need_apt[@]} -gt 0 ]; then
  if is_root_apt; then
    apt_install "${need_apt[@]}"
  else
    echo "setup: missing ${need_apt[*]}; install them with your package manager (see 'goverse-harness doctor')" >&2
  fi
fi

PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "setup: PYTHON=$PY not found; set PYTHON to a Python 3.11+ interpreter" >&2
  exit 2
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: PYTHON=$PY is Python $("$PY" -c 'import platform; print(platform.python_version())'); 3.11+ is needed" >&2
  exit 2
fi

venv=.venv
vpy=$root/$venv/bin/python
# The venv is reused only if it works and belongs to this checkout made by this interpreter (a copied or
# moved checkout, or another PYTHON, gets a fresh one).
origin="$root $("$PY" -c 'import sys; print(sys.base_prefix, sys.version)')"
if [ -x "$vpy" ] && { [ "$(cat "$venv/.gvh-origin" 2>/dev/null)" != "$origin" ] || ! "$vpy" -c '' 2>/dev/null; }; then
  echo "setup: $venv was made elsewhere or by another Python; recreating it"
  rm -rf "$venv"
fi
if [ ! -x "$vpy" ]; then
  echo "setup: creating $venv with $("$PY" -c 'import sys; print(sys.executable)')"
  if ! "$PY" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    # Debian/Ubuntu ship venv's pip bootstrap (ensurepip) in a separate package.
    pkg="python3-venv python$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
    if is_root_apt; then
      # shellcheck disable=SC2086 # two package names
      apt_install $pkg || apt_install python3-venv
      "$PY" -m venv "$venv"
    else
      echo "setup: '$PY -m venv' failed; install ${pkg% *} (e.g. sudo apt-get install ${pkg% *}) and run again" >&2
      exit 1
    fi
  fi
  echo "$origin" > "$venv/.gvh-origin"
fi

# Reinstall whenever pyproject.toml changed since the last install (new dependencies), or the editable
# install does not load this checkout's harness. pip keeps its download cache under ~/.cache/pip.
stamp="$venv/.gvh-setup-stamp"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "${GVH_REINSTALL:-}" = 1 ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
   || [ "$(cd / && env -u PYTHONPATH "$vpy" -c 'import harness, os; print(os.path.dirname(os.path.dirname(os.path.realpath(harness.__file__))))' 2>/dev/null)" != "$root" ]; then
  echo "setup: installing goverse-harness and its dependencies into $venv (pip)"
  "$vpy" -m pip install -q --disable-pip-version-check -e ".[dev]"
  echo "$want" > "$stamp"
fi
