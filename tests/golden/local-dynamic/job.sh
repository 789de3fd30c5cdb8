#!/bin/bash
# remotebridge.job v1 remote_id=42 stage=chip scheduler=local
# Plain bash for the demo 'local' scheduler: the dynamic runner with its workers as
# local processes, or (runner = "multiprog") the same phases and chunk files as the
# Slurm script, each chunk run by xargs -P over its multi-prog lines (no srun).
set -u
JOBDIR=/scratch/rb/remote_42
# first: the start marker (token, job id); exec finds the job by it after a lost answer
RB_NAME=${SLURM_JOB_NAME:-${MOAB_JOBNAME:-${RB_JOB_NAME:-}}}
printf 'token=%s\njob_id=%s\n' "${RB_NAME##*.}" "${SLURM_JOB_ID:-${MOAB_JOBID:-${RB_JOB_ID:-local}}}" > "$JOBDIR"/job.started
SLOTS=2
cd -- "$JOBDIR" || { echo "rb: cannot enter the job folder" >&2; exit 3; }
mkdir -p status dbinfo
rb_note() { echo "rb: $(date -u +%Y-%m-%dT%H:%M:%SZ) $*"; }
rb_chunk() {
  grep -v '^#' "chunks/$1.conf" | cut -d' ' -f2- | xargs -P "$SLOTS" -L 1 env || rb_note chunk "$1" rc=$?
}

python3 rbhelper.py precheck; [ $? -ne 79 ] || { rb_note inputs missing, ended early; exit 79; }
rb_note phase all: dynamic runner, 1 local workers x 4 cores
python3 rbrunner.py run --workers 1 --cores 4 --walltime 3600 || rb_note runner rc=$?

python3 rbhelper.py summary
rb_note done
