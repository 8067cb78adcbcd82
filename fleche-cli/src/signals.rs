//! While `fleche run` runs its command, the termination signals sent to fleche (SIGHUP, SIGINT,
//! SIGQUIT, SIGTERM) are passed on to the command, and fleche waits for it as usual: `kill` of
//! fleche, a supervisor's stop or `timeout` end the command, not only its wrapper. A signal the
//! terminal sent reaches the command directly (it is in the same foreground process group), so
//! it is not sent twice. A run during which such a signal arrived is never stored, whatever its
//! exit code: it was asked to stop, so what it printed is not its result.

/// Passes the termination signals on to one child process while it lives; dropping it restores
/// what the signals did before.
pub(crate) struct Forwarding {
    #[cfg(unix)]
    previous: Vec<(i32, libc::sigaction)>,
}

impl Forwarding {
    /// Starts catching the signals, before the child is spawned: one that arrives before
    /// [`Forwarding::child`] names the child is sent on to it then.
    pub(crate) fn start() -> Self {
        #[cfg(unix)]
        {
            unix::start()
        }
        #[cfg(not(unix))]
        {
            Forwarding {}
        }
    }

    /// The child to pass the signals on to.
    pub(crate) fn child(&self, child: &std::process::Child) {
        #[cfg(unix)]
        unix::child(child.id());
        #[cfg(not(unix))]
        let _ = child;
    }

    /// Waits for the child named with [`Forwarding::child`], then stops sending it signals (its
    /// process id is free again once it is reaped).
    pub(crate) fn wait(
        &self,
        child: &mut std::process::Child,
    ) -> std::io::Result<std::process::ExitStatus> {
        let status = child.wait();
        #[cfg(unix)]
        unix::child_gone();
        status
    }

    /// The last termination signal fleche received since [`Forwarding::start`], if any.
    pub(crate) fn received(&self) -> Option<i32> {
        #[cfg(unix)]
        {
            unix::received()
        }
        #[cfg(not(unix))]
        {
            None
        }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        #[cfg(unix)]
        unix::stop(&self.previous);
    }
}

#[cfg(unix)]
#[allow(unsafe_code)] // sigaction and kill: there is no safe interface in std
mod unix {
    use std::sync::atomic::{AtomicI32, Ordering};

    use super::Forwarding;

    const SIGNALS: [i32; 4] = [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM];

    /// The child's process id, 0 while there is none.
    static CHILD: AtomicI32 = AtomicI32::new(0);
    /// The last signal received, 0 for none.
    static RECEIVED: AtomicI32 = AtomicI32::new(0);
    /// A signal that arrived before the child was named, to send when it is.
    static PENDING: AtomicI32 = AtomicI32::new(0);

    /// The handler: only async-signal-safe work (atomics and `kill`).
    extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        RECEIVED.store(sig, Ordering::SeqCst);
        if from_terminal(info) {
            return;
        }
        match CHILD.load(Ordering::SeqCst) {
            0 => PENDING.store(sig, Ordering::SeqCst),
            pid => {
                // SAFETY: kill is async-signal-safe; a pid that already exited is an ESRCH.
                unsafe { libc::kill(pid, sig) };
            }
        }
    }

    /// Whether the kernel itself sent the signal: on Linux, a terminal's SIGINT, SIGQUIT or
    /// SIGHUP, which the whole foreground process group (the command too) receives.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn from_terminal(info: *mut libc::siginfo_t) -> bool {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; it is only read.
        !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL
    }

    /// Elsewhere the sender is not told apart: a terminal's signal may reach the command twice.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn from_terminal(_: *mut libc::siginfo_t) -> bool {
        false
    }

    pub(super) fn start() -> Forwarding {
        CHILD.store(0, Ordering::SeqCst);
        RECEIVED.store(0, Ordering::SeqCst);
        PENDING.store(0, Ordering::SeqCst);
        let mut previous = Vec::with_capacity(SIGNALS.len());
        for sig in SIGNALS {
            // SAFETY: a zeroed sigaction is a valid value; the fields that matter are set
            // below, and `forward` has the SA_SIGINFO handler's signature.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = forward as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                    continue;
                }
                // An ignored signal (`nohup`) stays ignored, for fleche and its command.
                if old.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                if libc::sigaction(sig, &action, std::ptr::null_mut()) == 0 {
                    previous.push((sig, old));
                }
            }
        }
        Forwarding { previous }
    }

    pub(super) fn child(id: u32) {
        let Ok(pid) = i32::try_from(id) else {
            return;
        };
        CHILD.store(pid, Ordering::SeqCst);
        let pending = PENDING.swap(0, Ordering::SeqCst);
        if pending != 0 {
            // SAFETY: a plain kill of the child just spawned.
            unsafe { libc::kill(pid, pending) };
        }
    }

    pub(super) fn child_gone() {
        CHILD.store(0, Ordering::SeqCst);
        PENDING.store(0, Ordering::SeqCst);
    }

    pub(super) fn received() -> Option<i32> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig),
        }
    }

    pub(super) fn stop(previous: &[(i32, libc::sigaction)]) {
        for (sig, old) in previous {
            // SAFETY: restores an action sigaction itself returned.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
        CHILD.store(0, Ordering::SeqCst);
    }
}
