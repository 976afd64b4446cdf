#!/usr/bin/env bash
# A real single-node Son of Grid Engine (SGE 8.1.9, Debian 12 packages) for development
# and CI: one sge_qmaster + one sge_execd on this host, without systemd.
#
#   scripts/sge-dev.sh up      install (Debian packages, debconf preseeded) if needed,
#                              configure, start; exits 0 once the queue takes jobs
#   scripts/sge-dev.sh down    delete every job, stop the daemons (by PID file only)
#   scripts/sge-dev.sh status  one line: up/down, queue instances and their slots
#
# Queue: `all.q` on this host with SGE_SLOTS (default 8) slots, oversubscribed on
# purpose like slurm-dev.sh (several 1-slot jobs at once on a 2-core CI box), no load
# thresholds (a busy shared box must not put the queue into alarm state), no PE.
#
# Facts this relies on (measured on Debian 12, gridengine 8.1.9+dfsg-10):
# - the packages' postinst initialises the cell from debconf (shared/gridengineconfig,
#   shared/gridenginecell, shared/gridenginemaster) and starts nothing under policy-rc.d;
# - when the host name resolves to 127.0.0.1 and 127.0.0.1 resolves back to `localhost`,
#   every client is refused ("access denied (client IP resolved to host name
#   "localhost". This is not identical to clients host name ...)") until
#   $SGE_ROOT/$SGE_CELL/common/host_aliases maps the aliases to one name (read only at
#   qmaster start);
# - the default global config refuses jobs of uid/gid < 1000 (min_uid/min_gid), and
#   the tests run as root; the scheduler runs every 15 s unless told otherwise;
# - finished jobs leave `qstat` at once; `qacct -j` (accounting file) keeps their end.
# Measured here: `up` from a purged machine 22 s (packages included), when already up 1.6 s.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
SGE_SLOTS=${SGE_SLOTS:-8}
HOST=$(hostname -s)
COMMON=$SGE_ROOT/$SGE_CELL/common
QMASTER_PID=/var/spool/gridengine/qmaster/qmaster.pid
EXECD_PID=/run/gridengine/execd.pid

