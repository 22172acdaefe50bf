#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on localhost (no systemd needed), idempotently.
# vpt-replicate uses it for the `slurm`-marked tests and for demos; README.md next
# to this file says what was measured and why each setting is there.
#
#   start.sh [--install] [--fresh] [--no-accounting] [--cgroup]
#
#   --install        apt-get install the Debian packages first (needs root + apt)
#   --fresh          throw away previous cluster state (job ids restart at 1)
#   --no-accounting  no slurmdbd/MariaDB: faster, but `sacct` fails, so submitit
#                    cannot see job states (it then relies on result files only)
#   --cgroup         proctrack/cgroup + task/cgroup (memory limits enforced, OOM
#                    kills); needs a writable cgroup v1 or v2 tree. Default: none.
#
# Environment:
#   SLURM_LOCAL_STATE  state dir (default /tmp/slurm-local/state)
#   SLURM_CONF         where slurm.conf is written (default /etc/slurm/slurm.conf,
#                      the path every slurm client reads without any env var)
#
# Everything listens on 127.0.0.1 only (ports 6817 slurmctld, 6818 slurmd,
# 6819 slurmdbd; MariaDB uses a unix socket, no TCP). Must run as root.
set -euo pipefail

STATE=${SLURM_LOCAL_STATE:-/tmp/slurm-local/state}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
DBDCONF=$(dirname "$CONF")/slurmdbd.conf
ACCOUNTING=1
FRESH=0
INSTALL=0
CGROUP=0
for a in "$@"; do
  case "$a" in
    --install) INSTALL=1 ;;
    --fresh) FRESH=1 ;;
    --no-accounting) ACCOUNTING=0 ;;
    --cgroup) CGROUP=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

T0=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[slurm-local %3d.%02ds] %s\n' $((ms / 1000)) $((ms % 1000 / 10)) "$*"; }
die() {
  log "ERROR: $*"
  for f in "$STATE"/log/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done
  # do not leave half a cluster behind (stop.sh only stops what start.sh recorded)
  [ "${SLURM_LOCAL_KEEP_ON_ERROR:-0}" = 1 ] || bash "$(dirname "$0")/stop.sh" || true
  exit 1
}

trap 'die "command failed (line $LINENO)"' ERR

[ "$(id -u)" = 0 ] || { echo "start.sh must run as root" >&2; exit 1; }

PKGS="slurmctld slurmd slurm-client munge"
[ $ACCOUNTING = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
if [ $INSTALL = 1 ]; then
  missing=""
  for p in $PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    log "apt-get install$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi
for b in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged /usr/bin/sbatch; do
  [ -x "$b" ] || die "$b missing: apt-get install $PKGS (or run with --install)"
done
if [ $ACCOUNTING = 1 ]; then
  for b in /usr/sbin/slurmdbd /usr/sbin/mariadbd /usr/bin/mariadb-install-db; do
    [ -x "$b" ] || die "$b missing: apt-get install slurmdbd mariadb-server (or use --no-accounting)"
  done
fi

# pid_alive FILE NAME: the pid in FILE is alive and its command is NAME
pid_alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ]
}
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2; shift 2
  local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "timed out after ${t}s waiting for $what"
    sleep 0.1
  done
}

if [ $FRESH = 1 ] && [ -d "$STATE" ]; then
  if pid_alive "$STATE/slurmctld.pid" slurmctld || pid_alive "$STATE/slurmd.pid" slurmd; then
    echo "start.sh: --fresh while the cluster is running: run stop.sh first" >&2; exit 1
  fi
  rm -rf "$STATE"
fi
mkdir -p "$STATE"/{ctld,d,log,pids,mysql,mysqlrun}

# ---------------------------------------------------------------- munge
# The Debian package creates /etc/munge/munge.key; make one if it is absent.
if [ ! -s /etc/munge/munge.key ]; then
  log "creating /etc/munge/munge.key"
  install -d -o munge -g munge -m 700 /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
[ -d /run/munge ] || install -d -o munge -g munge -m 755 /run/munge   # /run is a tmpfs on most hosts
[ -d /var/log/munge ] || install -d -o munge -g munge -m 700 /var/log/munge
[ -d /var/lib/munge ] || install -d -o munge -g munge -m 711 /var/lib/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "munged already running"
else
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged
  wait_for 10 munged sh -c 'munge -n | unmunge'
  cp /run/munge/munged.pid "$STATE/pids/munged.pid"   # ours: stop.sh may stop it
  log "munged started (pid $(cat /run/munge/munged.pid))"
