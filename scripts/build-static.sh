#!/bin/sh
# Build graft's release binary statically linked (glibc, +crt-static) and check that it is:
#   scripts/build-static.sh [CARGO_ARGS…]
# Prints the binary's path on stdout. Only x86_64-unknown-linux-gnu is supported (the one
# target whose standard library is installed here); see README "Install" and
# docs/decisions.md §25, which also explain the DNS caveat of a static glibc binary.
set -eu
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
if [ "$(uname -m)" != x86_64 ]; then
    echo "build-static: only $triple is supported (this machine is $(uname -m))" >&2
    exit 2
fi
if [ -n "${RUSTFLAGS:-}" ]; then
    # RUSTFLAGS replaces the target rustflags of .cargo/config.toml, +crt-static included.
    echo "build-static: RUSTFLAGS is set and would drop +crt-static; unset it" >&2
    exit 2
fi
cargo build-static "$@" >&2
bin="target/$triple/release/graft"
# `file` says "static-pie linked" or "statically linked"; ldd says "not a dynamic executable"
# (or "statically linked"): either way, no shared library may be named.
if ldd "$bin" 2>&1 | grep -q '=>'; then
    echo "build-static: $bin is dynamically linked:" >&2
    ldd "$bin" >&2
    exit 1
fi
echo "$bin"
