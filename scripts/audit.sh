#!/usr/bin/env bash
# Dependency audit (docs/dependencies.md): licences, bans and sources offline, always; RustSec
# advisories against the live database when GitHub is reachable, otherwise against the committed
# snapshot (scripts/advisories), and the log says which one ran.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --version 0.20.2
# `--offline` reads the crates of every platform in Cargo.lock from the cargo home; on a fresh
# machine (empty CARGO_HOME) nothing else has fetched the other platforms' crates yet.
cargo fetch --locked
cargo deny --offline check bans licenses sources
if timeout 20 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny check advisories
  echo "advisories: checked"
else
  echo "advisories: live RustSec database unreachable; checking the committed snapshot instead"
  bash scripts/advisories/check-offline.sh
  echo "advisories: checked against the snapshot only (advisories published after it are not covered; refresh it as scripts/advisories/README.md says)"
fi
