//! Change subscriptions: a tree's writers count a change for each subscriber after their
//! commit, and wake it.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub(super) struct WatchInner {
    pending: u64,
    waker: Option<Waker>,
    closed: bool,
}

pub(super) struct WatchState {
    pub(super) tree: &'static str,
    pub(super) inner: Mutex<WatchInner>,
}

impl WatchState {
    fn lock(&self) -> std::sync::MutexGuard<'_, WatchInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn notify(&self) {
        let mut s = self.lock();
        s.pending += 1;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    pub(super) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

/// Changes to one tree (see [`Tree::watch`]). Changes are counted, not queued, so an
/// undrained subscriber never holds writers back.
pub struct Subscriber {
    pub(super) state: Arc<WatchState>,
}

impl Subscriber {
    /// Take the changes made so far: whether there were any.
    pub fn take(&self) -> bool {
        std::mem::take(&mut self.state.lock().pending) > 0
    }

    /// Ready with `true` once a change was made (taking every change made so far), with
    /// `false` once the database is closed.
    pub fn poll_changed(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut s = self.state.lock();
        if s.pending > 0 {
            s.pending = 0;
            return Poll::Ready(true);
        }
        if s.closed {
            return Poll::Ready(false);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
