#!/usr/bin/env bash
# The Spark example on a Spark standalone cluster of three hosts: a master and two workers,
# each in its own network namespace with its own address on a bridge (10.77.0.0/24), the
# driver on the bridge itself. Training runs as one barrier job over both workers (two ranks
# exchanging over TCP between the hosts); while prediction runs, the second worker is killed
# and its tasks must be retried on the first, leaving the output complete.
#
#     sudo ./examples/spark/cluster.sh [OUT_DIR]
#
# Needs root (ip netns, veth, a bridge), Java 17 and the destiny package with PySpark
# (pip install "./crates/destiny-python[spark]"). Every host sees the same file system, as
# hosts that share a network folder do. Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:-work-data/spark-cluster}")
ratings=$(scripts/fetch-movielens.sh)
python=$(command -v python3)
spark_home=$("$python" -c "import os, pyspark; print(os.path.dirname(pyspark.__file__))")
prefix=dsty$$
bridge=${prefix}br
subnet=10.77.0

hosts=(master worker1 worker2)
declare -A address=([master]=$subnet.10 [worker1]=$subnet.11 [worker2]=$subnet.12)

cleanup() {
    for host in "${hosts[@]}"; do
        ns=$prefix-$host
        if ip netns list | grep -qw "$ns"; then
            ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
            ip netns del "$ns"
        fi
    done
    ip link del "$bridge" 2>/dev/null || true
    { wait; } 2>/dev/null || true
}
trap cleanup EXIT

ip link add "$bridge" type bridge
ip addr add "$subnet.1/24" dev "$bridge"
ip link set "$bridge" up
for i in "${!hosts[@]}"; do
    host=${hosts[$i]}
    ns=$prefix-$host
    ip netns add "$ns"
    ip link add "${prefix}v$i" type veth peer name eth0 netns "$ns"
    ip link set "${prefix}v$i" master "$bridge" up
    ip netns exec "$ns" ip addr add "${address[$host]}/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip link set lo up
done

rm -rf "$out" && mkdir -p "$out/logs"
on() { # on HOST COMMAND...: runs COMMAND on HOST, in the background, logging to OUT/logs.
    local host=$1
    shift
    ip netns exec "$prefix-$host" env SPARK_LOCAL_IP="${address[$host]}" \
        SPARK_HOME="$spark_home" PYSPARK_PYTHON="$python" \
        "$spark_home/bin/spark-class" "$@" >"$out/logs/$host.log" 2>&1 &
}
master_url=spark://${address[master]}:7077
on master org.apache.spark.deploy.master.Master --host "${address[master]}" --port 7077 --webui-port 8080
for worker in worker1 worker2; do
    on "$worker" org.apache.spark.deploy.worker.Worker "$master_url" --host "${address[$worker]}" \
        --cores 1 --memory 2g --work-dir "$out/$worker" --webui-port 8081
done

"$python" examples/spark/cluster_job.py --master "$master_url" --driver-host "$subnet.1" \
    --workers 2 --kill "ip netns pids $prefix-worker2 | xargs -r kill -9" "$ratings" "$out"
