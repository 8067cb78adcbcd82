//! Hashing a file through a memory map without dying of it.
//!
//! A memory-mapped file that another process truncates turns every read past its new end into
//! SIGBUS, whose default action ends the process. `FileContents` maps the files it hashes (it is
//! the fastest way to feed every core), and the files a make-like workflow hashes are the ones
//! other processes rewrite: `> data.csv` in a shell truncates first.
//!
//! So while a mapping is hashed, its address range is registered in a small lock-free table, and a
//! SIGBUS handler (installed once, the first time a file is mapped) checks the faulting address
//! against it. A fault inside a registered range is answered by mapping zero pages over the rest
//! of that range, so the read goes on, and the range is marked: the digest is then thrown away
//! and the file reported as changed while it was hashed. A fault anywhere else goes to the
//! handler that was installed before (Rust's own stack-overflow handler, or the program's), and,
//! failing one, to the default action, as if this handler did not exist.

use std::fs::File;
use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

use crate::Digest;

/// Files shorter than this are read, not mapped (as blake3 does: mapping costs more).
const MAP_AT_LEAST: u64 = 16 * 1024;

/// How many mappings may be hashed at once; more wait for none, they are read instead.
const SLOTS: usize = 64;

/// The blake3 digest of the regular file `file` of `len` bytes, memory-mapped when that pays, on
/// every core when it is large. An error when it cannot be read, or when it was truncated while
/// it was hashed.
pub(crate) fn digest(file: &File, len: u64) -> io::Result<Digest> {
    digest_with(file, len, || ())
}

/// [`digest`], calling `mapped` once the file is mapped and registered, before it is hashed (the
/// tests truncate the file there).
fn digest_with(file: &File, len: u64, mapped: impl FnOnce()) -> io::Result<Digest> {
    let mut hasher = blake3::Hasher::new();
    if len < MAP_AT_LEAST {
        read_into(file, &mut hasher)?;
    } else if let Some(map) = Mapping::new(file, len)? {
        mapped();
        hasher.update_rayon(map.bytes());
        if map.faulted() {
            return Err(changed());
        }
    } else {
        read_into(file, &mut hasher)?;
    }
    // Cut inside its last page, a mapped file reads as zeros there, without a fault.
    if file.metadata()?.len() != len {
        return Err(changed());
    }
    Ok(Digest::from_bytes(*hasher.finalize().as_bytes()))
}

fn changed() -> io::Error {
    io::Error::other("the file changed while it was hashed")
}

/// Hashes `file` from its start by reading it, in large blocks (its own offset is left alone).
fn read_into(file: &File, hasher: &mut blake3::Hasher) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        match file.read_at(&mut buf, offset) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A registered read-only mapping of a whole file, unmapped and unregistered when dropped.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
    slot: &'static Slot,
}

impl Mapping {
    /// `None` when the guard cannot be had (no handler, no free slot): the caller reads instead.
    #[allow(unsafe_code)] // mmap: there is no safe interface in std
    fn new(file: &File, len: u64) -> io::Result<Option<Self>> {
        use std::os::fd::AsRawFd;
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        if !install() {
            return Ok(None);
        }
        let Some(slot) = Slot::claim() else {
            return Ok(None);
        };
        // SAFETY: a fresh shared read-only mapping of `len` bytes of an open file, at an address
        // the kernel chooses; it aliases no Rust object. The bytes may change under it (another
        // process writes the file); they are only ever read as plain bytes, to be hashed.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            slot.release();
            return Err(e);
        }
        slot.activate(ptr as usize, len);
        Ok(Some(Self { ptr, len, slot }))
    }

    #[allow(unsafe_code)] // the mapped bytes as a slice
    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes until `self` is dropped. A read
        // past the file's end (it was truncated meanwhile) is a SIGBUS the handler answers with
        // zero pages, so every read completes.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }

    fn faulted(&self) -> bool {
        self.slot.faulted.load(Ordering::Acquire)
    }
}

