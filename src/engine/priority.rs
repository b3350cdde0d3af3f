//! CPU priority of the work nobody waits for, so searches and the editor come first.
//!
//! On 2 cores an indexer that fills both makes a 4 ms search take 15-20 ms: the search
//! thread gets a third of a core. Two levels below normal:
//! - a server's indexing (the first index of a workspace, a re-index after a branch
//!   switch) runs at nice 10 ([`in_background`]), its parallel work on a pool of nice-10
//!   threads: it still takes all the CPU nobody else wants, but a search thread at nice 0
//!   outweighs it about ten to one;
//! - a local model's background pass runs at the idle class ([`lower_this_thread`],
//!   [`idle_pool`]): only on otherwise idle CPUs.
//!
//! `ragls index` on the command line is the user's main job and keeps normal priority.
//! Threads inherit their creator's nice value on Linux, so the threads an index run
//! spawns (embedding requests, graph inserts) run at its level too. Elsewhere than on
//! Linux these are no-ops.

use std::sync::OnceLock;

/// The nice level of a server's indexing: well below searches, well above the idle class.
const BACKGROUND_NICE: i32 = 10;

/// Runs `work` on a thread of its own at nice 10; the parallel work it hands to
/// [`Priority::run`] (the threads an index run spawns for reading and embedding) runs on
/// a rayon pool of nice-10 threads (the global pool stays at normal priority for the
/// CLI). `work` itself must not run on that pool: it blocks on threads that wait for the
/// pool, and two folders indexing at once would then hold every pool thread, waiting
/// for work none of them is free to do.
pub fn in_background<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let outcome = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                set_this_thread_nice(BACKGROUND_NICE);
                IN_BACKGROUND.with(|b| b.set(true));
                work()
            })
            .join()
    });
    match outcome {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

thread_local! {
    /// Set on the threads [`in_background`] runs work on.
    static IN_BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The priority of the calling thread's parallel work, to take along into threads it
/// spawns: such a thread inherits the nice value, but its parallel iterators would run
/// on rayon's global pool, at normal priority, unless they run in this.
#[derive(Clone, Copy)]
pub struct Priority(Option<&'static rayon::ThreadPool>);

impl Priority {
    pub fn of_this_thread() -> Priority {
        if IN_BACKGROUND.with(|b| b.get()) {
            return Priority(background_pool());
        }
        let mine = |pool: &'static OnceLock<Option<rayon::ThreadPool>>| {
            pool.get()
                .and_then(|p| p.as_ref())
                .filter(|p| p.current_thread_index().is_some())
        };
        Priority(mine(&BACKGROUND_POOL).or_else(|| mine(&IDLE_POOL)))
    }

    /// Runs `work` with its parallel iterators on this priority's pool.
    pub fn run<R: Send>(self, work: impl FnOnce() -> R + Send) -> R {
        match self.0 {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }
}

static BACKGROUND_POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
static IDLE_POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();

fn background_pool() -> Option<&'static rayon::ThreadPool> {
    BACKGROUND_POOL
        .get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(rayon::current_num_threads())
                .thread_name(|i| format!("ragls-index-{i}"))
                .start_handler(|_| set_this_thread_nice(BACKGROUND_NICE))
                .build()
                .ok()
        })
        .as_ref()
}

/// Threads for background embedding, at the lowest CPU priority: the model's matrix
/// products run on them (candle computes on the current rayon pool), so indexing,
/// searches and the editor always come first.
pub(super) fn idle_pool() -> Option<&'static rayon::ThreadPool> {
    IDLE_POOL
        .get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(rayon::current_num_threads())
                .thread_name(|i| format!("ragls-model-{i}"))
                .start_handler(|_| lower_this_thread())
                .build()
                .ok()
        })
        .as_ref()
}

/// Puts the calling thread in the idle scheduling class (it runs only on otherwise idle
/// CPUs), or at least at the weakest nice level. Best effort: elsewhere than on Linux the
/// small batches are what keep it out of the way.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread (tid 0), with a zeroed parameter
    // block, which SCHED_IDLE requires (priority 0).
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            set_this_thread_nice(19);
        }
    }
}

/// Raises the calling thread's nice value to `nice`, never lowers it (a user who started
/// ragls at nice 15 keeps 15). Linux keeps one per thread; lowering it back would need
/// privileges, which is why background work gets threads of its own.
fn set_this_thread_nice(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread (who = 0).
    unsafe {
        if libc::getpriority(libc::PRIO_PROCESS, 0) < nice {
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn this_thread_nice() -> i32 {
        // SAFETY: a plain system call; errno is not consulted (-1 is a valid answer
        // only for negative nice values, which these tests never set).
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn background_work_and_the_parallel_work_it_carries_run_at_nice_10() {
        use rayon::prelude::*;
        let caller = std::thread::spawn(this_thread_nice).join().unwrap();
        let (outer, inner) = in_background(|| {
            let inner: Vec<i32> = Priority::of_this_thread().run(|| {
                (0..64)
                    .into_par_iter()
                    .map(|_| this_thread_nice())
                    .collect()
            });
            (this_thread_nice(), inner)
        });
        assert_eq!(outer, BACKGROUND_NICE.max(caller));
        assert!(
            inner.iter().all(|n| *n == BACKGROUND_NICE.max(caller)),
            "{inner:?}"
        );
        // The caller's own thread is untouched.
        assert_eq!(std::thread::spawn(this_thread_nice).join().unwrap(), caller);
    }

    #[test]
    fn more_background_runs_at_once_than_pool_threads_all_finish() {
        use rayon::prelude::*;
        // Each run blocks on a thread that waits for the pool, as an index run does on
        // its reading-ahead thread: runs that occupied the pool's threads themselves
        // would wait forever (two workspace folders indexing at once did).
        let (tx, rx) = std::sync::mpsc::channel();
        let runs = rayon::current_num_threads() * 2 + 1;
        for _ in 0..runs {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let sum = in_background(|| {
                    let priority = Priority::of_this_thread();
                    std::thread::scope(|s| {
                        s.spawn(move || priority.run(|| (0..1000u64).into_par_iter().sum::<u64>()))
                            .join()
                            .unwrap()
                    })
                });
                let _ = tx.send(sum);
            });
        }
        for _ in 0..runs {
            let sum = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("a background run never finished: the pool is deadlocked");
            assert_eq!(sum, 499_500);
        }
    }

    #[test]
    fn threads_spawned_by_background_work_inherit_its_level_and_its_pool() {
        use rayon::prelude::*;
        let caller = std::thread::spawn(this_thread_nice).join().unwrap();
        let spawned = in_background(|| std::thread::spawn(this_thread_nice).join().unwrap());
        assert_eq!(spawned, BACKGROUND_NICE.max(caller));
        // A spawned thread's parallel iterators: on the background pool when it takes
        // the priority along, on the global pool (the caller's level) when it does not.
        let (carried, not_carried) = in_background(|| {
            let priority = Priority::of_this_thread();
            let carried = std::thread::spawn(move || {
                priority.run(|| (0..64).into_par_iter().map(|_| this_thread_nice()).max())
            });
            let not_carried =
                std::thread::spawn(|| (0..64).into_par_iter().map(|_| this_thread_nice()).min());
            (carried.join().unwrap(), not_carried.join().unwrap())
        });
        assert_eq!(carried, Some(BACKGROUND_NICE.max(caller)));
        assert_eq!(not_carried, Some(caller));
        // Outside background work there is nothing to carry.
        assert!(Priority::of_this_thread().0.is_none());
    }
}
