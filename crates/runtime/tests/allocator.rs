//! The node bounds the C allocator: alone in its test binary, because it changes process-wide
//! allocator settings that only apply to arenas created afterwards.

#![cfg(target_env = "gnu")]

use std::io::Read;
use std::sync::{Arc, Barrier};

/// The arenas glibc's allocator has now, from its `malloc_info` report (one `<heap nr=...>`
/// element per arena).
fn arenas() -> usize {
    // SAFETY: tmpfile returns a valid FILE* or null (checked); malloc_info only writes to it;
    // the descriptor is duplicated before fclose, so the copy stays valid.
    #[allow(unsafe_code)]
    let report = unsafe {
        let file = libc::tmpfile();
        assert!(!file.is_null(), "tmpfile");
        assert_eq!(libc::malloc_info(0, file), 0, "malloc_info");
        libc::fflush(file);
        let fd = libc::dup(libc::fileno(file));
        libc::fclose(file);
        assert!(fd >= 0, "dup");
        let mut f = <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd);
        std::io::Seek::rewind(&mut f).unwrap_or_else(|e| panic!("{e}"));
        let mut report = String::new();
        f.read_to_string(&mut report).unwrap_or_else(|e| panic!("{e}"));
        report
    };
    report.matches("<heap nr=").count()
}

#[test]
fn threads_allocating_at_once_share_a_bounded_number_of_arenas() {
    assert!(podvisor_runtime::process::return_large_frees_to_the_system());
    let threads = 16;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let held: Vec<Vec<u8>> = (0..1000).map(|j| vec![(i + j) as u8; 64]).collect();
                barrier.wait();
                held.len()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap_or_else(|_| panic!("a thread panicked")), 1000);
    }
    let n = arenas();
    // The main arena counts too; the test harness's threads may have made one more before.
    assert!(
        n <= podvisor_runtime::process::ALLOCATOR_ARENAS as usize + 1,
        "{n} arenas for {threads} threads"
    );
}
