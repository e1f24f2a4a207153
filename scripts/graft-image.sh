#!/bin/sh
# graft's own container image, assembled by graft (no daemon, no Dockerfile):
#
#   scripts/graft-image.sh [--key KEY] [--platform P] [--ca FILE] BINARY DEST
#
# Two layers on the empty base (`graft append --base scratch`):
#   1. the CA bundle, at /etc/ssl/certs/ca-certificates.crt (from --ca, default that same path
#      on this machine), so graft can verify registries' TLS certificates;
#   2. BINARY at /graft (a static build: scripts/build-static.sh), the entrypoint.
# Labels and annotations say where it comes from: org.opencontainers.image.source (GRAFT_SOURCE,
# else this checkout's `origin` remote, without credentials), .revision (GRAFT_REVISION, else
# this checkout's HEAD), .version (from `BINARY --version`), .title, .licenses.
# With --key (a cosign key; its password in COSIGN_PASSWORD) the image is signed and gets a
# signed SLSA v1 provenance attestation naming the binary, the CA bundle and the revision,
# both by graft itself.
#
# Deterministic: same binary, CA bundle, labels and SOURCE_DATE_EPOCH (default: the time of
# the revision's commit, else 0) give the same digest. Prints the image digest on stdout.
#
# Environment: GRAFT (the graft that assembles, default BINARY itself), GRAFT_FLAGS (global
# flags for every graft call, e.g. --tls-verify=false), GRAFT_BUILDER_ID (provenance
# builder.id, default https://graft.dev/scripts/graft-image.sh).
set -eu

usage() {
    echo "usage: $0 [--key KEY] [--platform P] [--ca FILE] BINARY DEST" >&2
    exit 2
}

key=""
platform="linux/amd64"
ca="/etc/ssl/certs/ca-certificates.crt"
while [ $# -gt 0 ]; do
    case "$1" in
        --key) [ $# -ge 2 ] || usage; key="$2"; shift 2 ;;
        --platform) [ $# -ge 2 ] || usage; platform="$2"; shift 2 ;;
        --ca) [ $# -ge 2 ] || usage; ca="$2"; shift 2 ;;
        --) shift; break ;;
        -*) echo "graft-image: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
[ $# -eq 2 ] || usage
binary="$1"
dest="$2"
case "$platform" in
    *,*) echo "graft-image: one platform: a binary is built for one" >&2; exit 2 ;;
esac
[ -f "$binary" ] || { echo "graft-image: $binary: no such file" >&2; exit 2; }
[ -f "$ca" ] || { echo "graft-image: CA bundle $ca: no such file (give --ca FILE)" >&2; exit 2; }
if [ -n "$key" ] && [ ! -f "$key" ]; then
    echo "graft-image: key $key: no such file" >&2
    exit 2
fi

here="$(cd "$(dirname "$0")/.." && pwd)"
graft="${GRAFT:-$binary}"
# GRAFT_FLAGS is split into words on purpose (several flags).
# shellcheck disable=SC2086
g() { "$graft" ${GRAFT_FLAGS:-} "$@"; }

version="$("$binary" --version | awk '{print $2}')"
[ -n "$version" ] || { echo "graft-image: $binary --version printed no version" >&2; exit 1; }

revision="${GRAFT_REVISION:-}"
source_url="${GRAFT_SOURCE:-}"
if git -C "$here" rev-parse --git-dir >/dev/null 2>&1; then
    if [ -z "$revision" ]; then
        revision="$(git -C "$here" rev-parse HEAD)"
        if [ -n "$(git -C "$here" status --porcelain --untracked-files=no)" ]; then
            echo "graft-image: warning: the checkout has uncommitted changes; the revision label says $revision" >&2
        fi
    fi
    if [ -z "$source_url" ]; then
        # Any credentials in the remote URL (https://user:token@host/…, ?private_token=…) are
        # dropped, with the query and fragment.
        source_url="$(git -C "$here" remote get-url origin 2>/dev/null | sed -e 's#//[^/@]*@#//#' -e 's#[?#].*$##' || true)"
    fi
    if [ -z "${SOURCE_DATE_EPOCH:-}" ] && [ -n "$revision" ]; then
        SOURCE_DATE_EPOCH="$(git -C "$here" log -1 --format=%ct --end-of-options "$revision" 2>/dev/null || echo 0)"
    fi