alive() { [ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ]; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "sge-dev.sh: needs root (installs packages, starts daemons); try sudo" >&2
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
  if command -v qstat >/dev/null && alive "$QMASTER_PID" sge_qmaster; then
    # Jobs first: their shepherds and processes outlive execd otherwise.
    qdel -u '*' '*' >/dev/null 2>&1 || true
    for _ in $(seq 60); do [ -z "$(qstat -u '*' 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  stop "$EXECD_PID" sge_execd
  stop "$QMASTER_PID" sge_qmaster
}

# Apply one SGE object from a file only when it differs: `$1` = show command output,
# `$2` = the desired text, `$3...` = the command that loads a file (the file is appended).
converge() {
  local current=$1 desired=$2; shift 2
  if [ "$current" != "$desired" ]; then
    local f; f=$(mktemp -d)/${OBJ_NAME:-obj}
    printf '%s\n' "$desired" > "$f"
    "$@" "$f" >/dev/null
    rm -rf "$(dirname "$f")"
  fi
}

up() {
  need_root
  trap 'echo "sge-dev.sh up failed; log tails:" >&2; tail -n3 /var/spool/gridengine/qmaster/messages /var/spool/gridengine/execd/*/messages >&2 || true' ERR

  # 1. Packages, answered by debconf preseeding (no prompts; a mail agent comes along).
  if ! command -v qsub >/dev/null || [ ! -x /usr/sbin/sge_qmaster ] || [ ! -x /usr/sbin/sge_execd ]; then
    local p
    for p in gridengine-common gridengine-client gridengine-master gridengine-exec; do
      printf '%s shared/gridengineconfig boolean true\n%s shared/gridenginecell string %s\n%s shared/gridenginemaster string %s\n' \
        "$p" "$p" "$SGE_CELL" "$p" "$HOST"
    done | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends gridengine-master gridengine-exec gridengine-client >/dev/null
  fi
  [ -s "$SGE_ROOT/$SGE_CELL/common/bootstrap" ] || { echo "sge-dev.sh: cell $SGE_CELL not initialised by the packages' postinst" >&2; return 1; }

  # 2. Host names: every name this host answers to is one SGE host.
  local aliases="$HOST" n
  for n in localhost $(hostname) $(getent hosts "$(getent hosts "$HOST" | awk '{print $1; exit}')" | awk '{$1=""; print}') \
           $(awk -v ip="$(getent hosts "$HOST" | awk '{print $1; exit}')" '$1==ip {$1=""; print}' /etc/hosts); do
    case " $aliases " in *" $n "*) ;; *) aliases="$aliases $n" ;; esac
  done
  install -d -o sgeadmin -g sgeadmin /run/gridengine
  if [ "$(cat "$COMMON/host_aliases" 2>/dev/null)" != "$aliases" ] || [ "$(cat "$COMMON/act_qmaster" 2>/dev/null)" != "$HOST" ]; then
    echo "$aliases" > "$COMMON/host_aliases"
    echo "$HOST" > "$COMMON/act_qmaster"
    chown sgeadmin:sgeadmin "$COMMON/act_qmaster" "$COMMON/host_aliases"
    down  # read only at start
  fi

  # 3. qmaster (daemonises, writes its PID file into its spool directory).
  if ! alive "$QMASTER_PID" sge_qmaster; then
    /usr/sbin/sge_qmaster
    for _ in $(seq 60); do qstat >/dev/null 2>&1 && break; sleep 0.5; done
  fi

  # 4. Cluster objects: this host as admin/submit/exec host, global and scheduler
  #    settings, one queue. Each is rewritten only when it differs (idempotent, fast).
  qconf -sh 2>/dev/null | grep -qx "$HOST" || qconf -ah "$HOST" >/dev/null
  qconf -ss 2>/dev/null | grep -qx "$HOST" || qconf -as "$HOST" >/dev/null
  local exechost
  exechost=$(printf '%-21s %s\n' hostname "$HOST" load_scaling NONE complex_values NONE user_lists NONE \
    xuser_lists NONE projects NONE xprojects NONE usage_scaling NONE report_variables NONE)
  if qconf -sel 2>/dev/null | grep -qx "$HOST"; then :; else
    OBJ_NAME=exechost converge "" "$exechost" qconf -Ae
  fi
  local global
  global=$(qconf -sconf global | grep -v '^#' | sed -E \
    -e 's/^(min_uid|min_gid)( +).*/\1\20/' \
    -e 's#^(mailer +).*#\1/bin/true#' \
    -e 's/^(load_report_time +).*/\100:00:10/')
  OBJ_NAME=global converge "$(qconf -sconf global | grep -v '^#')" "$global" qconf -Mconf
  local sched
  sched=$(qconf -ssconf | sed -E \
    -e 's/^(schedule_interval +).*/\10:0:2/' \
    -e 's/^(flush_submit_sec +).*/\11/' \
    -e 's/^(flush_finish_sec +).*/\11/' \
    -e 's/^(job_load_adjustments +).*/\1NONE/' \
    -e 's/^(queue_sort_method +).*/\1seqno/')
  OBJ_NAME=sched converge "$(qconf -ssconf)" "$sched" qconf -Msconf
  local queue
  queue=$(cat <<EOF
qname                 all.q
hostlist              $HOST
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               NONE
rerun                 FALSE
slots                 $SGE_SLOTS
tmpdir                /tmp
shell                 /bin/sh
prolog                NONE
epilog                NONE
shell_start_mode      posix_compliant
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
)
  if qconf -sql 2>/dev/null | grep -qx all.q; then
    OBJ_NAME=all.q converge "$(qconf -sq all.q)" "$queue" qconf -Mq
  else
    OBJ_NAME=all.q converge "" "$queue" qconf -Aq
  fi

  # 5. execd (daemonises; PID file from SGE_EXECD_PIDFILE).
  alive "$EXECD_PID" sge_execd || SGE_EXECD_PIDFILE=$EXECD_PID /usr/sbin/sge_execd

  # 6. Wait (<= 60 s) until the queue instance has reported load (state `u` = unheard).
  for _ in $(seq 120); do
    local line
    line=$(qstat -f -q "all.q@$HOST" 2>/dev/null | awk -v q="all.q@$HOST" '$1==q')
    if [ -n "$line" ] && ! awk '{print $6}' <<<"$line" | grep -q '[uEdD]'; then
      echo "sge up: all.q@$HOST slots $(awk '{print $3}' <<<"$line")"
      return 0
    fi
    sleep 0.5
  done
  echo "sge did not come up; see /var/spool/gridengine/qmaster/messages" >&2
  return 1
}

status() {
  if command -v qstat >/dev/null && qstat >/dev/null 2>&1; then
    echo "up: $(qstat -f 2>/dev/null | awk '/@/ {print $1, $3, $6}' | tr '\n' ';')"
  else
    echo "down"
    return 1
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