fi

# ---------------------------------------------------------------- bind addresses
# With NoInAddrAny the daemons (and srun) bind to the address the host name
# resolves to instead of 0.0.0.0. That is 127.0.0.1 only if /etc/hosts maps the
# host name to loopback (true on these machines: "127.0.0.1 <hostname>").
# Slurm resolves with getaddrinfo(AI_ADDRCONFIG), which finds nothing (not even
# for 0.0.0.0) when the only IPv4 address is 127.0.0.1 -- e.g. in a fresh
# `unshare --net` namespace. A second loopback address (127.0.0.2 on lo) fixes that.
resolve_host() { getent ahostsv4 "$(hostname)" 2>/dev/null | awk 'NR==1{print $1}' || true; }
HOSTADDR=$(resolve_host)
if [ -z "$HOSTADDR" ] && ! ip -o -4 addr show 2>/dev/null | awk '$4 != "127.0.0.1/8"' | grep -q .; then
  log "only 127.0.0.1 configured (isolated network namespace?): adding 127.0.0.2/32 to lo for getaddrinfo(AI_ADDRCONFIG)"
  ip addr add 127.0.0.2/32 dev lo
  HOSTADDR=$(resolve_host)
fi
[ -n "$HOSTADDR" ] || die "host name $(hostname) does not resolve; add '127.0.0.1 $(hostname)' to /etc/hosts"
if [ -n "${SLURM_LOCAL_COMM_PARAMS+x}" ]; then
  COMM=$SLURM_LOCAL_COMM_PARAMS
elif [[ "$HOSTADDR" == 127.* ]]; then
  COMM="NoCtldInAddrAny,NoInAddrAny"
else
  COMM="NoCtldInAddrAny"
  log "WARNING: host name $(hostname) resolves to $HOSTADDR, not 127.x: slurmd/srun/slurmdbd bind 0.0.0.0; add '127.0.0.1 $(hostname)' to /etc/hosts for loopback-only sockets"
fi
COMMLINE=${COMM:+CommunicationParameters=$COMM}

