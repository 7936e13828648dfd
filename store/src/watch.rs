//! Change notification for what repositories reach: tags and referrer links.
//!
//! Readers that cache "what does repository R reach" (the registry in `sealift-serve`)
//! must drop the cache when a tag moves or a referrer arrives. The store is opened by one
//! process at a time, so every such change happens in this process and the metadata
//! engine's subscribers (`crate::kv`) see all of them, with no polling and no counter kept
//! on disk.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::store::Store;

/// A subscription to changes of the `tags` and `referrers` trees. Changes are counted, not
/// queued, so a watch that is not drained costs nothing. A change made by a call that has returned is always seen by
/// [`ReachWatch::take_pending`], with no waiting: a reader that checks it before trusting a
/// cache never misses a tag set a moment ago.
pub struct ReachWatch {
    tags: crate::kv::Subscriber,
    referrers: crate::kv::Subscriber,
}

impl Store {
    /// Subscribe to tag and referrer changes (see [`ReachWatch`]).
    pub fn watch_reach(&self) -> ReachWatch {
        ReachWatch {
            tags: self.tags.watch(),
            referrers: self.referrers.watch(),
        }
    }
}

impl ReachWatch {
    /// Wait for the next change. `false` when the store was closed.
    pub fn changed(&mut self) -> Changed<'_> {
        Changed(self)
    }

    /// Poll for the next change (for callers that keep the watch behind a lock).
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        for sub in [&self.tags, &self.referrers] {
            if let Poll::Ready(open) = sub.poll_changed(cx) {
                return Poll::Ready(open);
            }
        }
        Poll::Pending
    }

    /// Consume the changes already made, without waiting; whether there were any.
    pub fn take_pending(&mut self) -> bool {
        // Both: taking one must not leave the other's changes for later.
        let tags = self.tags.take();
        let referrers = self.referrers.take();
        tags || referrers
    }
}

/// The future of [`ReachWatch::changed`].
pub struct Changed<'a>(&'a mut ReachWatch);

impl Future for Changed<'_> {
    type Output = bool;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        self.0.poll_changed(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealift_oci::Digest;

    #[test]
    fn changes_made_are_pending_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut watch = store.watch_reach();
        assert!(!watch.take_pending());
        let lease = store.lease("test", None).unwrap();
        let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let d = Digest::sha256(bytes);
        store
            .put_manifest(&lease, bytes, crate::ManifestOptions::default())
            .unwrap();
        assert!(!watch.take_pending(), "no tag or referrer changed");
        let repo = "a/b".parse().unwrap();
        let tag = "1".parse().unwrap();
        store.set_tag(&repo, &tag, &d).unwrap();
        assert!(watch.take_pending());
        assert!(!watch.take_pending());
        store.remove_tag(&repo, &tag).unwrap();
        assert!(watch.take_pending());
    }
}
