#!/usr/bin/env python3
"""Write containers-image-trusted-root.json: a sigstore trusted root made from the files
containers/image's keyless tests trust, interop/cosign-signatures/containers-image/
fulcio-chain (the Fulcio intermediate, then the root: fulcio_v1.crt.pem) and rekor.pub (the
Rekor key). They are public-good's Fulcio CA and Rekor key. The CA entry holds the
intermediate too: a trusted root's CA entry is the whole path above the leaf (graft takes
no intermediate from the signature).
containers/image checks no SCT, so there is no CT log key here and graft needs
--insecure-ignore-sct with this root. validFor starts are fixed: the Fulcio root's notBefore
(2021-10-07T13:56:59Z) and the Rekor key's start in public-good's trusted root.

Standard library only. `--stdout` prints instead of writing (the test compares the two)."""

import base64
import hashlib
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE.parent / "interop" / "cosign-signatures" / "containers-image"


def pem_ders(path):
    """The DER of each PEM block of `path`, in order."""
    out, body = [], None
    for line in path.read_text().splitlines():
        if line.startswith("-----BEGIN "):
            body = ""
        elif line.startswith("-----END "):
            out.append(base64.b64decode(body))
            body = None
        elif body is not None:
            body += line.strip()
    return out


def pem_der(path):
    (der,) = pem_ders(path)
    return der


def main():
    chain = pem_ders(FIXTURES / "fulcio-chain")
    if chain[-1] != pem_der(FIXTURES / "fulcio_v1.crt.pem"):
        sys.exit("fulcio-chain does not end with fulcio_v1.crt.pem")
    rekor = pem_der(FIXTURES / "rekor.pub")
    root = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [
            {
                "baseUrl": "https://rekor.sigstore.dev",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": base64.b64encode(rekor).decode(),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": "2021-01-12T11:53:27.000Z"},
                },
                "logId": {"keyId": base64.b64encode(hashlib.sha256(rekor).digest()).decode()},
            }
        ],
        "certificateAuthorities": [
            {
                "subject": {"organization": "sigstore.dev", "commonName": "sigstore"},
                "uri": "https://fulcio.sigstore.dev",
                "certChain": {
                    "certificates": [{"rawBytes": base64.b64encode(c).decode()} for c in chain]
                },
                "validFor": {"start": "2021-10-07T13:56:59.000Z"},
            }
        ],
        "ctlogs": [],
    }
    text = json.dumps(root, indent=2) + "\n"
    if "--stdout" in sys.argv[1:]:
        sys.stdout.write(text)
    else:
        (HERE / "containers-image-trusted-root.json").write_text(text)


if __name__ == "__main__":
    main()
