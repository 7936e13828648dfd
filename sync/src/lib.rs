//! sealift-sync
