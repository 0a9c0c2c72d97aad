#!/usr/bin/env bash
# Side-by-side benchmark: the original design (BullMQ seed) and Herald, same N, same Redis, one run.
# Usage: bench/compare.sh [N]   (needs Node.js, npm, Redis on 127.0.0.1:6379; PostgreSQL for the
# PostgreSQL row). The peer flushes Redis database 15 only; Herald uses a fresh namespace in db 0.
# CONCURRENCY=C sets Herald's jobs in flight (default: `herald bench`'s own default).
set -euo pipefail
N=${1:-20000}
root=$(cd "$(dirname "$0")/.." && pwd)
peer_dir=${PEER_DIR:-/tmp/herald-peer}
seed=${SEED:-$root/../shared/bench/bullmq-seed.js}
if [ ! -d "$peer_dir/node_modules/bullmq" ]; then
  mkdir -p "$peer_dir" && (cd "$peer_dir" && npm install --silent bullmq@5 ioredis >/dev/null)
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p herald
herald="$root/target/release/herald"
conc=()
if [ -n "${CONCURRENCY:-}" ]; then conc=(--concurrency "$CONCURRENCY"); fi

peer=$(cd "$(dirname "$seed")" && NODE_PATH="$peer_dir/node_modules" N=$N node "$(basename "$seed")")
echo "peer:            $peer"
sqlite_redis=$("$herald" bench --state redis://127.0.0.1:6379/0 --requests "$N" "${conc[@]}" --json)
echo "sqlite + redis:  $sqlite_redis"
schema="herald_bench_$$"
pg_redis=$("$herald" bench --event-store "postgres://postgres@127.0.0.1:5432/test?schema=$schema" \
  --state redis://127.0.0.1:6379/0 --requests "$N" "${conc[@]}" --json) || pg_redis='{}'
psql -h 127.0.0.1 -U postgres -d test -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
echo "postgres + redis: $pg_redis"

python3 - "$peer" "$sqlite_redis" "$pg_redis" <<'PY'
import json, sys
peer, a, b = (json.loads(x) for x in sys.argv[1:4])
def row(name, h):
    if not h:
        print(f"{name:<18} (not run)"); return
    print(f"{name:<18} projected {h['projected_per_s']/peer['projected_per_s']:5.1f}x   "
          f"end-to-end {h['end_to_end_per_s']/peer['end_to_end_per_s']:5.1f}x   "
          f"p50 {h['latency_ms']['p50']:.0f} ms  p99 {h['latency_ms']['p99']:.0f} ms   "
          f"rss {h['peak_rss_mb']:.0f} MiB   lost {h['lost']}   duplicate jobs {h['duplicate_jobs']}")
print(f"\nratios against the peer (projected {peer['projected_per_s']}/s, end-to-end {peer['end_to_end_per_s']}/s):")
row("sqlite + redis", a)
row("postgres + redis", b)
PY
