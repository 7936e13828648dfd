//! End-to-end tests: the `sealift` binary on real layouts, checked with real tools.

mod e2e {
    pub mod util;

    mod archive;
    mod bundle;
    mod clients;
    mod concurrent;
    mod crash;
    mod daemon;
    mod docker_archive;
    mod hostile;
    mod image_lists;
    mod interop;
    mod migrate;
    mod mirror_config;
    mod registry;
    mod replica;
    mod roundtrip;
    mod s3;
    mod serve;
    mod store_safety;
    mod sync;
    mod verify;
    mod verify_import;
    mod verify_sync;
}
