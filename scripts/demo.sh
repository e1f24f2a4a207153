#!/usr/bin/env bash
# graft's main job on the built-in sample library, no registry needed: validate the library,
# show the plan, refresh every image into OCI layouts under out/library/, then show the
# breadcrumbs of the result.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
graft=target/release/graft
$graft validate
$graft plan
$graft refresh
$graft inspect oci:out/library/sci-notebook:2.4
$graft inspect --breadcrumbs oci:out/library/sci-notebook:2.4
