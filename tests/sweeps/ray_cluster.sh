#!/usr/bin/env bash
# A throw-away Ray cluster on loopback and one rnnlab sweep on it; run by tests/sweeps/test_ray_cluster.py
# as the first process of fresh network and PID namespaces:
#   unshare --net --pid --fork --mount-proc --kill-child bash tests/sweeps/ray_cluster.sh WORKDIR PYTHON ARGS...
# The network namespace has only `lo`, so no Ray port is reachable from outside; in the PID
# namespace `ray stop` sees only this cluster, and every process left ends with this script.
# Environment: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN, RAY_TEMP_DIR (a short path: Ray's socket
# paths must fit in 107 bytes), RAY_PORT, RAY_WORKERS (extra nodes), RAY_CHECK_BAD_TOKEN=1.
set -euo pipefail

workdir=$1 python=$2
shift 2
bin=$(dirname "$python")
port=${RAY_PORT:-6379}
address=127.0.0.1:$port
temp=$RAY_TEMP_DIR

ip link set lo up
stop() {
    "$bin/ray" stop --force >/dev/null 2>&1 || true
}
trap stop EXIT

# The nodes start elsewhere than the sweep: workers must still find the launch directory.
cd "$temp"
common=(--node-ip-address=127.0.0.1 --num-cpus=1 --disable-usage-stats)
echo "== ${SECONDS}s: ray start --head ($address)"
"$bin/ray" start --head --port="$port" --temp-dir="$temp" --include-dashboard=false \
    "${common[@]}" >"$workdir/ray-head.log" 2>&1 || { cat "$workdir/ray-head.log"; exit 1; }
for i in $(seq 1 "${RAY_WORKERS:-1}"); do
    echo "== ${SECONDS}s: ray start --address=$address (worker node $i)"
    "$bin/ray" start --address="$address" "${common[@]}" >"$workdir/ray-worker-$i.log" 2>&1 \
        || { cat "$workdir/ray-worker-$i.log"; exit 1; }
done

if [ -n "${RAY_CHECK_BAD_TOKEN:-}" ]; then
    echo "== ${SECONDS}s: a driver with a wrong token is refused"
    # Ray retries the refused handshake until the reconnect timeout (60 s by default).
    if RAY_AUTH_TOKEN=wrong-token-wrong-token-wrong-tok RAY_gcs_rpc_server_reconnect_timeout_s=5 \
        timeout 120 "$python" -c "import ray; ray.init(address='$address')" \
        >"$workdir/bad-token.log" 2>&1; then
        echo "a driver with a wrong token connected"; exit 1
    fi
    grep -q InvalidAuthToken "$workdir/bad-token.log" && echo "refused: InvalidAuthToken"
fi

echo "== ${SECONDS}s: sweep: python -m framework $* hydra.launcher.ray.init.address=$address"
cd "$workdir"
"$python" -m framework "$@" "hydra.launcher.ray.init.address=$address"
echo "== ${SECONDS}s: sweep done"
