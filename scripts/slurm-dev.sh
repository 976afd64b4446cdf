#!/usr/bin/env bash
# A real single-node Slurm (+ munge) for development and CI, without systemd or cgroups.
#
#   scripts/slurm-dev.sh up      install (Debian packages) if needed, configure, start;
#                                exits 0 once the node takes jobs
#   scripts/slurm-dev.sh down    cancel every job, stop the daemons (by PID file only)
#   scripts/slurm-dev.sh status  one line: up/down, partitions, node state
#
# Partitions: `debug` (default, MaxTime 30 minutes: the plan-time MaxTime check has
# something to refuse) and `batch` (MaxTime 1 day) on node $HOST; `multi` (MaxTime 30
# minutes) on nodes ${HOST}1 and ${HOST}2, two more slurmd on this same host (ports 6828,
# 6829) so multi-node allocations (`sbatch -N 2`, srun across nodes) run for real.
# Debian's Slurm is built with MULTIPLE_SLURMD (`scontrol show config` says Yes): each
# slurmd is started with `-N <node>` and has its own pid file, spool dir and log (%n;
# a shared pid file would make each new slurmd kill the previous one).
# SLURM_CPUS (default 8) CPUs are advertised on however many cores the machine has
# (oversubscribed on purpose, so several 1-core jobs run at once on a 2-core CI box);
# the two `multi` nodes advertise 4 each.
#
# Facts this relies on (measured on Debian 12, Slurm 22.05.8): postinst starts nothing
# without systemd; proctrack/linuxproc + task/none need no cgroups; walltime is whole
# minutes and enforced about every 30 s; finished jobs stay in `squeue -t all` for
# MinJobAge; `sacct` needs accounting storage (not configured here).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SLURM_CPUS=${SLURM_CPUS:-8}
HOST=$(hostname -s)
# Every slurmd of this host: $HOST, then the `multi` partition's two nodes.
NODES="$HOST ${HOST}1 ${HOST}2"

alive() { [ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ]; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "slurm-dev.sh: needs root (installs packages, starts daemons); try sudo" >&2
    exit 1
  fi
}

stop() {  # $1 = pid file, $2 = expected /proc/PID/comm (guards against PID reuse)
  local pid; pid=$(cat "$1" 2>/dev/null) || return 0
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then
    kill "$pid"
    for _ in $(seq 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    [ -e "/proc/$pid" ] && kill -9 "$pid"
  fi
  rm -f "$1"
}

down() {
  need_root
  if command -v scontrol >/dev/null && scontrol ping >/dev/null 2>&1; then
    # Jobs first: slurmstepd and the job's processes outlive slurmd otherwise.
    squeue -h -o %A | xargs -r scancel
    for _ in $(seq 60); do [ -z "$(squeue -h -o %A)" ] && break; sleep 0.5; done
  fi
  stop /run/slurmd.pid slurmd  # a single slurmd's pid file (before the `multi` nodes)
  local n
  for n in $NODES; do stop "/run/slurmd-$n.pid" slurmd; done
  stop /run/slurmctld.pid slurmctld
  [ "${1:-}" = --keep-munge ] || stop /run/munge/munged.pid munged
}

up() {
  need_root
  trap 'echo "slurm-dev.sh up failed; log tails:" >&2; tail -n3 /var/log/slurm/*.log >&2 || true' ERR

  # 1. Packages (policy-rc.d / no systemd: postinst starts nothing).
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
     || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  fi

  # 2. munge: key, runtime dir, daemon as user munge.
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  alive /run/munge/munged.pid munged || runuser -u munge -- /usr/sbin/munged

  # 3. slurm.conf: hardware line from `slurmd -C` with SLURM_CPUS advertised CPUs.
  local node
  node=$(slurmd -C | head -n1 | sed -E "s/CPUs=[0-9]+ .*(RealMemory=)/CPUs=$SLURM_CPUS \1/")
  install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  local n
  for n in $NODES; do install -d /var/lib/slurm/slurmd/"$n"; done
  local new
  new=$(cat <<EOF
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=300
GresTypes=gpu
$node Gres=gpu:fake:2 NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=00:30:00 State=UP
PartitionName=batch Nodes=$HOST MaxTime=1-00:00:00 State=UP
NodeName=${HOST}1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=6828 CPUs=4 RealMemory=2048 State=UNKNOWN
NodeName=${HOST}2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=6829 CPUs=4 RealMemory=2048 State=UNKNOWN
PartitionName=multi Nodes=${HOST}[1-2] MaxTime=00:30:00 State=UP
EOF
)
  # Two made-up GPUs of type "fake": lets tests check --gres lines and the plan's check
  # of a group's gpu_type against the partition's Gres without a GPU. slurmd drops a
  # file-less GPU, so each is a character device that is /dev/null (1,3).
  for i in 0 1; do [ -e /dev/fakegpu$i ] || mknod -m 666 /dev/fakegpu$i c 1 3; done
  local gres="NodeName=$HOST Name=gpu Type=fake File=/dev/fakegpu[0-1]"
  if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$new" ] \
     || [ "$(cat /etc/slurm/gres.conf 2>/dev/null)" != "$gres" ]; then
    echo "$new" > /etc/slurm/slurm.conf
    echo "$gres" > /etc/slurm/gres.conf
    down --keep-munge  # config changed: restart the daemons
    rm -f /var/lib/slurm/slurmctld/clustername  # else fatal "CLUSTER NAME MISMATCH"
  fi

  # 4. Daemons (both fork into the background and write their PID files).
  alive /run/slurmctld.pid slurmctld || /usr/sbin/slurmctld
  for n in $NODES; do alive "/run/slurmd-$n.pid" slurmd || /usr/sbin/slurmd -N "$n"; done

  # 5. Wait (<= 60 s) for every node to be schedulable; resume any left DOWN/DRAIN.
  for _ in $(seq 120); do
    if scontrol ping >/dev/null 2>&1; then
      local state ready=0
      for n in $NODES; do
        state=$(sinfo -h -N -n "$n" -o %T | head -n1)
        case "$state" in
          idle*|mixed*|allocated*) ready=$((ready + 1)) ;;
          down*|drain*) scontrol update NodeName="$n" State=RESUME || true ;;
        esac
      done
      if [ "$ready" = 3 ]; then
        echo "slurm up: nodes $NODES, partitions: $(sinfo -h -o %P | tr '\n' ' ')"; return 0
      fi
    fi
    sleep 0.5
  done
  echo "slurm did not come up; see /var/log/slurm/*.log" >&2
  return 1
}

status() {
  if command -v scontrol >/dev/null && scontrol ping >/dev/null 2>&1; then
    echo "up: $(sinfo -h -o '%P %l %T' | tr '\n' ';')"
  else
    echo "down"
    return 1
  fi
}

case "${1:-}" in
  up) up ;;
  down) down "${2:-}" ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
