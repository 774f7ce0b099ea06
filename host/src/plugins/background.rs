//! The idle-priority thread that background work runs on (verification, snapshot
//! warming): a current-thread tokio runtime of its own, so that work takes only the CPU
//! that commands, reads and projections leave over.

use std::sync::OnceLock;

/// Where verifications run: a runtime on one thread of its own at the lowest CPU
/// priority, so a verification takes only the CPU that commands, reads and
/// projections leave idle. On the request runtime it would share worker threads with
/// them as an equal (measured with `cargo xtask bench-verify`: a neighbour's command
/// p99 rose 3.3 times while 100,000 events were verified; 2.8 times at nice 19, whose
/// time slices still delay a woken command by milliseconds).
pub(crate) fn runtime() -> &'static tokio::runtime::Handle {
    static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("cairn-verifier".into())
            .spawn(move || {
                lower_this_threads_priority();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building the verifier runtime");
                let _ = sender.send(runtime.handle().clone());
                runtime.block_on(std::future::pending::<()>());
            })
            .expect("starting the verifier thread");
        receiver.recv().expect("the verifier runtime")
    })
}

/// Linux schedules threads, not processes: `SCHED_IDLE` for the calling thread (pid 0)
/// means it runs only on a CPU nothing else wants and is preempted at once when a
/// request's thread wakes. Where that is refused, nice 19; where both are, normal
/// priority, which is slower for neighbours but still correct.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` lives across the call; pid 0 is this thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
    }
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, 19) } != 0 {
        tracing::debug!("could not lower the verifier thread's priority");
    }
}
