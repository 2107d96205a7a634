#!/usr/bin/env bash
# Packs .devbench/ for bench/devbench.sh on a larger machine: the devbench bundle of ../shared/tools/devbench
# (MariaDB, mydumper/myloader, their libraries, a datadir template), with understudy built from the working
# tree with -tags profile (CPU profiles on $UNDERSTUDY_CPU_PROFILE, peak RSS on stderr), and, with BASE=<commit>,
# a build of that commit as understudy-base for an A/B comparison.
# Usage, from the project's root: [BASE=<commit>] bench/devbench-bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
../shared/tools/devbench/build-bundle.sh >/dev/null
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
tar -C "$T" -xzf .devbench/bundle.tar.gz
CGO_ENABLED=0 go build -tags profile -o "$T/b/bin/understudy" -ldflags "-X main.version=$(git describe --always --dirty)" ./cmd/understudy
if [ -n "${BASE:-}" ]; then
  git worktree add -q --detach "$T/base" "$BASE"
  (cd "$T/base" && CGO_ENABLED=0 go build -tags profile -o "$T/b/bin/understudy-base" -ldflags "-X main.version=$BASE" ./cmd/understudy 2>/dev/null ||
    CGO_ENABLED=0 go build -o "$T/b/bin/understudy-base" -ldflags "-X main.version=$BASE" ./cmd/understudy)
  git worktree remove --force "$T/base"
fi
tar -C "$T" -czf .devbench/bundle.tar.gz b
cp bench/devbench.sh .devbench/
du -sh .devbench
