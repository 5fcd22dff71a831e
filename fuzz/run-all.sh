#!/bin/sh
# Runs every fuzz target for SECONDS each (default 60) on stable Rust (no sanitizer), starting
# from the checked-in seeds; prints one line per target. Crashers land in fuzz/artifacts/TARGET/:
# copy each into fuzz/regressions/TARGET/ once fixed (the regression test replays them).
set -eu
cd "$(dirname "$0")/.."
secs=${1:-60}
cargo fuzz build -s none -O
for t in $(ls fuzz/fuzz_targets | sed 's/\.rs$//'); do
  mkdir -p "fuzz/corpus/$t"
  log=$(mktemp)
  if cargo fuzz run -s none -O "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 >"$log" 2>&1; then
    res=clean
  else
    res="FAILED (see fuzz/artifacts/$t)"
  fi
  runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "$t: $res; $runs(s); $cov; corpus $(ls "fuzz/corpus/$t" | wc -l) inputs"
  rm -f "$log"
done
