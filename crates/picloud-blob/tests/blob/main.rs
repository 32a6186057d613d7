//! The blob stores' behaviour: one suite (`suite.rs`) run against the filesystem store
//! and against a real S3-compatible server.

mod fs_store;
mod s3_store;
mod suite;
mod tmpfs;
