//! Settings of the C allocator (glibc's `malloc`) that the parts of objects living
//! outside the heap's blocks (array and map buffers, strings, task records, copied
//! messages) come from.
//!
//! glibc gives each thread that allocates its own arena, and a chunk freed on another
//! thread goes to that thread's cache first. Tasks move between worker threads, so a
//! task's memory is often allocated on one worker and freed on another; with an arena per
//! worker the arenas fragment and a process that starts and ends tasks for ever keeps
//! growing (about 3–13% between request 10^5 and 10^6 of `bench/tasks/requests.kn` with
//! two workers, 2–3% with one arena, at no measured cost in speed: each thread keeps its
//! lock-free cache of small chunks either way).

/// Makes every thread created from now on share glibc's main arena. Call it before the
/// first worker thread starts. Returns whether the setting was taken (false where the C
/// library is not glibc, which has its own policy).
pub fn share_one_malloc_arena() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes the allocator's tunables; `M_ARENA_MAX` with a
        // positive count is a documented setting, safe at any time (threads that already
        // have an arena keep it).
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
