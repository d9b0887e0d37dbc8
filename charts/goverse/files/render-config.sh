#!/bin/sh
# Render this pod's Goverse config: the shared YAML + this pod's identity + PostgreSQL settings.
#
# Why a script at pod start: Goverse v0.1.1 reads no environment variable, and in config mode a node or
# gate must find its own id in nodes[]/gates[]; pod names and IPs are only known once the pod exists.
# Values are written as single-quoted YAML scalars (quotes doubled), so any password is safe.
set -eu

: "${COMPONENT:?COMPONENT must be node, gate, inspector or pgadmin}"
: "${POD_NAME:?}" "${POD_IP:?}"
SRC="${SRC:-/etc/goverse/config.yaml}"
OUT="${OUT:-/run/goverse/config.yaml}"

q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

postgres_block() {
  pw="$(cat "${POSTGRES_PASSWORD_FILE:?}")"
  printf 'postgres:\n'
  printf '  host: %s\n' "$(q "${POSTGRES_HOST:-goverse-postgres}")"
  printf '  port: %s\n' "${POSTGRES_PORT:-5432}"
  printf '  user: %s\n' "$(q "${POSTGRES_USER:?}")"
  printf '  password: %s\n' "$(q "$pw")"
  printf '  database: %s\n' "$(q "${POSTGRES_DB:-goverse}")"
  printf '  sslmode: %s\n' "$(q "${POSTGRES_SSLMODE:-disable}")"
}

tmp="$OUT.tmp"
{
  cat "$SRC"
  printf '\n'
  case "$COMPONENT" in
    node)
      printf 'nodes:\n'
      printf '  - id: %s\n' "$(q "$POD_NAME")"
      printf '    grpc_addr: %s\n' "$(q "0.0.0.0:${GRPC_PORT:?}")"
      printf '    advertise_addr: %s\n' "$(q "$POD_IP:$GRPC_PORT")"
      printf '    http_addr: %s\n' "$(q "0.0.0.0:${HTTP_PORT:?}")"
      postgres_block
      ;;
    gate)
      printf 'gates:\n'
      printf '  - id: %s\n' "$(q "$POD_NAME")"
      printf '    grpc_addr: %s\n' "$(q "0.0.0.0:${GRPC_PORT:?}")"
      printf '    advertise_addr: %s\n' "$(q "$POD_IP:$GRPC_PORT")"
      printf '    http_addr: %s\n' "$(q "0.0.0.0:${HTTP_PORT:?}")"
      printf '    ops_addr: %s\n' "$(q "0.0.0.0:${OPS_PORT:?}")"
      ;;
    pgadmin)
      postgres_block
      ;;
    inspector)
      ;;
    *)
      echo "render-config: unknown COMPONENT '$COMPONENT'" >&2
      exit 2
      ;;
  esac
} > "$tmp"
mv "$tmp" "$OUT"
echo "render-config: wrote $OUT for $COMPONENT $POD_NAME ($POD_IP)"
