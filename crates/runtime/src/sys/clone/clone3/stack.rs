//! The stacks of the children that share the node's memory between their clone and their
//! exec, and the spare ones kept for the next spawns.

use std::ffi::c_void;
use std::io;

use super::{CloneArgs, STACK_SIZE};

/// A stack for a child that shares our memory. Dropped (once its child has exec'd or
/// exited), it goes back to [`SPARE_STACKS`] when there is room, else it is unmapped.
pub(super) struct Stack(pub(super) *mut c_void);

// SAFETY: the mapping is this value's alone; whichever thread holds it may use or unmap it.
unsafe impl Send for Stack {}

/// How many stacks are kept for the next spawns.
const SPARE_MAX: usize = 4;

/// Stacks whose children have exec'd or exited, for the next spawns: a new mapping costs
/// each spawn the page faults of the child's first touches, and its unmapping a flush of
/// the TLB of every core the child ran on with our memory (a container's restart maps and
/// unmaps two). What a stack's last child wrote there is never read again: the next child
/// starts at its top, as a fresh one.
static SPARE_STACKS: std::sync::Mutex<Vec<Stack>> = std::sync::Mutex::new(Vec::new());

fn spare_stacks() -> std::sync::MutexGuard<'static, Vec<Stack>> {
    SPARE_STACKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stack {
    /// A spare stack, or a new one.
    pub(super) fn new() -> io::Result<Stack> {
        if let Some(stack) = spare_stacks().pop() {
            return Ok(stack);
        }
        Stack::map()
    }

    fn map() -> io::Result<Stack> {
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Stack(ptr))
    }

    /// `clone3`'s arguments for a child with `flags` on this stack (SIGCHLD at its end).
    pub(super) fn clone_args(&self, flags: u64) -> CloneArgs {
        CloneArgs {
            flags,
            pidfd: 0,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: self.0 as u64,
            stack_size: STACK_SIZE as u64,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: 0,
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let mut spare = spare_stacks();
        if spare.len() < SPARE_MAX {
            // The mapping moves to the new value, which owns it from here.
            spare.push(Stack(std::mem::replace(&mut self.0, std::ptr::null_mut())));
            return;
        }
        drop(spare);
        // SAFETY: our own mapping, no longer used (the child has exec'd or exited).
        unsafe {
            libc::munmap(self.0, STACK_SIZE);
        }
    }
}
