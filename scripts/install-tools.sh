#!/usr/bin/env bash
# Installs the peer tools pinned in scripts/tools.env (cosign v2 and v3, crane, oras, regctl) with
# `go install`, each into $(go env GOPATH)/graft-tools/NAME-VERSION/, and builds tools/refreg (a
# registry with the referrers API) into target/tools/. An installed version is kept: only the first
# run (or a new pin) pays. Fails if Go is missing or an install fails: the suite never runs without
# the tools it checks graft against.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null || { echo "install-tools: Go is required (the polyglot machine has it)" >&2; exit 1; }
root="$(go env GOPATH)/graft-tools"
while IFS='=' read -r name spec; do
  case "$name" in ''|'#'*) continue ;; esac
  version="${spec##*@}"
  dir="$root/$name-$version"
  if [ ! -x "$dir/bin/$(basename "${spec%@*}")" ]; then
    echo "install-tools: go install $spec" >&2
    mkdir -p "$dir"
    GOBIN="$dir/bin" GOFLAGS=-buildvcs=false go install "$spec"
  fi
done < scripts/tools.env

# The referrers-API registry: rebuilt when its source changes (go's build cache makes that cheap).
mkdir -p target/tools
(cd tools/refreg && GOFLAGS=-buildvcs=false go build -o ../../target/tools/refreg .)
