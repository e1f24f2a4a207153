#!/usr/bin/env bash
# graft's main job on the built-in sample library, no registry needed: validate the library,
# show the plan, refresh every image into OCI layouts under out/library/, then show the
# breadcrumbs of the result.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
graft=target/release/graft

# The sample library is this repository: graft takes the branch, build number, commit and layer
# times from its git history. A checkout that cannot give them (a detached HEAD, a shallow
# clone, a download without .git) makes graft refuse to guess; the demo then names them.
args=()
if ! git symbolic-ref -q HEAD >/dev/null 2>&1 \
  || [ "$(git rev-parse --is-shallow-repository 2>/dev/null)" != false ]; then
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo 0000000)
  echo "demo: not a full checkout on a branch: using --branch main --build 0 --commit $commit, SOURCE_DATE_EPOCH=0" >&2
  export SOURCE_DATE_EPOCH=0
  args=(--branch main --build 0 --commit "$commit")
fi

$graft validate
$graft plan "${args[@]}"
$graft refresh "${args[@]}"
$graft inspect oci:out/library/sci-notebook:2.4
$graft inspect --breadcrumbs oci:out/library/sci-notebook:2.4
