#!/usr/bin/env bash
# The whole test suite, installing what it needs: formatting, lints, unit tests and the
# integration tests against real registries (docker-registry, and one with the referrers API)
# with skopeo, umoci, openssl, cosign, crane, oras and regctl.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v docker-registry >/dev/null || need_pkgs+=(docker-registry)
command -v skopeo >/dev/null || need_pkgs+=(skopeo)
command -v umoci >/dev/null || need_pkgs+=(umoci)
command -v htpasswd >/dev/null || need_pkgs+=(apache2-utils)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# Independent checks of signing: Python cryptography + PyNaCl decrypt the keys graft writes.
if ! python3 -c 'import nacl, cryptography' 2>/dev/null && ! /usr/bin/python3 -c 'import nacl, cryptography' 2>/dev/null; then
  need_pkgs+=(python3-cryptography python3-nacl)
fi
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
command -v zstd >/dev/null || need_pkgs+=(zstd)
command -v buildah >/dev/null || need_pkgs+=(buildah)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing: ${need_pkgs[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# The in-toto-attestation package (PyPI) validates graft's SLSA provenance statements.
if ! target/py-intoto/bin/python -c 'import in_toto_attestation' 2>/dev/null; then
  echo "installing in-toto-attestation into target/py-intoto" >&2
  rm -rf target/py-intoto
  python3 -m venv target/py-intoto
  target/py-intoto/bin/pip install -q --disable-pip-version-check in-toto-attestation==0.9.3
fi

# The peer tools graft is checked against (cosign, crane, oras, regctl, pinned in
# scripts/tools.env) and the referrers-API registry (tools/refreg).
./scripts/install-tools.sh

cargo fmt --all -- --check
# The layering of docs/architecture.md: no module imports from a layer above its own.
python3 scripts/check-layers.py --self-test
python3 scripts/check-layers.py
# Layer digests depend on the deflate backend: flate2 must use zlib-rs and nothing else
# (docs/decisions.md, "Deterministic layer compression"). Feature unification could add one.
flate2_features=$(cargo tree --locked -e features -i flate2 | grep -oE 'flate2 feature "[^"]+"' | sort -u | sed -E 's/.*"(.*)"/\1/')
unexpected=$(echo "$flate2_features" | grep -vxE 'any_impl|any_zlib|zlib-rs' || true)
if ! echo "$flate2_features" | grep -qx zlib-rs || [ -n "$unexpected" ]; then
  echo "flate2 must be built with exactly the zlib-rs backend; features found:" $flate2_features >&2
  exit 1
fi
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
