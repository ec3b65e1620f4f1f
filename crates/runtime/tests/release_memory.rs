//! The node hands freed allocator memory and its start-up's executable pages back to the
//! system: alone in its test binary, because it measures the whole process's resident memory.

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
#[cfg(target_env = "gnu")]
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

/// Resident KiB of this executable's read-only mappings (code, read-only data), from
/// `/proc/self/smaps`.
fn executable_read_only_rss_kib() -> u64 {
    let exe = std::fs::read_link("/proc/self/exe").expect("the executable's path");
    let exe = exe.to_string_lossy().into_owned();
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let mut counting = false;
    let mut total = 0;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            counting =
                fields.get(5) == Some(&exe.as_str()) && fields.get(1).is_some_and(|p| !p.contains('w'));
        } else if counting && fields.first() == Some(&"Rss:") {
            total += fields.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

/// Pointers the loader relocated at start-up, kept in the RELRO segment: read-only once
/// relocated, and different from the file's bytes, so releasing it would break them.
static RELOCATED: [&str; 3] = ["relocated", "at", "start-up"];

#[test]
fn the_executables_read_only_pages_are_unmapped_and_come_back_as_they_run() {
    let before = executable_read_only_rss_kib();
    assert!(before > 0, "the test binary's code is resident");
    let released = podvisor_runtime::process::release_executable_pages();
    assert!(released > 0, "the code and read-only data segments were released");
    let after = executable_read_only_rss_kib();
    assert!(
        after < before,
        "resident read-only pages of the executable {before} -> {after} KiB: nothing was unmapped"
    );
    // What runs afterwards maps its pages again, and relocated data is untouched.
    assert_eq!(
        std::hint::black_box(&RELOCATED).join(" "),
        "relocated at start-up"
    );
    assert_eq!(format!("{:?}", std::hint::black_box(vec![1, 2])), "[1, 2]");
}
