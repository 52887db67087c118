//! The CPU sampler behind `/debug/pprof/profile`: a process-wide CPU-time timer
//! (`setitimer(ITIMER_PROF)`, delivered as `SIGPROF` to a thread that is using CPU), a signal
//! handler that copies the interrupted thread's stack into a buffer mapped when the profile
//! starts, and nothing else. Every byte a profile uses is mapped at [`Sampler::start`] and
//! unmapped when the [`Samples`] are dropped; between profiles the sampler holds no memory
//! (README, "Profiling memory").
//!
//! # Stack capture, and why it is the unwinder
//!
//! The handler walks the stack with libgcc's `_Unwind_Backtrace` from the signal context,
//! rather than by following frame pointers:
//!
//! * Frame pointers would need `-C force-frame-pointers=yes` for every crate of every consumer
//!   (a `.cargo/config.toml` flag that `RUSTFLAGS` silently overrides, and that changes the
//!   code every bench measures), and still lose frames in the parts built without them: the
//!   precompiled standard library, libc, the vDSO. The unwinder follows the DWARF call-frame
//!   tables Rust emits for every function on Linux (asynchronous unwind tables), including
//!   through the kernel's signal frame, so stacks are whole.
//! * Its dangers in a signal handler are known and answered here. Finding a frame's table
//!   goes through `_dl_find_object`, lock-free and async-signal-safe (glibc 2.35+, used by
//!   libgcc 12+; the libgcc of older systems takes the loader's recursive lock, which is still
//!   not a deadlock for the interrupted thread itself). libgcc initialises its register table
//!   under a `pthread_once` on the first unwind: [`Sampler::start`] unwinds once outside any
//!   handler so that never happens in one. The unwinder does not allocate.
//!
//! The handler itself takes no lock and allocates nothing: it claims a slot of the buffer
//! with one atomic increment (a full buffer drops the sample and counts it), writes the stack
//! there, and saves and restores `errno`. Stopping disarms the timer, unpublishes the buffer
//! and waits until no handler is inside it before the buffer may be read or unmapped.

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Deepest stack kept per sample (Go's CPU profiler keeps 64 as well); deeper stacks keep
/// their innermost frames.
pub(crate) const MAX_FRAMES: usize = 64;
/// Most samples one profile holds: ~17 MiB of buffer at most (mapped lazily by the kernel, so
/// only the samples taken cost resident memory). At 99 Hz that is 330 s of one CPU, or 30 s
/// of 11 busy CPUs; beyond that samples are dropped and the profile says how many.
const MAX_SAMPLES: usize = 32_768;
/// Frames the unwinder may see before the interrupted one (this handler's own and the
/// kernel's signal trampoline) before the walk is given up as lost.
const MAX_SKIPPED: usize = 16;

/// One sample as the handler writes it.
#[repr(C)]
struct Slot {
    /// Kernel thread id of the interrupted thread.
    tid: u32,
    /// Frames written to `frames`.
    depth: u32,
    /// `frames[0]` is the interrupted instruction; the rest are return addresses.
    frames: [usize; MAX_FRAMES],
}

/// The buffer of the running profile, published to the handler through [`BUFFER`].
struct Buffer {
    slots: *mut Slot,
    capacity: usize,
    /// Next slot to claim; may run past `capacity` (those samples are dropped).
    next: AtomicUsize,
    dropped: AtomicU64,
}

/// The running profile's buffer, or null between profiles.
static BUFFER: AtomicPtr<Buffer> = AtomicPtr::new(ptr::null_mut());
/// Handlers currently between loading [`BUFFER`] and being done with it.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// One sampler per process: there is one `ITIMER_PROF`.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Why a profile could not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// Another profile (ours or another profiler's timer) is running.
    Busy,
    /// The system refused (the message says what).
    Failed(String),
}

/// A running profile. Dropping it (for instance when the client hangs up) stops sampling and
/// frees the buffer; [`Sampler::stop`] stops and hands the samples over.
pub(crate) struct Sampler {
    buffer: *mut Buffer,
    mapped: usize,
    previous: libc::sigaction,
}