# ---------------------------------------------------------------- slurm.conf
# Hardware line from slurmd -C, node renamed "localhost" so the hostname does not matter.
HW=$(/usr/sbin/slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ *RealMemory=[0-9]*//')
MEM=$(/usr/sbin/slurmd -C | head -n1 | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM=$(( MEM * 9 / 10 ))   # leave some headroom; a node configured above its real memory gets drained
if [ -e "$CONF" ] && ! grep -q '^# generated by slurm-local' "$CONF"; then
  die "$CONF exists and was not written by this script; move it away first"
fi
mkdir -p "$(dirname "$CONF")"
if [ $ACCOUNTING = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
CGCONF=$(dirname "$CONF")/cgroup.conf
if [ $CGROUP = 1 ]; then
  TRACK="ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup,task/affinity"
  printf '%s\n' "# generated by slurm-local start.sh" "CgroupPlugin=autodetect" "ConstrainCores=yes" \
    "ConstrainRAMSpace=yes" "ConstrainSwapSpace=no" > "$CGCONF"
else
  TRACK="# no cgroups: works in containers / VMs without a delegated cgroup tree
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none"
  if [ -f "$CGCONF" ] && grep -q '^# generated by slurm-local' "$CGCONF"; then rm -f "$CGCONF"; fi
fi
NEWCONF=$(cat <<EOF
# generated by slurm-local start.sh -- one node, everything on 127.0.0.1
ClusterName=localcluster
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job waits cred_expire+1 s before it may start again (default 120)
AuthInfo=cred_expire=5
# bind sockets to the resolved address (127.0.0.1), not 0.0.0.0
$COMMLINE
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$TRACK
$ACCT
JobCompType=jobcomp/none
# jobs are not requeueable unless submitted with --requeue, as on many sites: the launcher
# must pass --requeue itself (tests/test_launch_slurm.py checks that it does)
JobRequeue=0
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost $HW RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)
CONF_CHANGED=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$NEWCONF" ]; then
  printf '%s\n' "$NEWCONF" > "$CONF"; CONF_CHANGED=1
fi

# ---------------------------------------------------------------- accounting
if [ $ACCOUNTING = 1 ]; then
  SOCK=$STATE/mysqlrun/mysqld.sock
  chown mysql:mysql "$STATE/mysql" "$STATE/mysqlrun"
  if pid_alive "$STATE/pids/mariadbd.pid" mariadbd; then
    log "mariadbd already running"
  else
    if [ ! -d "$STATE/mysql/mysql" ]; then
      mariadb-install-db --no-defaults --datadir="$STATE/mysql" --user=mysql \
        --auth-root-authentication-method=socket --skip-test-db \
        --innodb-log-file-size=64M > "$STATE/log/mariadb-install-db.log" 2>&1 \
        || die "mariadb-install-db failed"
    fi
    # unix socket only (--skip-networking): no TCP port at all
    setsid /usr/sbin/mariadbd --no-defaults --datadir="$STATE/mysql" --socket="$SOCK" \
      --pid-file="$STATE/mysqlrun/mariadbd.pid" --skip-networking --user=mysql \
      --log-error="$STATE/log/mariadbd.log" --innodb-log-file-size=64M \
      --innodb-buffer-pool-size=512M --innodb-lock-wait-timeout=900 \
      </dev/null >/dev/null 2>&1 &
    wait_for 30 mariadbd mariadb --no-defaults -S "$SOCK" -u root -e 'select 1'
    cp "$STATE/mysqlrun/mariadbd.pid" "$STATE/pids/mariadbd.pid"
    log "mariadbd started (pid $(cat "$STATE/pids/mariadbd.pid"))"
  fi
  cat > "$DBDCONF.new" <<EOF
# generated by slurm-local start.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
$( [[ "$COMM" == *NoInAddrAny* ]] && echo CommunicationParameters=NoInAddrAny )
SlurmUser=root
DebugLevel=info
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/slurmdbd.pid
StorageType=accounting_storage/mysql
# slurmdbd.conf has no socket option: libmariadb takes it from MYSQL_UNIX_PORT
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DBDCONF.new"; mv "$DBDCONF.new" "$DBDCONF"
  if pid_alive "$STATE/slurmdbd.pid" slurmdbd; then
    log "slurmdbd already running"
  else
    rm -f "$STATE/slurmdbd.pid"
    MYSQL_UNIX_PORT=$SOCK /usr/sbin/slurmdbd
    # bash's /dev/tcp instead of `ss`: no dependency on iproute2
    wait_for 30 slurmdbd bash -c '</dev/tcp/127.0.0.1/6819'
    cp "$STATE/slurmdbd.pid" "$STATE/pids/slurmdbd.pid"
    log "slurmdbd started (pid $(cat "$STATE/slurmdbd.pid"))"
  fi
fi

# ---------------------------------------------------------------- slurmctld + slurmd
if [ $CONF_CHANGED = 1 ]; then
  # plugin changes need a restart, not just `scontrol reconfigure`
  for d in slurmd slurmctld; do
    if pid_alive "$STATE/$d.pid" $d; then
      pid=$(cat "$STATE/$d.pid"); kill "$pid"
      for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      log "slurm.conf changed: stopped $d ($pid) to restart it"
    fi
  done
fi
if pid_alive "$STATE/slurmctld.pid" slurmctld; then
  log "slurmctld already running"
else
  rm -f "$STATE/slurmctld.pid"
  /usr/sbin/slurmctld -i
  wait_for 30 slurmctld sh -c 'scontrol ping | grep -q "is UP"'
  cp "$STATE/slurmctld.pid" "$STATE/pids/slurmctld.pid"
  log "slurmctld started (pid $(cat "$STATE/slurmctld.pid"))"
fi
if pid_alive "$STATE/slurmd.pid" slurmd; then
  log "slurmd already running"
else
  rm -f "$STATE/slurmd.pid"
  /usr/sbin/slurmd -N localhost
  wait_for 10 "slurmd pid file" test -s "$STATE/slurmd.pid"
  cp "$STATE/slurmd.pid" "$STATE/pids/slurmd.pid"
  log "slurmd started (pid $(cat "$STATE/slurmd.pid"))"
fi
node_ready() { sinfo -h -N -n localhost -o %T | grep -qE '^(idle|mixed|allocated|completing)$'; }
end=$(( $(date +%s) + 15 ))
until node_ready; do
  if [ "$(date +%s)" -ge "$end" ]; then
    # e.g. left DOWN/DRAINED by an unclean stop
    scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
    wait_for 15 "node localhost to be idle" node_ready
  fi
  sleep 0.1
done
log "cluster up: $(sinfo -h -o '%P %a %D %T %N')"
