#!/usr/bin/env bash
# The whole test suite, on both store backends (the README's test command; `.ci/run` runs it):
# 1. every crate's tests, the end-to-end suite on the embedded SQLite store;
# 2. the end-to-end suite again with every collector on a PostgreSQL 15 server of its own
#    (`RIE_TEST_STORE=postgres`, tests/harness), except the files that already choose their
#    backend (several collectors or a replicated database), which ran in step 1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
mapfile -t chosen < <(grep -lE 'backend = \\?"postgres' tests/*.rs || true)
args=()
for f in tests/*.rs; do
  case " ${chosen[*]} " in *" $f "*) continue ;; esac
  args+=(--test "$(basename "$f" .rs)")
done
RIE_TEST_STORE=postgres cargo test --locked -p rie-e2e "${args[@]}" "$@"