// SAFETY: the raw pointers are owned by the sampler (the buffer is shared only with the
// signal handler, which synchronizes through atomics); moving the owner across threads is fine.
unsafe impl Send for Sampler {}

/// The samples of a finished profile; unmaps the buffer on drop.
pub(crate) struct Samples {
    buffer: *mut Buffer,
    mapped: usize,
    taken: usize,
    dropped: u64,
}

// SAFETY: after `stop` no handler references the buffer; `Samples` owns it alone.
unsafe impl Send for Samples {}

impl Sampler {
    /// Starts sampling at `hz` samples per second of CPU time, with room for `expected`
    /// samples (capped at [`MAX_SAMPLES`]).
    pub(crate) fn start(hz: u32, expected: usize) -> Result<Sampler, StartError> {
        if !SUPPORTED {
            return Err(StartError::Failed(
                "CPU profiling is implemented for Linux on x86_64 and aarch64 only".into(),
            ));
        }
        if hz == 0 || hz > 1_000_000 {
            return Err(StartError::Failed(format!("invalid sampling rate {hz} Hz")));
        }
        if RUNNING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(StartError::Busy);
        }
        // From here on, failing must release RUNNING: `Starting` does it unless defused.
        let starting = Starting;
        if timer_armed()? {
            return Err(StartError::Busy);
        }
        warm_up_unwinder();
        let capacity = expected.clamp(1, MAX_SAMPLES);
        let (buffer, mapped) = map_buffer(capacity)?;
        BUFFER.store(buffer, Ordering::SeqCst);
        let previous = match install_handler() {
            Ok(previous) => previous,
            Err(e) => {
                BUFFER.store(ptr::null_mut(), Ordering::SeqCst);
                // SAFETY: no handler was installed, so nothing else saw the buffer.
                unsafe { unmap_buffer(buffer, mapped) };
                return Err(e);
            }
        };
        let sampler = Sampler {
            buffer,
            mapped,
            previous,
        };
        // Dropping the sampler now undoes everything, including RUNNING.
        std::mem::forget(starting);
        set_timer(1_000_000 / u64::from(hz)).map_err(StartError::Failed)?;
        Ok(sampler)
    }

    /// Stops sampling and hands the samples over.
    pub(crate) fn stop(mut self) -> Samples {
        let samples = self.quiesce();
        std::mem::forget(self);
        samples
    }

    /// Disarms the timer, waits until no handler is in the buffer and releases the sampler
    /// slot; the buffer itself is returned, still mapped.
    fn quiesce(&mut self) -> Samples {
        // Errors cannot be acted on here: a failed disarm means the timer was not armed.
        let _ = set_timer(0);
        BUFFER.store(ptr::null_mut(), Ordering::SeqCst);
        // A handler that loaded the buffer incremented IN_HANDLER first (both SeqCst), so it
        // is counted here until it is done. Handlers are short; yield rather than spin hard.
        while IN_HANDLER.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        restore_handler(&self.previous);
        // SAFETY: no handler can reach the buffer any more; it is ours alone.
        let (taken, dropped) = unsafe {
            let b = &*self.buffer;
            let claimed = b.next.load(Ordering::Acquire);
            (claimed.min(b.capacity), b.dropped.load(Ordering::Acquire))
        };
        let samples = Samples {
            buffer: self.buffer,
            mapped: self.mapped,
            taken,
            dropped,
        };
        self.buffer = ptr::null_mut();
        RUNNING.store(false, Ordering::Release);
        samples
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if !self.buffer.is_null() {
            drop(self.quiesce());
        }
    }
}

/// Releases [`RUNNING`] if [`Sampler::start`] fails before the sampler exists.
struct Starting;

impl Drop for Starting {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

impl Samples {
    /// A profile that took no sample, for tests of what is built from one.
    #[cfg(test)]
    pub(crate) fn empty() -> Samples {
        let (buffer, mapped) = map_buffer(1).expect("maps");
        Samples {
            buffer,
            mapped,
            taken: 0,
            dropped: 0,
        }
    }

    /// Samples recorded.
    pub(crate) fn len(&self) -> usize {
        self.taken
    }

