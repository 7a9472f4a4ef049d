#!/usr/bin/env bash
# Stop the test cluster of tests/slurm/start_cluster.sh: slurmd, slurmctld, munged (by their pid files).
# Its config (/etc/slurm), munge key, state and logs stay; start_cluster.sh starts it again.
#   bash tests/slurm/stop_cluster.sh
set -euo pipefail

DIR=${PFS_SLURM_DIR:-/tmp/pfs-slurm}

stop() {  # name pidfile
    local pid
    pid=$(cat "$2" 2>/dev/null) || { echo "[slurm] $1: not running (no $2)"; return 0; }
    if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$1" ]; then
        echo "[slurm] $1: not running"; rm -f "$2"; return 0
    fi
    kill "$pid"
    for _ in $(seq 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    if [ -e "/proc/$pid" ]; then kill -KILL "$pid"; fi
    rm -f "$2"
    echo "[slurm] $1 (pid $pid) stopped"
}

stop slurmd "$DIR/slurmd.pid"
stop slurmctld "$DIR/slurmctld.pid"
stop munged /run/munge/munged.pid
