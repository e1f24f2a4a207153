#!/usr/bin/env bash
# graft's main job on the built-in sample, no registry needed: copy the two-platform sample
# science image shipped in testdata/ into an OCI layout under out/, then inspect it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
graft=target/release/graft
$graft copy oci:testdata/science/jupyter-sci:2.4 oci:out/layout:jupyter-sci-2.4
$graft inspect oci:out/layout:jupyter-sci-2.4
$graft inspect --config --platform linux/arm64 oci:out/layout:jupyter-sci-2.4
