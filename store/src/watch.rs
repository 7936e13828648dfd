//! Change notification for what repositories reach: tags and referrer links.
//!
//! Readers that cache "what does repository R reach" (the registry in `sealift-serve`)
//! must drop the cache when a tag moves or a referrer arrives. The store is opened by one
//! process at a time, so every such change happens in this process and sled's subscribers
//! see all of them, with no polling and no counter kept on disk.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::store::Store;

/// A subscription to changes of the `tags` and `referrers` trees. It must be drained
/// ([`ReachWatch::changed`] awaited in a loop): sled blocks writers once a subscriber has
/// 1024 unread events.
pub struct ReachWatch {
    tags: sled::Subscriber,
    referrers: sled::Subscriber,
}

impl Store {
    /// Subscribe to tag and referrer changes (see [`ReachWatch`]).
    pub fn watch_reach(&self) -> ReachWatch {
        ReachWatch {
            tags: self.tags.watch_prefix(Vec::new()),
            referrers: self.referrers.watch_prefix(Vec::new()),
        }
    }
}

impl ReachWatch {
    /// Wait for the next change. `false` when the store was closed.
    pub fn changed(&mut self) -> Changed<'_> {
        Changed(self)
    }
}

/// The future of [`ReachWatch::changed`].
pub struct Changed<'a>(&'a mut ReachWatch);

impl Future for Changed<'_> {
    type Output = bool;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let w = &mut *self.0;
        for sub in [&mut w.tags, &mut w.referrers] {
            if let Poll::Ready(ev) = Pin::new(sub).poll(cx) {
                return Poll::Ready(ev.is_some());
            }
        }
        Poll::Pending
    }
}
