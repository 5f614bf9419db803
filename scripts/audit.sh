#!/usr/bin/env bash
# Dependency audit (docs/dependencies.md): licences, bans and sources offline, always; RustSec
# advisories when the advisory database (on GitHub) can be fetched, otherwise said so loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --version 0.20.2
cargo deny --offline check bans licenses sources
if timeout 20 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny check advisories
  echo "advisories: checked"
else
  echo "advisories: NOT CHECKED (RustSec database unreachable from this machine; run scripts/audit.sh where GitHub is reachable)"
fi
