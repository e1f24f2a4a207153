//! graft's integration tests: real registries (Debian's docker-registry), real clients
//! (skopeo, umoci, openssl), and the graft binary.

mod copy;
mod graft;
mod harness;
mod layout;
mod sign;
mod support;
