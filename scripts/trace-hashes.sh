#!/usr/bin/env bash
# Prints the combined trace hashes of a fixed set of simulator runs, so that a
# refactoring can show it changed no behaviour: run it before and after and
# compare the output (it must be identical line for line).
#
#   scripts/trace-hashes.sh [REPO_DIR] > hashes.txt
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
cargo build --release -q -p chorus-sim 2>&1 | grep -E "^error" | head -5 || true
bin=./target/release/chorus-sim
h() { "$bin" run "$@" 2>/dev/null | grep -i "combined-hash" | tr -s " " | cut -d" " -f2 | head -1; }
echo "raft5   $(h --seeds 0..200)"
echo "raft3   $(h --seeds 0..100 --nodes 3)"
echo "raft7b  $(h --seeds 0..60 --nodes 7 --bug ack-before-commit)"
echo "swim    $(h --system swim --seeds 0..200)"
echo "swim50  $(h --system swim --seeds 0..5 --nodes 50)"
for b in $("$bin" bugs 2>/dev/null | awk '{print $1}' | grep -E '^[a-z]+(-[a-z]+)+$' | sort -u); do
  echo "bug-$b $(h --seeds 0..40 --bug "$b")"
done | sha256sum | sed 's/^/allbugs /'
