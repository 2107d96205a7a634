#!/usr/bin/env bash
# Packs .devbench/ for bench/devbench.sh on a larger machine: the devbench bundle of ../shared/tools/devbench
# (MariaDB, mydumper/myloader, their libraries, a datadir template), with understudy built at COMMIT (default
# HEAD; COMMIT= for the working tree as it is) with -tags profile (CPU profiles on $UNDERSTUDY_CPU_PROFILE, peak
# RSS on stderr); with BASE=<commit>, a build of that commit as understudy-base for an A/B comparison; with
# VARIANTS="NAME=LDFLAGS;…", more builds of COMMIT with those -ldflags.
# Usage, from the project's root: [COMMIT=<commit>] [BASE=<commit>] [VARIANTS=…] bench/devbench-bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
../shared/tools/devbench/build-bundle.sh >/dev/null
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
tar -C "$T" -xzf .devbench/bundle.tar.gz
# build NAME COMMIT [LDFLAGS]: understudy at COMMIT ("" for the working tree as it is) into the bundle as NAME
build() {
  local dir=$ROOT
  if [ -n "$2" ]; then dir=$T/src; git worktree add -q --detach "$dir" "$2"; fi
  (cd "$dir" && CGO_ENABLED=0 go build -tags profile -o "$T/b/bin/$1" -ldflags "-s -w -X main.version=$(git describe --always --dirty) ${3:-}" ./cmd/understudy 2>/dev/null ||
    CGO_ENABLED=0 go build -o "$T/b/bin/$1" -ldflags "-s -w -X main.version=$(git describe --always --dirty) ${3:-}" ./cmd/understudy)
  if [ -n "$2" ]; then git worktree remove --force "$dir"; fi
}
build understudy "${COMMIT-HEAD}"
if [ -n "${BASE:-}" ]; then build understudy-base "$BASE"; fi
# VARIANTS="NAME=LDFLAGS;…": more builds of COMMIT, each with its -ldflags (an experiment's -X settings)
IFS=';' read -ra vs <<<"${VARIANTS:-}"
for v in "${vs[@]}"; do build "${v%%=*}" "${COMMIT-HEAD}" "${v#*=}"; done
tar -C "$T" -czf .devbench/bundle.tar.gz b
cp bench/devbench.sh .devbench/
du -sh .devbench