impl Drop for Mapping {
    #[allow(unsafe_code)] // munmap
    fn drop(&mut self) {
        // Nothing reads the mapping any more: unregister it first, then unmap it.
        self.slot.release();
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// One registered range. `seq` is a sequence lock: odd while the range is being written, even
/// otherwise; `active` says whether the range is in use.
struct Slot {
    seq: AtomicUsize,
    active: AtomicBool,
    claimed: AtomicBool,
    start: AtomicUsize,
    end: AtomicUsize,
    faulted: AtomicBool,
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

impl Slot {
    const fn new() -> Self {
        Self {
            seq: AtomicUsize::new(0),
            active: AtomicBool::new(false),
            claimed: AtomicBool::new(false),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            faulted: AtomicBool::new(false),
        }
    }

    fn claim() -> Option<&'static Self> {
        TABLE.iter().find(|s| {
            s.claimed
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
    }

    fn activate(&self, start: usize, len: usize) {
        self.seq.fetch_add(1, Ordering::AcqRel);
        self.start.store(start, Ordering::Release);
        self.end.store(start.saturating_add(len), Ordering::Release);
        self.faulted.store(false, Ordering::Release);
        self.active.store(true, Ordering::Release);
        self.seq.fetch_add(1, Ordering::AcqRel);
    }

    fn release(&self) {
        self.seq.fetch_add(1, Ordering::AcqRel);
        self.active.store(false, Ordering::Release);
        self.seq.fetch_add(1, Ordering::AcqRel);
        self.claimed.store(false, Ordering::Release);
    }

    /// This slot's range when it is active and holds `addr`, read consistently.
    fn holding(&self, addr: usize) -> Option<(usize, usize)> {
        let before = self.seq.load(Ordering::Acquire);
        if before % 2 == 1 || !self.active.load(Ordering::Acquire) {
            return None;
        }
        let (start, end) = (
            self.start.load(Ordering::Acquire),
            self.end.load(Ordering::Acquire),
        );
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != before {
            return None;
        }
        (start..end).contains(&addr).then_some((start, end))
    }
}

/// The SIGBUS action found when the handler was installed, to pass foreign faults on to.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// Installs the handler once; whether it is in place.
#[allow(unsafe_code)] // sigaction and sysconf: there is no safe interface in std
fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if let Ok(page) = usize::try_from(page)
            && page.is_power_of_two()
        {
            PAGE.store(page, Ordering::Release);
        }
        // SAFETY: zeroed sigactions are valid values; the one installed has `on_sigbus`, of the
        // SA_SIGINFO handler's signature. The previous action is stored before the handler can
        // run, so a foreign fault always finds it.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) != 0 {
                return false;
            }
            if PREVIOUS.set(old).is_err() {
                return false;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) == 0
        }
    })
}

