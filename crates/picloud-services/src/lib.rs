//! The services scripts call — kv, docs, files, pubsub, outbound HTTP, secrets,
//! email — as rules and validation over the store. Each service derives the app from
//! the call context, never from script arguments, and checks the caller's capability
//! here, below the script (DESIGN.md decisions 5 and 6).
//!
//! The Foundation release has no I/O services yet: scripts see only the I/O-free
//! standard library of `picloud-script`. This crate is the seam they plug into.
