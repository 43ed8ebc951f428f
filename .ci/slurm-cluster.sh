#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests/test_slurm.py and CI.
#
#   bash .ci/slurm-cluster.sh          install (once), configure, start; wait until the node is idle
#   bash .ci/slurm-cluster.sh stop     stop the daemons this script started (by their pid files)
#   bash .ci/slurm-cluster.sh status   print sinfo/squeue
#
# Debian's slurm-wlm and munge packages; slurmctld and slurmd on localhost, run as root
# in the background (no systemd needed, works in a container). No cgroups (proctrack/linuxproc,
# task/none) and no accounting database: jobs are followed with squeue, not sacct.
# Safe to run twice: a running cluster with the same configuration is left as it is.
# Needs root (CI and the development machines run as root).
set -euo pipefail

PARTITION=${HERD_SLURM_PARTITION:-main}   # the partition named in profiles/slurm/config.yaml
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid

log() { echo "slurm-cluster: $*" >&2; }

running() {  # running PIDFILE: the process named in the pid file is alive
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_pidfile() {  # stop_pidfile PIDFILE NAME: stop one daemon by the pid it wrote
    if running "$1"; then
        local pid
        pid=$(cat "$1")
        log "stopping $2 (pid $pid)"
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$1"
}

stop() {
    stop_pidfile "$SLURMD_PID" slurmd
    stop_pidfile "$CTLD_PID" slurmctld
    stop_pidfile "$MUNGE_PID" munged
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # the packages' service start is refused in a container without systemd: we start the daemons below
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

start_munge() {
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating the munge key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        fi
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    if ! running "$MUNGE_PID"; then
        log "starting munged"
        runuser -u munge -- munged --pid-file="$MUNGE_PID"
    fi
    for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.2; done
    log "munge does not answer"; exit 1
}

write_conf() {  # writes $CONF; returns 0 when it changed
    local node hw new
    node=$(hostname -s)
    # this machine's CPUs, sockets, cores, threads and memory as slurmd itself sees them
    hw=$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')
    new=$(cat <<EOF
# Written by .ci/slurm-cluster.sh: a single node on localhost, no cgroups, no accounting.
ClusterName=herd
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: they are not available in every container
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# CPUs and memory are both consumable: jobs are packed by cpus_per_task and mem_mb
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# no accounting database: squeue answers for jobs (MinJobAge keeps finished jobs
# visible to it for 10 minutes, longer than snakemake's longest status poll, 3 minutes)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
MpiDefault=none
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=10
NodeName=$node NodeAddr=127.0.0.1 ${hw}State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
)
    install -d "$CONF_DIR"
    if [[ -f $CONF ]] && [[ "$(cat "$CONF")" == "$new" ]]; then
        return 1
    fi
    log "writing $CONF"
    printf '%s\n' "$new" >"$CONF"
    return 0
}

start() {
    install_packages
    install -d -m 0755 /var/spool/slurmctld /var/spool/slurmd "$LOG_DIR"
    start_munge
    if write_conf; then
        # a new configuration: restart whatever runs with the old one
        stop_pidfile "$SLURMD_PID" slurmd
        stop_pidfile "$CTLD_PID" slurmctld
    fi
    if ! running "$CTLD_PID"; then
        log "starting slurmctld"
        slurmctld
    fi
    if ! running "$SLURMD_PID"; then
        log "starting slurmd"
        slurmd
    fi
    for _ in $(seq 120); do
        state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
        if [[ $state == idle || $state == mixed || $state == allocated ]]; then
            log "node $(hostname -s) is $state"
            sinfo
            return 0
        fi
        if [[ $state == drain* || $state == down* ]]; then
            scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true
        fi
        sleep 1
    done
    log "the node did not become idle (state: ${state:-none}); logs follow"
    sinfo -R || true
    tail -n 30 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
    exit 1
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) sinfo; squeue ;;
    *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
