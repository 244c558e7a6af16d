//! Slow work on a thread of its own, awaited as a future.
//!
//! uniffi polls an async export's future from the foreign side (a Kotlin
//! coroutine, a Swift task); the work itself blocks (SQLite, files, the
//! blocking HTTP client), so it runs on a fresh thread and the future only
//! waits for its result. Dropping the future (the coroutine or task was
//! cancelled) runs `on_cancel`, which for a sync stops it at its next
//! request boundary.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::GridworkError;

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

pub(crate) struct Offloaded<T> {
    slot: Arc<Mutex<Slot<Result<T, GridworkError>>>>,
    done: bool,
    on_cancel: Option<Box<dyn FnOnce() + Send>>,
}

/// Run `work` on a new thread named `name`.
pub(crate) fn offload<T, F>(name: &str, work: F) -> Offloaded<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, GridworkError> + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot { value: None, waker: None }));
    let filled = slot.clone();
    let spawned = std::thread::Builder::new().name(format!("gridwork-{name}")).spawn(move || {
        // A panic is a bug; the caller still gets an answer.
        let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .unwrap_or_else(|_| Err(GridworkError::internal("a worker thread panicked")));
        let mut slot = filled.lock().unwrap_or_else(|e| e.into_inner());
        slot.value = Some(value);
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    });
    if spawned.is_err() {
        slot.lock().unwrap_or_else(|e| e.into_inner()).value = Some(Err(GridworkError::internal("cannot start a worker thread")));
    }
    Offloaded { slot, done: false, on_cancel: None }
}

impl<T> Offloaded<T> {
    /// Run `cancel` if the future is dropped before the work finished.
    pub(crate) fn on_cancel(mut self, cancel: impl FnOnce() + Send + 'static) -> Self {
        self.on_cancel = Some(Box::new(cancel));
        self
    }
}

impl<T> Future for Offloaded<T> {
    type Output = Result<T, GridworkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let taken = {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            match slot.value.take() {
                Some(value) => Some(value),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    None
                }
            }
        };
        match taken {
            Some(value) => {
                self.done = true;
                Poll::Ready(value)
            }
            None => Poll::Pending,
        }
    }
}

impl<T> Drop for Offloaded<T> {
    fn drop(&mut self) {
        if !self.done
            && let Some(cancel) = self.on_cancel.take()
        {
            cancel();
        }
    }
}
