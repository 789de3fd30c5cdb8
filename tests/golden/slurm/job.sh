#!/bin/bash
# remotebridge.job v1 remote_id=42 stage=chip scheduler=slurm
# Submitted by 'cd <job folder> && sbatch job.sh': job.<jobid>.out lands in the job folder.
#SBATCH --job-name=rb42-chip
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=2
#SBATCH --time=01:00:00
#SBATCH --output=job.%j.out
# no requeue: a requeued job reruns from the top; a failed job's tasks are retried by poll
#SBATCH --no-requeue
#SBATCH --partition=batch
#SBATCH --account=ps1
# srun --wait=0: the site's WaitTime must not kill the tasks still running in a chunk
# allocation: 1 nodes x 2 tasks x 2 threads = 2 slots; see allocation.json
set -u
JOBDIR=/scratch/rb/remote_42
# first: the start marker (token, job id); exec finds the job by it after a lost answer
RB_NAME=${SLURM_JOB_NAME:-${MOAB_JOBNAME:-${RB_JOB_NAME:-}}}
printf 'token=%s\njob_id=%s\n' "${RB_NAME##*.}" "${SLURM_JOB_ID:-${MOAB_JOBID:-${RB_JOB_ID:-local}}}" > "$JOBDIR"/job.started
cd -- "$JOBDIR" || { echo "rb: cannot enter the job folder" >&2; exit 3; }
mkdir -p status dbinfo
rb_note() { echo "rb: $(date -u +%Y-%m-%dT%H:%M:%SZ) $*"; }

python3 rbhelper.py precheck; [ $? -ne 79 ] || { rb_note inputs missing, ended early; exit 79; }
rb_note phase pre
python3 rbhelper.py task pre.0000 0

rb_note phase cmd: 3 chunks, run one after another
srun --kill-on-bad-exit=0 --wait=0 --ntasks=2 --cpus-per-task=2 --multi-prog chunks/cmd.0000.conf || rb_note chunk cmd.0000 srun rc=$?
srun --kill-on-bad-exit=0 --wait=0 --ntasks=2 --cpus-per-task=2 --multi-prog chunks/cmd.0001.conf || rb_note chunk cmd.0001 srun rc=$?
srun --kill-on-bad-exit=0 --wait=0 --ntasks=1 --cpus-per-task=2 --multi-prog chunks/cmd.0002.conf || rb_note chunk cmd.0002 srun rc=$?

rb_note phase post
srun --kill-on-bad-exit=0 --wait=0 --ntasks=2 --cpus-per-task=1 --multi-prog chunks/post.0000.conf || rb_note chunk post.0000 srun rc=$?

python3 rbhelper.py summary
rb_note done
