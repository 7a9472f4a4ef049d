#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (as root), for tests/workflow/test_slurm.py:
#   bash tests/slurm/start_cluster.sh      # installs slurm-wlm + munge if sbatch is missing; safe to run again
#   bash tests/slurm/stop_cluster.sh
# munged with a generated key; slurmctld and slurmd on this host; proctrack/linuxproc, task/none, no accounting
# (so no sacct: run Snakemake with --slurm-status-command squeue); MinJobAge 300 s so finished jobs stay visible
# to squeue and `scontrol show job`; two fake GPUs (gres gpu:2 mapped to /dev/tty1 and /dev/tty2).
# The node's CPUs and memory are this machine's (slurmd -C). Logs, state and spool: $PFS_SLURM_DIR.
set -euo pipefail

DIR=${PFS_SLURM_DIR:-/tmp/pfs-slurm}
CONF_DIR=/etc/slurm             # where Debian's slurm 22.05 (and slurmd/slurmctld/sbatch) read slurm.conf
PARTITION=debug
GPU_FILES=(/dev/tty1 /dev/tty2) # any two existing device files: slurmd only checks that they exist
GPU_RANGE=/dev/tty[1-2]          # the same two, as gres.conf's File= range
TIMEOUT=${PFS_SLURM_TIMEOUT:-60}

say() { echo "[slurm] $*"; }
die() { echo "[slurm] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the cluster's daemons and its jobs run as root)"
start=$(date +%s)

# ---- packages ----------------------------------------------------------------------------------------------
if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge"
    # no systemd here: keep the packages' maintainer scripts from starting services (this script starts them)
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge; }
    if ! apt_install; then   # no or stale package lists
        DEBIAN_FRONTEND=noninteractive apt-get update -q && apt_install
    fi
    say "installed in $(( $(date +%s) - start )) s"
fi

mkdir -p "$DIR"/{log,state,spool} "$CONF_DIR"
HOST=$(hostname -s)
getent hosts "$HOST" >/dev/null || die "hostname $HOST does not resolve (add it to /etc/hosts)"
for f in "${GPU_FILES[@]}"; do   # missing (a minimal container): create them as the tty devices they are named after
    [ -e "$f" ] || mknod -m 620 "$f" c 4 "${f##*tty}" || die "fake GPU device file $f is missing and mknod failed"
done

# a daemon runs when its pid file names a live process of that name
running() {
    local pid
    pid=$(cat "$2" 2>/dev/null) && [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
MUNGED_PID=/run/munge/munged.pid

# ---- config (rewritten only when it changes; a running cluster is reconfigured) ---------------------------
# NodeName=<host> CPUs=... Boards=... SocketsPerBoard=... CoresPerSocket=... ThreadsPerCore=... RealMemory=...
NODE_HW=$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //')
conf=$(cat <<EOF
# Written by tests/slurm/start_cluster.sh: a one-node test cluster, daemons and jobs as root.
ClusterName=pfs
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
MinJobAge=300
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST $NODE_HW Gres=gpu:2 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
gres="NodeName=$HOST Name=gpu File=$GPU_RANGE"
changed=
if [ "$conf" != "$(cat "$CONF_DIR/slurm.conf" 2>/dev/null)" ]; then
    printf '%s\n' "$conf" >"$CONF_DIR/slurm.conf"; changed=1
fi
if [ "$gres" != "$(cat "$CONF_DIR/gres.conf" 2>/dev/null)" ]; then
    printf '%s\n' "$gres" >"$CONF_DIR/gres.conf"; changed=1
fi

# ---- munge ----------------------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    say "generating /etc/munge/munge.key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --force --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    running munged "$MUNGED_PID" && die "munged runs but does not answer; see /var/log/munge/munged.log"
    say "starting munged"
    runuser -u munge -- munged --pid-file="$MUNGED_PID"
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n </dev/null | unmunge >/dev/null || die "munged does not answer; see /var/log/munge/munged.log"
fi

# ---- slurmctld, slurmd -----------------------------------------------------------------------------------------
if running slurmctld "$DIR/slurmctld.pid"; then
    [ -n "$changed" ] && { say "config changed: scontrol reconfigure"; scontrol reconfigure; }
else
    say "starting slurmctld (log: $DIR/log/slurmctld.log)"
    slurmctld -i   # -i: ignore state that does not match the config (a node or partition renamed)
fi
if running slurmd "$DIR/slurmd.pid"; then
    if [ -n "$changed" ]; then   # gres/node hardware changes need a slurmd restart
        say "config changed: restarting slurmd"
        kill "$(cat "$DIR/slurmd.pid")" || true
        for _ in $(seq 100); do running slurmd "$DIR/slurmd.pid" || break; sleep 0.1; done
        slurmd_started=$(date +%s)
        slurmd
    fi
else
    say "starting slurmd (log: $DIR/log/slurmd.log)"
    slurmd_started=$(date +%s)
    slurmd
fi

# ---- wait until the node takes jobs -------------------------------------------------------------------------------
# (a restarted slurmctld restores the node's last state: a slurmd started here must also have registered)
registered() {
    [ -z "${slurmd_started:-}" ] && return 0
    local t
    t=$(scontrol show node "$HOST" 2>/dev/null | grep -oE 'SlurmdStartTime=[^ ]+' | cut -d= -f2)
    [ -n "$t" ] && [ "$(date -d "$t" +%s 2>/dev/null || echo 0)" -ge "$(( slurmd_started - 1 ))" ]
}
state= up=
for _ in $(seq $(( TIMEOUT * 2 ))); do
    state=$(sinfo --noheader --nodes "$HOST" --format %T 2>/dev/null | head -1 || true)
    case "$state" in
        idle|mixed|allocated|completing) registered && { up=1; break; } ;;
        drain*|down*)  # left over from an earlier start (e.g. hardware in the config changed): bring it back
            scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
done
if [ -z "$up" ]; then
    sinfo -R || true
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    die "node $HOST is '${state:-not listed}'$([ -n "$state" ] && echo ' (slurmd not registered)') after ${TIMEOUT} s; logs in $DIR/log"
fi
say "cluster up in $(( $(date +%s) - start )) s: $(sinfo --noheader --format '%P %D node %T cpus=%c mem=%m gres=%G')"
