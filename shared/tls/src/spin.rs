//! Busy polling on a serving thread, for a short while after it last saw work.
//!
//! A thread that parks in `epoll_wait` and is woken by the next packet pays for the wake-up: a
//! context switch and, on an idle CPU (more so in a virtual machine), the CPU's own way back
//! from its idle state. At light load a proxy pays that twice per request, when the request
//! arrives and when the upstream answers. So a serving thread keeps polling its sockets, without
//! blocking, for a window after a request arrived or was answered on it, and parks only when the
//! window has passed with no new work. A thread without requests costs nothing; under load the
//! thread is busy anyway, and each turn of the poll offers the CPU to whatever else is waiting
//! for it (`sched_yield`).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// A spinner runs on this thread.
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static LAST_WORK: Cell<Option<Instant>> = const { Cell::new(None) };
    static PARKED: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// Turns of the poll taken on this thread, which the tests watch.
    #[cfg(test)]
    static TURNS: Cell<u64> = const { Cell::new(0) };
}

/// Marks work on this thread: its spinner (if it has one) polls for its window from now.
pub(crate) fn touch() {
    if !ENABLED.get() {
        return;
    }
    LAST_WORK.set(Some(Instant::now()));
    if let Some(waker) = PARKED.with_borrow_mut(Option::take) {
        waker.wake();
    }
}

fn within(window: Duration) -> bool {
    LAST_WORK.get().is_some_and(|t| t.elapsed() < window)
}

/// Runs on a serving thread's single-threaded runtime for as long as it serves.
pub(crate) async fn spinner(window: Duration) {
    ENABLED.set(true);
    loop {
        poll_fn(|cx| {
            if within(window) {
                return Poll::Ready(());
            }
            PARKED.with_borrow_mut(|w| *w = Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        while within(window) {
            // Yielding to the runtime makes it poll its sockets without blocking and run the
            // tasks they woke; yielding to the OS lets another process have this CPU if it
            // waits for one.
            tokio::task::yield_now().await;
            std::thread::yield_now();
            #[cfg(test)]
            TURNS.set(TURNS.get() + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{TURNS, spinner, touch};

    async fn turns_during(d: Duration) -> u64 {
        let before = TURNS.get();
        tokio::time::sleep(d).await;
        TURNS.get() - before
    }

    #[tokio::test(flavor = "current_thread")]
    async fn polls_for_its_window_after_work_and_parks_without_it() {
        // No spinner: marking work does nothing.
        touch();
        assert_eq!(turns_during(Duration::from_millis(20)).await, 0);

        let window = Duration::from_millis(100);
        let spinning = tokio::spawn(spinner(window));
        tokio::task::yield_now().await;
        assert_eq!(turns_during(Duration::from_millis(20)).await, 0, "no work yet: parked");

        touch();
        assert!(turns_during(Duration::from_millis(50)).await > 0, "polls after work");
        // Well past the window: parked again, however slow the machine.
        tokio::time::sleep(window * 3).await;
        assert_eq!(turns_during(Duration::from_millis(50)).await, 0, "parked once the window passed");

        touch();
        assert!(turns_during(Duration::from_millis(50)).await > 0, "woken by new work");
        spinning.abort();
    }
}
