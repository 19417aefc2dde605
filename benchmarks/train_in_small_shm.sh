#!/bin/bash
# `synthjax train` with 2 Grain workers in a 64 MB /dev/shm (Docker's default), in a mount
# namespace of its own (needs root or unprivileged user namespaces): does it train, and how
# much shared memory does it hold at most? Samples the bytes in /dev/shm every 10 ms.
#
#   bash benchmarks/train_in_small_shm.sh [SIZE] [TRAIN ARGS...]
#   bash benchmarks/train_in_small_shm.sh 64m ../shared/data/fetal/sub-*/anat/*_dseg.nii.gz \
#       --preset fetal --down 4 --shape 64 64 64 --batch 2 --steps 40
set -euo pipefail
size=${1:-64m}
shift || true
out=$(mktemp -d)/run
exec unshare -m bash -c '
  set -u
  mount -t tmpfs -o size='"$size"' tmpfs /dev/shm
  peak=0
  (while true; do
     b=$(find /dev/shm -maxdepth 1 -type f ! -name "sem.*" -printf "%s\n" | awk "{s+=\$1} END {print s+0}")
     [ "$b" -gt "$peak" ] && peak=$b && echo "$peak" > /tmp/shm_peak_$$
     sleep 0.01
   done) &
  sampler=$!
  start=$(date +%s.%N)
  synthjax train "$@" -o '"$out"' --workers 2 --quiet; rc=$?
  end=$(date +%s.%N)
  kill $sampler
  echo "exit status $rc; $(awk "BEGIN {print $end - $start}") s; peak /dev/shm use $(cat /tmp/shm_peak_$$ 2>/dev/null || echo 0) bytes of '"$size"'; left in /dev/shm: $(ls /dev/shm | wc -l) entries"
  exit $rc
' bash "$@"