    /// Samples dropped because the buffer was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Each sample's thread id and stack, innermost frame first. The first address is the
    /// interrupted instruction; the others are return addresses minus one, so that each one
    /// lies inside its call instruction and resolves to the call's line.
    pub(crate) fn for_each(&self, mut f: impl FnMut(u32, &[u64])) {
        let mut stack = [0u64; MAX_FRAMES];
        for i in 0..self.taken {
            // SAFETY: slots below `taken` were completely written before the handlers that
            // wrote them finished, which `quiesce` waited for.
            let slot = unsafe { &*(*self.buffer).slots.add(i) };
            let depth = (slot.depth as usize).min(MAX_FRAMES);
            for (j, (out, &frame)) in stack.iter_mut().zip(&slot.frames[..depth]).enumerate() {
                let frame = frame as u64;
                *out = if j == 0 {
                    frame
                } else {
                    frame.saturating_sub(1)
                };
            }
            f(slot.tid, &stack[..depth]);
        }
    }
}

impl Drop for Samples {
    fn drop(&mut self) {
        // SAFETY: the buffer is ours alone (see `quiesce`) and mapped by `map_buffer`.
        unsafe { unmap_buffer(self.buffer, self.mapped) };
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
const SUPPORTED: bool = true;
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
const SUPPORTED: bool = false;

/// The interrupted instruction, from the signal's saved context.
///
/// # Safety
/// `context` is the third argument of an `SA_SIGINFO` handler.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
unsafe fn interrupted_pc(context: *mut c_void) -> usize {
    let context = &*(context as *const libc::ucontext_t);
    context.uc_mcontext.gregs[libc::REG_RIP as usize] as usize
}

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
unsafe fn interrupted_pc(context: *mut c_void) -> usize {
    let context = &*(context as *const libc::ucontext_t);
    context.uc_mcontext.pc as usize
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
unsafe fn interrupted_pc(_context: *mut c_void) -> usize {
    0
}

// libgcc's unwinder (the Itanium C++ ABI's `_Unwind_*`), which the Rust standard library
// links on Linux for panics.
type UnwindTrace = extern "C" fn(context: *mut c_void, arg: *mut c_void) -> c_int;
const URC_NO_REASON: c_int = 0;
const URC_NORMAL_STOP: c_int = 4;
extern "C" {
    fn _Unwind_Backtrace(trace: UnwindTrace, arg: *mut c_void) -> c_int;
    fn _Unwind_GetIP(context: *mut c_void) -> usize;
}

/// The state of one walk, on the handler's stack.
struct Walk {
    /// The interrupted instruction: frames before it are the handler's own.
    pc: usize,
    frames: *mut usize,
    depth: usize,
    skipped: usize,
    started: bool,
}

extern "C" fn walk_frame(context: *mut c_void, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Walk` passed to `_Unwind_Backtrace` below; `context` is the
    // unwinder's own.
    let walk = unsafe { &mut *(arg as *mut Walk) };
    let ip = unsafe { _Unwind_GetIP(context) };
    if ip == 0 {
        return URC_NORMAL_STOP;
    }
    if !walk.started {
        if ip != walk.pc {
            walk.skipped += 1;
            return if walk.skipped > MAX_SKIPPED {
                URC_NORMAL_STOP
            } else {
                URC_NO_REASON
            };
        }
        walk.started = true;
    }
    // SAFETY: `frames` has MAX_FRAMES entries and depth stays below that.
    unsafe { *walk.frames.add(walk.depth) = ip };
    walk.depth += 1;
    if walk.depth == MAX_FRAMES {
        URC_NORMAL_STOP
    } else {
        URC_NO_REASON
    }
}

/// Unwinds once from ordinary code, so libgcc's one-time initialisation (under a
/// `pthread_once`) never runs inside a signal handler.
fn warm_up_unwinder() {
    let mut frames = [0usize; MAX_FRAMES];
    let mut walk = Walk {
        pc: 0,
        frames: frames.as_mut_ptr(),
        depth: 0,
        skipped: 0,
        started: true,
    };
    // SAFETY: `walk` outlives the call; `walk_frame` only writes within `frames`.
    unsafe { _Unwind_Backtrace(walk_frame, (&mut walk as *mut Walk).cast()) };
}

/// The `SIGPROF` handler. Async-signal-safe: atomics, the unwinder, `gettid`, plain stores.
extern "C" fn on_sigprof(_signal: c_int, _info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: errno is thread-local; reading and restoring it is what keeps the interrupted
    // code's errno intact across the syscall below.
    let errno = unsafe { *libc::__errno_location() };
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let buffer = BUFFER.load(Ordering::SeqCst);
    if !buffer.is_null() {
        // SAFETY: a published buffer stays mapped until IN_HANDLER drops to zero after it was
        // unpublished; `context` is this handler's.
        unsafe { record(&*buffer, context) };
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Writes one sample into `buffer`.
///
/// # Safety
/// Called from the handler with its `context`; `buffer` is published.
unsafe fn record(buffer: &Buffer, context: *mut c_void) {
    let index = buffer.next.fetch_add(1, Ordering::Relaxed);
    if index >= buffer.capacity {
        buffer.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let slot = buffer.slots.add(index);
    let pc = interrupted_pc(context);
    let frames = ptr::addr_of_mut!((*slot).frames).cast::<usize>();
    let mut walk = Walk {
        pc,
        frames,
        depth: 0,
        skipped: 0,
        started: false,
    };
    _Unwind_Backtrace(walk_frame, (&mut walk as *mut Walk).cast());
    if !walk.started {
        // The unwinder lost its way before the interrupted frame; its instruction is still a
        // truthful (if shallow) sample.
        *frames = pc;
        walk.depth = 1;
    }
    (*slot).depth = walk.depth as u32;
    (*slot).tid = libc::syscall(libc::SYS_gettid) as u32;
}

/// Whether `ITIMER_PROF` is already armed (by another profiler in the process).
fn timer_armed() -> Result<bool, StartError> {
    // SAFETY: a zeroed itimerval is valid; getitimer writes it.
    let mut current: libc::itimerval = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    if unsafe { libc::getitimer(libc::ITIMER_PROF, &mut current) } != 0 {
        return Err(StartError::Failed(format!(
            "getitimer: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(current.it_value.tv_sec != 0 || current.it_value.tv_usec != 0)
}

/// Arms `ITIMER_PROF` every `micros` of process CPU time, or disarms it (0).
fn set_timer(micros: u64) -> Result<(), String> {
    let interval = libc::timeval {
        tv_sec: (micros / 1_000_000) as libc::time_t,
        tv_usec: (micros % 1_000_000) as libc::suseconds_t,
    };
    let value = libc::itimerval {
        it_interval: interval,
        it_value: interval,
    };
    // SAFETY: valid pointers; the old value is not wanted.
    if unsafe { libc::setitimer(libc::ITIMER_PROF, &value, ptr::null_mut()) } != 0 {
        return Err(format!("setitimer: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn install_handler() -> Result<libc::sigaction, StartError> {
    // SAFETY: zeroed sigactions are valid; sigemptyset initialises the mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigprof as *const () as usize;
        // SA_RESTART: a sample must not make the interrupted thread's syscalls fail with EINTR.
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPROF, &action, &mut previous) != 0 {
            return Err(StartError::Failed(format!(
                "sigaction: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(previous)
    }
}

/// Puts back the handler that was there before, unless that was the default action: a
/// `SIGPROF` still in flight would then terminate the process, so it is ignored instead.
fn restore_handler(previous: &libc::sigaction) {
    // SAFETY: `previous` came from sigaction; a zeroed sigaction with SIG_IGN is valid.
    unsafe {
        if previous.sa_sigaction == libc::SIG_DFL {
            let mut ignore: libc::sigaction = std::mem::zeroed();
            ignore.sa_sigaction = libc::SIG_IGN;
            libc::sigemptyset(&mut ignore.sa_mask);
            libc::sigaction(libc::SIGPROF, &ignore, ptr::null_mut());
        } else {
            libc::sigaction(libc::SIGPROF, previous, ptr::null_mut());
        }
    }
}

/// Maps the buffer header and `capacity` slots in one anonymous mapping, so that unmapping
/// gives every page back to the system at once (no allocator in between).
fn map_buffer(capacity: usize) -> Result<(*mut Buffer, usize), StartError> {
    let header = std::mem::size_of::<Buffer>().next_multiple_of(std::mem::align_of::<Slot>());
    let bytes = header + capacity * std::mem::size_of::<Slot>();
    // SAFETY: an anonymous private mapping with no address hint.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(StartError::Failed(format!(
            "could not map the {bytes}-byte sample buffer: {}",
            std::io::Error::last_os_error()
        )));
    }
    let buffer = base.cast::<Buffer>();
    // SAFETY: the mapping is page-aligned, large enough, and zeroed (a valid Slot array).
    unsafe {
        buffer.write(Buffer {
            slots: base.cast::<u8>().add(header).cast::<Slot>(),
            capacity,
            next: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        });
    }
    Ok((buffer, bytes))
}

/// # Safety
/// `buffer` came from [`map_buffer`] with `bytes`, and nothing references it any more.
unsafe fn unmap_buffer(buffer: *mut Buffer, bytes: usize) {
    if !buffer.is_null() {
        libc::munmap(buffer.cast(), bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn spin(until: std::time::Instant) -> u64 {
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        x
    }

    /// The only unit test driving the process-wide sampler, so none races it.
    #[test]
    fn samples_land_and_the_sampler_is_exclusive_and_reusable() {
        for _ in 0..2 {
            let sampler = Sampler::start(997, 4096).expect("starts");
            assert!(matches!(Sampler::start(99, 16), Err(StartError::Busy)));
            spin(std::time::Instant::now() + std::time::Duration::from_millis(300));
            let samples = sampler.stop();
            assert_ne!(
                samples.len(),
                0,
                "no sample in 300 ms of busy CPU at 997 Hz"
            );
            let me = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
            let mut mine = 0;
            let mut deep = 0;
            samples.for_each(|tid, stack| {
                assert!(!stack.is_empty() && stack.len() <= MAX_FRAMES);
                mine += usize::from(tid == me);
                deep += usize::from(stack.len() > 3);
            });
            assert!(mine > 0, "no sample of the spinning thread");
            assert!(deep > 0, "no sample unwound past the interrupted frame");
            assert!(!timer_armed().unwrap(), "timer left armed");
        }
        // Samples landing in malloc, in thread creation and exit, and in panics unwinding
        // (the places a handler that allocated or locked would deadlock) at a high rate.
        let sampler = Sampler::start(997, 8192).expect("starts");
        let until = std::time::Instant::now() + std::time::Duration::from_millis(500);
        let churn: Vec<_> = (0..3)
            .map(|kind| {
                std::thread::spawn(move || {
                    while std::time::Instant::now() < until {
                        match kind {
                            0 => drop(std::hint::black_box(vec![0u8; 4096 + 7])),
                            1 => std::thread::spawn(|| std::hint::black_box(1))
                                .join()
                                .map(drop)
                                .unwrap(),
                            _ => {
                                let _ = std::panic::catch_unwind(|| {
                                    std::panic::resume_unwind(Box::new(()));
                                });
                            }
                        }
                    }
                })
            })
            .collect();
        for thread in churn {
            thread.join().unwrap();
        }
        let samples = sampler.stop();
        samples.for_each(|_, stack| assert!(!stack.is_empty()));
        drop(samples);
        // Dropped unfinished (a client that hung up): the timer stops and the slot is free.
        let abandoned = Sampler::start(99, 16).expect("starts");
        assert!(timer_armed().unwrap());
        drop(abandoned);
        assert!(
            !timer_armed().unwrap(),
            "timer left armed by a dropped sampler"
        );
        assert!(BUFFER.load(Ordering::SeqCst).is_null());
        drop(Sampler::start(99, 16).expect("free again"));
    }

    #[test]
    fn a_full_buffer_drops_and_counts() {
        // Never started: exercises the recording bookkeeping directly on a mapped buffer.
        let (buffer, bytes) = map_buffer(1).unwrap();
        unsafe {
            (*buffer).next.store(1, Ordering::Relaxed);
            record(&*buffer, ptr::null_mut());
            assert_eq!((*buffer).dropped.load(Ordering::Relaxed), 1);
            unmap_buffer(buffer, bytes);
        }
    }
}
