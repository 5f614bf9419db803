#!/usr/bin/env bash
# RustSec advisories checked offline, against the committed snapshot in scripts/advisories/crates
# (the advisories published for crates of Cargo.lock when the snapshot was taken; README.md).
# cargo-deny reads an advisory database from `db-path`, in a directory named after the URL, and
# wants it to be a git repository (it reads the HEAD commit time): this script builds one under
# target/ from the snapshot, then runs `cargo deny --offline check advisories` with deny.toml's
# policy (its `ignore` list included) pointed at it. It never touches the network.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
snap="$root/scripts/advisories"
work="$root/target/advisory-snapshot"
# cargo-deny's directory name for https://github.com/rustsec/advisory-db (checked with 0.20.2).
db="$work/dbs/advisory-db-3157b0e258782691"
taken="$(sed -n 's/^taken = "\(.*\)"$/\1/p' "$snap/README.md")"
rm -rf "$work"
mkdir -p "$db"
cp -r "$snap/crates" "$db/"
git -C "$db" init -q
git -C "$db" add -A
GIT_AUTHOR_DATE="${taken}T00:00:00Z" GIT_COMMITTER_DATE="${taken}T00:00:00Z" \
  git -C "$db" -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false \
  commit -q -m "rustsec advisory snapshot taken $taken"
# deny.toml's policy, with the database location added to its [advisories] section.
awk -v p="$work/dbs" '{ print } /^\[advisories\]$/ { print "db-path = \"" p "\""; print "db-urls = [\"https://github.com/rustsec/advisory-db\"]" }' \
  "$root/deny.toml" >"$work/deny.toml"
n="$(find "$db/crates" -name 'RUSTSEC-*.md' | wc -l)"
echo "advisories: checking against the snapshot taken $taken ($n advisories; newer ones are not in it)"
cd "$root"
cargo deny --offline --config "$work/deny.toml" check advisories
# Self-check: without deny.toml's accepted list, the same database must flag the advisories
# known to match Cargo.lock, so a database that silently loads nothing cannot pass.
printf '[advisories]\ndb-path = "%s"\ndb-urls = ["https://github.com/rustsec/advisory-db"]\n' "$work/dbs" >"$work/bare.toml"
if out="$(cargo deny --offline --config "$work/bare.toml" check advisories 2>&1)"; then
  echo "advisories: self-check FAILED: the snapshot flagged nothing without the accepted list" >&2
  exit 1
fi
for id in RUSTSEC-2026-0258 RUSTSEC-2026-0098; do
  grep -q "$id" <<<"$out" || { echo "advisories: self-check FAILED: $id not flagged" >&2; exit 1; }
done
echo "advisories: self-check ok (the snapshot flags the accepted advisories when they are not accepted)"