fi
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-0}"
export SOURCE_DATE_EPOCH

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/ca/etc/ssl/certs" "$work/bin"
# -L: the bundle is often a symlink (e.g. to /etc/pki/…); the image gets the file itself.
cp -L "$ca" "$work/ca/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$work/ca/etc/ssl/certs/ca-certificates.crt"
cp -L "$binary" "$work/bin/graft"
chmod 0755 "$work/bin/graft"
g -q layer build "$work/ca" -f "$work/ca.tar.gz" >/dev/null
g -q layer build "$work/bin" -f "$work/graft.tar.gz" >/dev/null

set -- \
    --label "org.opencontainers.image.title=graft" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.licenses=Apache-2.0" \
    --annotation "org.opencontainers.image.title=graft" \
    --annotation "org.opencontainers.image.version=$version"
if [ -n "$revision" ]; then
    set -- "$@" --label "org.opencontainers.image.revision=$revision" \
        --annotation "org.opencontainers.image.revision=$revision"
fi
if [ -n "$source_url" ]; then
    set -- "$@" --label "org.opencontainers.image.source=$source_url" \
        --annotation "org.opencontainers.image.source=$source_url"
fi
# The CA bundle first: it changes less often than graft, so its layer is shared longer.
digest="$(g -q append --base scratch --platform "$platform" \
    --layer "$work/ca.tar.gz" --layer "$work/graft.tar.gz" \
    --entrypoint '["/graft"]' \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    "$@" "$dest")"

if [ -n "$key" ]; then
    sha() { sha256sum "$1" | awk '{print $1}'; }
    # Built by a JSON encoder, not by interpolation: a quote or backslash in any value
    # (GRAFT_SOURCE, GRAFT_BUILDER_ID, …) must stay a string.
    set -- "$platform" "$version" "$SOURCE_DATE_EPOCH" \
        "${GRAFT_BUILDER_ID:-https://graft.dev/scripts/graft-image.sh}" \
        "$source_url" "$revision" "$(sha "$work/bin/graft")" \
        "$(sha "$work/ca/etc/ssl/certs/ca-certificates.crt")"
    if command -v python3 >/dev/null 2>&1; then
        python3 -c '
import json, sys
platform, version, sde, builder, source, revision, graft, ca = sys.argv[1:]
deps = []
if revision and source:
    deps.append({"uri": "git+%s@%s" % (source, revision), "digest": {"gitCommit": revision}})
deps.append({"uri": "file:///graft", "digest": {"sha256": graft}})
deps.append({"uri": "file:///etc/ssl/certs/ca-certificates.crt", "digest": {"sha256": ca}})
print(json.dumps({"buildDefinition": {"buildType": "https://graft.dev/buildtypes/self-image/v1",
    "externalParameters": {"platform": platform, "version": version, "entrypoint": ["/graft"]},
    "internalParameters": {"sourceDateEpoch": sde}, "resolvedDependencies": deps},
    "runDetails": {"builder": {"id": builder}, "metadata": {}}}, separators=(",", ":")))
' "$@" >"$work/provenance.json"
    elif command -v jq >/dev/null 2>&1; then
        jq -cn --arg platform "$1" --arg version "$2" --arg sde "$3" --arg builder "$4" \
            --arg source "$5" --arg revision "$6" --arg graft "$7" --arg ca "$8" '
            {buildDefinition: {buildType: "https://graft.dev/buildtypes/self-image/v1",
              externalParameters: {platform: $platform, version: $version, entrypoint: ["/graft"]},
              internalParameters: {sourceDateEpoch: $sde},
              resolvedDependencies: ((if $revision != "" and $source != "" then
                  [{uri: "git+\($source)@\($revision)", digest: {gitCommit: $revision}}] else [] end)
                + [{uri: "file:///graft", digest: {sha256: $graft}},
                   {uri: "file:///etc/ssl/certs/ca-certificates.crt", digest: {sha256: $ca}}])},
             runDetails: {builder: {id: $builder}, metadata: {}}}' >"$work/provenance.json"
    else
        echo "graft-image: --key needs python3 or jq to write the provenance statement" >&2
        exit 1
    fi    # A registry image is signed by digest (a tag moved in between cannot take the
    # signature); layout references have no digest form, and graft resolves their tag once.
    case "$dest" in
        *@sha256:*|oci:*|oci-archive:*) ref="$dest" ;;
        *) ref="$(printf '%s' "$dest" | sed -e 's#:[^:/@]*$##')@$digest" ;;
    esac
    g -q sign --key "$key" "$ref" >/dev/null
    g -q attest --key "$key" --type slsaprovenance1 --predicate "$work/provenance.json" "$ref" >/dev/null
fi
echo "$digest"
