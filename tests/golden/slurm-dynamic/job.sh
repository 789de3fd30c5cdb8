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
rb_note phase all: dynamic runner, 1 workers x 4 cores
# the leader on the batch node; one worker per node takes tasks as cores free up
python3 rbrunner.py lead --workers 1 --walltime 3600 &
RB_LEADER=$!
srun --kill-on-bad-exit=0 --wait=0 --nodes=1 --ntasks=1 --ntasks-per-node=1 --cpus-per-task=4 python3 rbrunner.py work || rb_note workers srun rc=$?
wait "$RB_LEADER" || rb_note runner rc=$?

python3 rbhelper.py summary
rb_note done