/// The handler: only async-signal-safe work (atomics, mmap, sigaction).
#[allow(unsafe_code)]
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; it is only read.
    let addr = if info.is_null() {
        None
    } else {
        Some(unsafe { (*info).si_addr() } as usize)
    };
    if let Some(addr) = addr {
        for slot in &TABLE {
            let Some((_, end)) = slot.holding(addr) else {
                continue;
            };
            let page = addr & !(PAGE.load(Ordering::Acquire) - 1);
            // SAFETY: [page, end) lies inside a mapping this module made and still owns (it is
            // registered), so zero pages may replace it; nothing else lives there.
            let zeros = unsafe {
                libc::mmap(
                    page as *mut libc::c_void,
                    end - page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if zeros != libc::MAP_FAILED {
                slot.faulted.store(true, Ordering::Release);
                return; // The read is retried, and finds zeros.
            }
        }
    }
    // Not ours: to the previous handler, else the default action.
    // SAFETY: the previous action is called as what it was installed as: an SA_SIGINFO handler
    // with three arguments, else a plain one. Restoring the default action is always valid;
    // returning then repeats the fault, which now ends the process as it would have.
    unsafe {
        match PREVIOUS.get() {
            Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(p.sa_sigaction);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(p.sa_sigaction);
                    f(sig);
                }
            }
            _ => {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigemptyset(&mut default.sa_mask);
                libc::sigaction(sig, &default, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::Command;

    use super::*;

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        f.write_all(&bytes).unwrap_or_else(|e| panic!("{e}"));
        (f, bytes)
    }

    #[test]
    fn a_mapped_digest_is_blake3_of_the_bytes() {
        for len in [0, 1, 16 * 1024 - 1, 16 * 1024, 3 << 20] {
            let (f, bytes) = file_of(len);
            let got = digest(f.as_file(), len as u64).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.as_bytes(), blake3::hash(&bytes).as_bytes(), "{len}");
        }
    }

    #[test]
    fn a_file_truncated_while_hashed_is_an_error_not_a_crash() {
        for cut in [0, 4096, 100_000, (8 << 20) - 1] {
            let (f, _) = file_of(8 << 20);
            let mut was_mapped = false;
            let got = digest_with(f.as_file(), 8 << 20, || {
                was_mapped = true;
                f.as_file().set_len(cut).unwrap_or_else(|e| panic!("{e}"));
            });
            assert!(was_mapped, "the file was hashed through a mapping");
            let e = got
                .err()
                .unwrap_or_else(|| panic!("cut at {cut}: no error"));
            assert!(e.to_string().contains("changed while it was hashed"), "{e}");
            // The slot is free again and the next hash of the file is right.
            let len = f.as_file().metadata().map_or(0, |m| m.len());
            let again = digest(f.as_file(), len).unwrap_or_else(|e| panic!("{e}"));
            let now = std::fs::read(f.path()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(again.as_bytes(), blake3::hash(&now).as_bytes());
        }
    }

    #[test]
    fn many_threads_hash_and_truncate_at_once() {
        std::thread::scope(|s| {
            for t in 0..8 {
                s.spawn(move || {
                    for round in 0..4 {
                        let (f, bytes) = file_of(1 << 20);
                        let truncate = (t + round) % 2 == 0;
                        let got = digest_with(f.as_file(), 1 << 20, || {
                            if truncate {
                                f.as_file().set_len(1000).unwrap_or_else(|e| panic!("{e}"));
                            }
                        });
                        if truncate {
                            assert!(got.is_err());
                        } else {
                            let d = got.unwrap_or_else(|e| panic!("{e}"));
                            assert_eq!(d.as_bytes(), blake3::hash(&bytes).as_bytes());
                        }
                    }
                });
            }
        });
    }

    /// A SIGBUS outside fleche's mappings still ends the process, as the default action does:
    /// run in a child process of this test binary.
    #[test]
    fn a_foreign_sigbus_still_ends_the_process() {
        if std::env::var_os("FLECHE_TEST_FOREIGN_SIGBUS").is_some() {
            foreign_fault();
        }
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new(exe)
            .args([
                "--exact",
                "mapped::tests::a_foreign_sigbus_still_ends_the_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FLECHE_TEST_FOREIGN_SIGBUS", "1")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGBUS),
            "{:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("handler installed"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// Installs the handler (by hashing a file), then reads past the end of a mapping of its own.
    #[allow(unsafe_code)]
    fn foreign_fault() {
        let (f, _) = file_of(1 << 20);
        assert!(digest(f.as_file(), 1 << 20).is_ok());
        println!("handler installed");
        use std::os::fd::AsRawFd;
        // SAFETY: a test that means to fault: a mapping of a file then truncated, read past its
        // end. The process is expected to die of SIGBUS right there.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                1 << 20,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_file().as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            f.as_file().set_len(0).unwrap_or_else(|e| panic!("{e}"));
            let byte = std::ptr::read_volatile(p.cast::<u8>().add(8192));
            println!("read {byte}: the fault was swallowed");
        }
        std::process::exit(0);
    }
}
