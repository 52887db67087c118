#!/usr/bin/env bash
# Fuzzes every target in turn, one fuzzing process at a time, for SECONDS each (default 600),
# then minimises each corpus into tests/fuzz_corpus/<target>/, beside the seeds and any crash-*
# inputs kept there (see RELIABILITY.md, "Fuzzing").
#
#   cargo install cargo-fuzz
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs RUSTC_BOOTSTRAP=1 on a stable toolchain (cargo-fuzz passes nightly-only flags such as
# -Zsanitizer=address); this script sets it. libFuzzer's log of each run is kept in
# fuzz/logs/<target>.log (ignored by git).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(redis_command label_admission exposition_roundtrip http_headers manifest protobuf_roundtrip)
fi

export RUSTC_BOOTSTRAP=1
python3 seeds.py
cargo fuzz build
mkdir -p logs
failed=()

for target in "${targets[@]}"; do
  status=0
  flags=(-max_total_time="$seconds" -jobs=1 -workers=1 -print_final_stats=1 -timeout=60)
  case "$target" in
    # Their registries are never freed (by design), so LeakSanitizer's check after every input
    # that allocated for good would rescan gigabytes; see fuzz/checks/shared.rs.
    redis_command | label_admission | exposition_roundtrip | protobuf_roundtrip)
      flags+=(-detect_leaks=0 -rss_limit_mb=4096) ;;
  esac
  if [ -f "dict/$target.dict" ]; then
    flags+=(-dict="dict/$target.dict")
  fi
  echo "==> fuzzing $target for ${seconds}s"
  rm -f fuzz-0.log
  cargo fuzz run "$target" -- "${flags[@]}" >/dev/null 2>&1 || status=$?
  mv fuzz-0.log "logs/$target.log"
  grep -E '^(stat::|Done )' "logs/$target.log" || true
  if [ "$status" -ne 0 ]; then
    echo "!! $target failed (status $status); see fuzz/logs/$target.log and fuzz/artifacts/$target/"
    failed+=("$target")
  fi
done

# The corpus kept (and committed under tests/) is a greedy set cover of the edges reached
# (hit counts ignored, which keeps it small), without the leak check for the reason above.
for target in "${targets[@]}"; do
  echo "==> minimising the $target corpus"
  cargo fuzz cmin "$target" corpus/"$target" -- -set_cover_merge=1 -use_counters=0 \
    -detect_leaks=0 -rss_limit_mb=4096 >/dev/null 2>&1
  out=../tests/fuzz_corpus/$target
  mkdir -p "$out"
  find "$out" -type f ! -name 'crash-*' -delete
  cp corpus/"$target"/* "$out"/
  python3 seeds.py ../tests/fuzz_corpus >/dev/null
  echo "$(find "$out" -type f | wc -l) files, $(du -sk --apparent-size "$out" | cut -f1) KiB in tests/fuzz_corpus/$target"
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
