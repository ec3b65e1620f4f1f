//! The node bounds the C allocator: alone in its test binary, because it changes process-wide
//! allocator settings that only apply to arenas created afterwards.

#![cfg(target_env = "gnu")]

use std::sync::{Arc, Barrier};

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
    let n = podvisor_runtime::process::allocator_arenas().expect("malloc_info report");
    // The main arena counts too; the test harness's threads may have made one more before.
    assert!(
        n <= podvisor_runtime::process::ALLOCATOR_ARENAS as usize + 1,
        "{n} arenas for {threads} threads"
    );
}
