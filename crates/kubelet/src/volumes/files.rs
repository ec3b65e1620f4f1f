//! The file-system side of volumes: hostPath type checks and the kubelet's atomic writer
//! (`..data` swapped in one rename). Mounts are the host's ([`HostOps`]).

use super::*;

/// The kubelet's `hostPath` type checks (and creation for the `...OrCreate` types).
pub(super) fn check_host_path(path: &str, type_: &str) -> Result<(), String> {
    let p = Path::new(path);
    let meta = fs::metadata(p);
    let fail = |what: &str| Err(format!("hostPath type check failed: {path} is not a {what}"));
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Err(_) => {
                fs::create_dir_all(p).map_err(|e| io_err(p, e))?;
                fs::set_permissions(p, fs::Permissions::from_mode(0o755)).map_err(|e| io_err(p, e))
            }
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => fail("directory"),
        },
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => fail("directory"),
        },
        "FileOrCreate" => match meta {
            Err(_) => fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(|_| ())
                .map_err(|e| io_err(p, e)),
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => fail("file"),
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => fail("file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("socket file"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("block device"),
        },
        other => Err(format!("hostPath type {other:?} is not supported")),
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The kubelet's atomic writer: returns whether anything changed. See the module docs.
pub(super) fn write_atomic(dir: &Path, payload: &Payload) -> io::Result<bool> {
    let data_link = dir.join("..data");
    let current = fs::read_link(&data_link).ok().map(|t| dir.join(t));
    if let Some(current) = &current
        && same_content(current, payload)
    {
        return Ok(false);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!(
        "..{}.{:09}.{}",
        now.as_secs(),
        now.subsec_nanos(),
        GENERATION.fetch_add(1, Ordering::Relaxed)
    );
    let fresh = dir.join(&name);
    fs::create_dir(&fresh)?;
    fs::set_permissions(&fresh, fs::Permissions::from_mode(0o755))?;
    for (path, (content, mode)) in payload {
        let file = fresh.join(path);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&file, content)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(*mode))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    symlink(&name, &tmp_link)?;
    fs::rename(&tmp_link, &data_link)?;
    // Visible names: one symlink per top-level entry, through `..data`.
    let top: std::collections::BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link)?;
        }
    }
    for e in fs::read_dir(dir)?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with("..") && !top.contains(&n) {
            let _ = fs::remove_file(e.path());
        }
    }
    if let Some(old) = current {
        let _ = fs::remove_dir_all(old);
    }
    Ok(true)
}

pub(super) fn same_content(dir: &Path, payload: &Payload) -> bool {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                _ => count += 1,
            }
        }
    }
    count == payload.len()
        && payload.iter().all(|(path, (content, mode))| {
            let p = dir.join(path);
            fs::read(&p).is_ok_and(|c| c == *content)
                && fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o777 == *mode)
        })
}
