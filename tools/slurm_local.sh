#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for development and the tests (tests/test_slurm.py):
#   sudo tools/slurm_local.sh start     # writes $SLURM_LOCAL_DIR/slurm.conf, starts munged, slurmctld, slurmd
#   export SLURM_CONF=/tmp/vaelab-slurm/slurm.conf    # what the start prints: sbatch, sinfo & co. read it
#   sudo tools/slurm_local.sh stop      # cancels the jobs, then stops the daemons it started
# It installs nothing: Debian/Ubuntu: apt-get install slurm-wlm munge. Root only (the daemons run as root).
# The node is this machine as slurmd detects it (slurmd -C: cores, memory); one partition, "local". No accounting
# database (sacct answers nothing; submitit reads the jobs' result files instead).
set -euo pipefail
STATE=${SLURM_LOCAL_DIR:-/tmp/vaelab-slurm}
CONF=$STATE/slurm.conf

fail() { echo "error: $*" >&2; exit 1; }

start() {
    for program in munged slurmctld slurmd sinfo sbatch scontrol; do
        command -v "$program" >/dev/null || fail "$program not found: install SLURM and munge (apt-get install slurm-wlm munge)"
    done
    [ "$(id -u)" = 0 ] || fail "the SLURM daemons run as root here: sudo $0 start"
    [ -f /etc/munge/munge.key ] || fail "/etc/munge/munge.key is missing (the munge package makes it; or: mungekey -c)"
    mkdir -p "$STATE"/{state,spool,log,munge}
    local node
    node=$(slurmd -C | head -1 | sed 's/ UpTime=.*//')  # NodeName=<host> CPUs=... RealMemory=...
    local host=${node#NodeName=}; host=${host%% *}
    cat > "$CONF" <<CONFIG
# Written by tools/slurm_local.sh: a one-node cluster for development and tests.
ClusterName=vaelab-local
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# A job's signal before its time limit reaches it 60 s early (--signal overrides); KillWait: grace after SIGTERM.
KillWait=30
$node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONFIG
    if ! pgrep -x munged >/dev/null; then
        munged --force --pid-file="$STATE/munge/munged.pid" --socket=/run/munge/munge.socket.2 2>/dev/null \
            || { mkdir -p /run/munge && munged --force --pid-file="$STATE/munge/munged.pid"; }
    fi
    export SLURM_CONF=$CONF
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    for _ in $(seq 60); do
        if [ "$(sinfo -h -o %t 2>/dev/null | head -1)" = idle ]; then
            echo "SLURM is up: node $host idle. export SLURM_CONF=$CONF"
            return 0
        fi
        sleep 1
    done
    sinfo >&2 || true
    fail "the node did not come up idle within 60 s; see $STATE/log/"
}

stop() {
    # The jobs first: their slurmstepd and srun processes outlive the daemons otherwise.
    if [ -f "$STATE/slurmctld.pid" ] && command -v scancel >/dev/null; then
        export SLURM_CONF=$CONF
        squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
        for _ in $(seq 60); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && ! pgrep -x slurmstepd >/dev/null && break
            sleep 0.5
        done
    fi
    if pgrep -x slurmstepd >/dev/null; then  # a step that did not end within 30 s of its cancel
        echo "warning: killing slurmstepd processes left after the jobs were cancelled" >&2
        pkill -KILL -x slurmstepd || true
    fi
    # An srun a job started can outlive its cancelled job (reparented, not tracked): this cluster's ones go too.
    for pid in $(pgrep -x srun || true); do
        if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "SLURM_CONF=$CONF"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for daemon in slurmd slurmctld; do
        if [ -f "$STATE/$daemon.pid" ]; then
            kill "$(cat "$STATE/$daemon.pid")" 2>/dev/null || true
            rm -f "$STATE/$daemon.pid"
        fi
    done
    if [ -f "$STATE/munge/munged.pid" ]; then
        kill "$(cat "$STATE/munge/munged.pid")" 2>/dev/null || true
        rm -f "$STATE/munge/munged.pid"
    fi
    for daemon in slurmd slurmctld; do  # wait until they are gone, so a start right after finds the ports free
        for _ in $(seq 30); do pgrep -x "$daemon" >/dev/null || break; sleep 0.5; done
    done
    echo "SLURM stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) fail "usage: $0 start|stop" ;;
esac
