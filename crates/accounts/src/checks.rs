//! The bound on Argon2 checks running at once.
//!
//! Argon2id is memory-hard by design: each check of a secret that is not
//! in the verified cache allocates its `m` (19 MiB with the default
//! parameters) for tens of milliseconds. Without a bound, unauthenticated
//! clients sending wrong passwords in parallel would make the node
//! allocate 19 MiB per connection attempt (principles 5 and 7 of
//! docs/architecture.md). Every Argon2 verification of [`crate::Accounts`]
//! (MQTT passwords and tokens, the API's login) therefore holds one of
//! [`Checks`]' permits; callers beyond the bound wait for one:
//!
//! - async callers ([`crate::Accounts::authenticate_guarded`]) wait as a
//!   task, holding no thread, and give up when their caller's deadline
//!   (the broker's CONNECT timeout) drops the future;
//! - blocking callers ([`crate::Accounts::authenticate`]) park their thread.
//!
//! Invariant: at most `max` calls of `secret::verify` run at once; the
//! `running` counter is raised only while a permit is held, and `peak`
//! is the largest value it ever had (for tests and metrics).
//!
//! Hashing a new secret (sign-up through the API, adding a device,
//! rotating a token) costs the same memory; the administration functions
//! that hash have no [`crate::Accounts`] to hold permits, so they share
//! one process-wide bound of [`default_max_checks`] ([`hashing`]).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Wake, Waker};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default bound: one check per core, at least two (so that one slow
/// check never makes every other login wait on a one-core machine).
pub fn default_max_checks() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .max(2)
}

/// Permits for Argon2 checks and the figures of their use.
#[derive(Debug)]
pub(crate) struct Checks {
    permits: Arc<Semaphore>,
    max: usize,
    running: AtomicUsize,
    peak: AtomicUsize,
    /// Checks that had to wait for a permit.
    waited: AtomicUsize,
    /// Checks run in all.
    checked: AtomicUsize,
}

/// The right to run one Argon2 check.
pub(crate) struct Permit {
    _permit: OwnedSemaphorePermit,
}

/// How the bound on concurrent Argon2 checks has been used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckStats {
    /// The bound.
    pub max: usize,
    /// Checks running now.
    pub running: usize,
    /// The most that ever ran at once.
    pub peak: usize,
    /// Checks that waited for another to finish first.
    pub waited: usize,
    /// Checks run in all.
    pub checked: usize,
}

impl Checks {
    /// At most `max` checks at once; 0 means [`default_max_checks`].
    pub(crate) fn new(max: usize) -> Checks {
        let max = if max == 0 { default_max_checks() } else { max };
        Checks {
            permits: Arc::new(Semaphore::new(max)),
            max,
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            waited: AtomicUsize::new(0),
            checked: AtomicUsize::new(0),
        }
    }

    /// Waits as a task until a check may run.
    pub(crate) async fn acquire(&self) -> Permit {
        let permits = self.permits.clone();
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            return Permit { _permit: permit };
        }
        self.waited.fetch_add(1, Ordering::Relaxed);
        let permit = permits
            .acquire_owned()
            .await
            .expect("the checks' semaphore is never closed");
        Permit { _permit: permit }
    }

    /// Parks the calling thread until a check may run.
    pub(crate) fn acquire_blocking(&self) -> Permit {
        block_on(self.acquire())
    }

    /// Runs `check` (an Argon2 verification), counted, while its caller
    /// holds `_permit` (which it may keep a little longer: to record the
    /// outcome before the next check starts).
    pub(crate) fn run<T>(&self, _permit: &Permit, check: impl FnOnce() -> T) -> T {
        self.checked.fetch_add(1, Ordering::Relaxed);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let result = check();
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }

    pub(crate) fn stats(&self) -> CheckStats {
        CheckStats {
            max: self.max,
            running: self.running.load(Ordering::SeqCst),
            peak: self.peak.load(Ordering::SeqCst),
            waited: self.waited.load(Ordering::Relaxed),
            checked: self.checked.load(Ordering::Relaxed),
        }
    }
}

/// Permits for hashing new secrets, process-wide.
static HASHES: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(default_max_checks())));
/// Hashes running now and the most that ever ran at once (for tests).
static HASHING: AtomicUsize = AtomicUsize::new(0);
static HASHING_PEAK: AtomicUsize = AtomicUsize::new(0);

/// Runs `hash` (an Argon2 hashing) once one of the process-wide permits is
/// free, parking the thread until then.
pub(crate) fn hashing<T>(hash: impl FnOnce() -> T) -> T {
    let _permit =
        block_on(HASHES.clone().acquire_owned()).expect("the hashing semaphore is never closed");
    let now = HASHING.fetch_add(1, Ordering::SeqCst) + 1;
    HASHING_PEAK.fetch_max(now, Ordering::SeqCst);
    let result = hash();
    HASHING.fetch_sub(1, Ordering::SeqCst);
    result
}

/// The most hashes that ever ran at once in this process.
#[cfg(test)]
pub(crate) fn hashing_peak() -> usize {
    HASHING_PEAK.load(Ordering::SeqCst)
}

/// Polls `future` on the calling thread, parking it between polls. Only
/// for futures that other threads wake (a semaphore's permit): this crate
/// has no runtime of its own, and its blocking callers run outside one
/// (`spawn_blocking`, command-line tools).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
