#!/usr/bin/env bash
# A single-node SLURM on localhost for tests/test_sweep_slurm.py: Debian's slurm-wlm and munge installed (skipped if
# present), a slurm.conf written, munged, slurmctld and slurmd started (each only if not running), then a wait until
# `sinfo` shows the node idle. Needs root and apt. Any failure prints one line, `slurm setup failed: <why>`, exit 1.
set -uo pipefail

fail() { echo "slurm setup failed: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (it installs packages and starts daemons)"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || fail "slurm-wlm and munge are not installed and there is no apt-get"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } >/tmp/slurm-apt.log 2>&1 \
    || fail "apt-get install slurm-wlm munge: $(tail -n 1 /tmp/slurm-apt.log)"
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none || fail "cannot write /etc/munge/munge.key"
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 400 /etc/munge/munge.key
chmod 755 /run/munge

memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
cat > /etc/slurm/slurm.conf <<CONF
# written by tests/slurm/setup.sh: one node, localhost
ClusterName=bitnet-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=3600
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=localhost CPUs=$(nproc) RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x munged >/dev/null || runuser -u munge -- munged --force 2>/tmp/slurm-munged.log || munged --force 2>>/tmp/slurm-munged.log \
  || fail "munged did not start: $(tail -n 1 /tmp/slurm-munged.log)"
pgrep -x slurmctld >/dev/null || slurmctld || fail "slurmctld did not start; see /var/log/slurm/slurmctld.log"
pgrep -x slurmd >/dev/null || slurmd || fail "slurmd did not start; see /var/log/slurm/slurmd.log"

for _ in $(seq 60); do
  state=$(sinfo -h -N -n localhost -o %T 2>/dev/null)
  case "$state" in
    idle|mixed|allocated) echo "slurm: node localhost $state"; exit 0 ;;
    down*|drain*) scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 ;;
  esac
  sleep 1
done
fail "the node never became idle in sinfo (state: '${state:-none}'); see /var/log/slurm/slurmd.log and slurmctld.log"
