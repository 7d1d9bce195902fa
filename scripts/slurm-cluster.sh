#!/bin/bash
# A real single-node SLURM cluster on this machine, for testing the sweep's SLURM
# executor: installs Debian's slurm-wlm and munge when missing, writes a minimal
# slurm.conf for this host (no accounting, no cgroups, no systemd), starts munged,
# slurmctld and slurmd, runs the given command with SLURM_CONF pointing at the
# cluster, and stops the daemons when the command ends (or on Ctrl-C).
#
#   scripts/slurm-cluster.sh COMMAND [ARGS...]   run COMMAND against the cluster
#   scripts/slurm-cluster.sh                     start it and wait for Ctrl-C
#
# Needs root (packages, daemons). Everything the cluster writes lives in a fresh
# temporary folder, removed at the end unless LMLOOP_SLURM_KEEP=1.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "error: scripts/slurm-cluster.sh needs root (it installs packages and starts the SLURM daemons)" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm-cluster: installing slurm-wlm and munge" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

STATE=$(mktemp -d /tmp/lmloop-slurm.XXXXXX)
chmod 755 "$STATE"
HOST=$(hostname -s)
CPUS=$(nproc)
PIDS=()

stop() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "${SLURM_CONF:-}" ]] && command -v scancel >/dev/null; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
  fi
  # Stop what this script started, newest first, by process id.
  for (( i=${#PIDS[@]}-1; i>=0; i-- )); do
    kill "${PIDS[$i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ "${LMLOOP_SLURM_KEEP:-0}" == 1 ]]; then
    echo "slurm-cluster: stopped; logs kept in $STATE" >&2
  else
    rm -rf "$STATE"
    echo "slurm-cluster: stopped" >&2
  fi
  exit "$rc"
}
trap stop EXIT
trap 'exit 130' INT TERM

# munge: a key (the package creates one; make one if it is missing) and a private socket.
mkdir -p "$STATE/munge"
KEY=/etc/munge/munge.key
if [[ ! -s $KEY ]]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=$KEY bs=1 count=1024 status=none
  chown munge:munge $KEY
  chmod 400 $KEY
fi
chown munge:munge "$STATE/munge"
SOCKET="$STATE/munge/munge.socket"
runuser -u munge -- munged --foreground --force --socket="$SOCKET" \
  --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed" \
  >"$STATE/munge/munged.out" 2>&1 &
PIDS+=($!)

mkdir -p "$STATE/ctld" "$STATE/spool"
export SLURM_CONF="$STATE/slurm.conf"
cat > "$SLURM_CONF" <<CONF
# Single-node test cluster written by scripts/slurm-cluster.sh.
ClusterName=lmloop
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also sets how long a requeued job waits before it may start again
# (default 120 s); 10 s keeps the requeue test short.
AuthInfo=socket=$SOCKET,cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldPort=${LMLOOP_SLURMCTLD_PORT:-6817}
SlurmdPort=${LMLOOP_SLURMD_PORT:-6818}
# No cgroups, no systemd: processes are tracked by parent id.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=$HOST CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -D -i -f "$SLURM_CONF" >"$STATE/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" -N "$HOST" >"$STATE/slurmd.out" 2>&1 &
PIDS+=($!)

# Wait until the node takes jobs.
for _ in $(seq 120); do
  state=$(sinfo --noheader --nodes="$HOST" --format=%T 2>/dev/null || true)
  if [[ $state == idle* || $state == mixed* ]]; then break; fi
  sleep 0.5
done
if [[ $state != idle* && $state != mixed* ]]; then
  echo "error: the SLURM node did not come up (state '${state:-unknown}'); see $STATE/slurmctld.log and $STATE/slurmd.log" >&2
  LMLOOP_SLURM_KEEP=1
  exit 1
fi
echo "slurm-cluster: node $HOST up with $CPUS CPUs (SLURM_CONF=$SLURM_CONF)" >&2

if [[ $# -gt 0 ]]; then
  "$@"
else
  echo "slurm-cluster: running; Ctrl-C stops it" >&2
  while true; do sleep 3600; done
fi
