//! The node hands freed allocator memory back to the system: alone in its test binary, because
//! it measures the whole process's resident memory.

#![cfg(target_env = "gnu")]

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn freed_small_blocks_between_live_ones_go_back_to_the_system() {
    // 64 MiB in small blocks (kept by the allocator, below any mmap threshold), then all but
    // one block in 1,000 freed: the live ones pin the heap, so nothing is trimmed by itself.
    let mut blocks: Vec<Vec<u8>> = (0..1024 * 1024).map(|i| vec![i as u8; 64]).collect();
    let keep: Vec<Vec<u8>> = blocks.iter_mut().step_by(1000).map(std::mem::take).collect();
    drop(blocks);
    let before = rss_kib();
    assert!(
        podvisor_runtime::process::release_free_memory(),
        "memory was released"
    );
    let after = rss_kib();
    assert!(
        after + 32 * 1024 < before,
        "RSS {before} -> {after} KiB: the freed 64 MiB stayed"
    );
    assert_eq!(keep.len(), 1049);
}
