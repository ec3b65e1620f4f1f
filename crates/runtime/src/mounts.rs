//! A container's own filesystem view: bind mounts at its `volumeMounts` paths (and its
//! termination-message file), made in a private mount namespace, on top of the host's
//! filesystem, which stays as it is.
//!
//! The plan is made in the node ([`MountPlan::prepare`]) and carried out in the forked child
//! after it has unshared its mount namespace ([`MountPlan::apply`]), which only makes system
//! calls on data prepared before the fork.
//!
//! # Mount points that do not exist on the host
//! A container has no root filesystem of its own, so a mount point that does not exist (say
//! `/data`, or `/etc/app/config`) cannot be created on the host without changing it for
//! everyone. Instead, the deepest directory that does exist is **shadowed**: a tmpfs is
//! mounted over it in the container's namespace and every original entry is bound back into
//! it, so the directory looks the same plus the new mount points. For `/` itself the tmpfs is
//! built at a staging directory, the top-level entries are bound into it recursively, and it
//! becomes the root (`MS_MOVE` onto `/`, then `chroot`), so joining the namespace later (exec
//! probes, `setns`) lands in the same view.
//!
//! # Hiding the node's data directory
//! Volume contents live under the node's data directory on the host. After the binds, the data
//! directory is covered with an empty read-only tmpfs in the container's namespace, so a
//! container reaches exactly the volumes it mounts and no other pod's (or container's) files
//! by any path. (A container running as root with `CAP_SYS_ADMIN` can undo mounts; there is no
//! user namespace or capability dropping.)

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag};

/// One bind mount to make: `source` on the host at `target` in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BindSpec {
    pub(crate) source: PathBuf,
    pub(crate) target: String,
    pub(crate) read_only: bool,
}

#[derive(Clone)]
enum EntryKind {
    Dir,
    File,
    Symlink(CString),
    /// A character or block device, re-created with `mknod` (no mount needed).
    Device {
        kind: SFlag,
        mode: u32,
        rdev: u64,
        uid: u32,
        gid: u32,
    },
}

/// A directory's entries, bound back after a tmpfs hides it: (path in the shadow, source path,
/// kind).
type Entries = Vec<(CString, CString, EntryKind)>;

enum Op {
    /// Build a tmpfs at `stage` with `/`'s entries bound into it and make it the root.
    ShadowRoot {
        stage: CString,
        entries: Entries,
    },
    /// Mount a tmpfs over `dir` and bind its original entries back. `slot` is a placeholder fd
    /// number reserved in the node: in the child the original directory is opened and moved
    /// onto it before the tmpfs hides it, and entries are bound from `/proc/self/fd/<n>/<name>`
    /// (a bind source must be reachable by path in the child's own namespace).
    Shadow {
        dir: CString,
        slot: OwnedFd,
        entries: Entries,
    },
    Mkdir(CString),
    Touch(CString),
    Bind {
        source: CString,
        target: CString,
        read_only: bool,
    },
    Hide(CString),
}

/// Everything a container's mount namespace gets, prepared before the fork.
pub(crate) struct MountPlan {
    ops: Vec<Op>,
}

fn cs(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: NUL byte in path", p.display()),
        )
    })
}

/// `target` as a clean absolute path (no `.`/`..`, no trailing slash).
fn clean_target(target: &str) -> Result<PathBuf, String> {
    let p = Path::new(target);
    if !p.is_absolute() {
        return Err(format!("mount point {target:?} is not an absolute path"));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("mount point {target:?} must not contain '..'"));
            }
        }
    }
    if out == Path::new("/") {
        return Err("the root directory cannot be a mount point".into());
    }
    Ok(out)
}

fn entries_of(dir: &Path, source_base: &Path, shadow_base: &Path) -> io::Result<Entries> {
    let mut entries = Vec::new();
    for e in fs::read_dir(dir)?.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let kind = if ft.is_symlink() {
            match fs::read_link(e.path()) {
                Ok(to) => EntryKind::Symlink(cs(&to)?),
                Err(_) => continue,
            }
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_char_device() || ft.is_block_device() {
            let Ok(meta) = e.metadata() else { continue };
            EntryKind::Device {
                kind: if ft.is_char_device() {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                },
                mode: meta.mode() & 0o7777,
                rdev: meta.rdev(),
                uid: meta.uid(),
                gid: meta.gid(),
            }
        } else if ft.is_file() || ft.is_socket() || ft.is_fifo() {
            EntryKind::File
        } else {
            continue;
        };
        entries.push((
            cs(&shadow_base.join(e.file_name()))?,
            cs(&source_base.join(e.file_name()))?,
            kind,
        ));
    }
    Ok(entries)
}

impl MountPlan {
    /// Plans `binds` (in order of depth, so a mount inside another lands on top of it), then
    /// hides `hide` (the node's data directory). `stage` is an empty directory on the host used
    /// when `/` itself must be shadowed.
    pub(crate) fn prepare(
        binds: &[BindSpec],
        hide: Option<&Path>,
        stage: &Path,
    ) -> Result<MountPlan, String> {
        let mut binds: Vec<(PathBuf, &BindSpec)> = binds
            .iter()
            .map(|b| clean_target(&b.target).map(|t| (t, b)))
            .collect::<Result<_, _>>()?;
        binds.sort_by_key(|(t, _)| t.components().count());
        let mut ops = Vec::new();
        let mut root_shadow = None;
        // Paths that exist in the container's view because the plan creates or mounts them,
        // and where mounted volumes are (container path → host path).
        let mut created: HashSet<PathBuf> = HashSet::new();
        let mut mounted: Vec<(PathBuf, PathBuf)> = Vec::new();
        let host_view = |p: &Path, mounted: &[(PathBuf, PathBuf)]| -> PathBuf {
            mounted
                .iter()
                .filter(|(t, _)| p.starts_with(t))
                .max_by_key(|(t, _)| t.components().count())
                .map_or_else(
                    || p.to_path_buf(),
                    |(t, src)| src.join(p.strip_prefix(t).unwrap_or(p)),
                )
        };
        let err = |e: io::Error| e.to_string();
        for (target, bind) in binds {
            let source_meta =
                fs::metadata(&bind.source).map_err(|e| format!("{}: {e}", bind.source.display()))?;
            let exists = |p: &Path, created: &HashSet<PathBuf>, mounted: &[(PathBuf, PathBuf)]| {
                created.contains(p) || fs::symlink_metadata(host_view(p, mounted)).is_ok()
            };
            if !exists(&target, &created, &mounted) {
                // The deepest ancestor that exists, and the components to create below it.
                let mut missing = vec![target.clone()];
                let mut base = target
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| "/".into());
                while !exists(&base, &created, &mounted) {
                    missing.push(base.clone());
                    base = base.parent().map(Path::to_path_buf).unwrap_or_else(|| "/".into());
                }
                let inside_volume = mounted.iter().any(|(t, _)| base.starts_with(t));
                if !created.contains(&base) && !inside_volume {
                    if base == Path::new("/") {
                        if root_shadow.is_none() {
                            root_shadow = Some(Op::ShadowRoot {
                                stage: cs(stage).map_err(err)?,
                                entries: entries_of(Path::new("/"), Path::new("/"), stage).map_err(err)?,
                            });
                        }
                    } else {
                        let slot: OwnedFd = fs::File::open("/dev/null").map_err(err)?.into();
                        let via = PathBuf::from(format!("/proc/self/fd/{}", slot.as_raw_fd()));
                        let dir = host_view(&base, &mounted);
                        ops.push(Op::Shadow {
                            dir: cs(&base).map_err(err)?,
                            entries: entries_of(&dir, &via, &base).map_err(err)?,
                            slot,
                        });
                    }
                    created.insert(base.clone());
                }
                for (depth, p) in missing.iter().rev().enumerate() {
                    let is_target = depth + 1 == missing.len();
                    let op = if is_target && !source_meta.is_dir() {
                        Op::Touch(cs(p).map_err(err)?)
                    } else {
                        Op::Mkdir(cs(p).map_err(err)?)
                    };
                    ops.push(op);
                    created.insert(p.clone());
                }
            }
            ops.push(Op::Bind {
                source: cs(&bind.source).map_err(err)?,
                target: cs(&target).map_err(err)?,
                read_only: bind.read_only,
            });
            mounted.push((target, bind.source.clone()));
        }
        if let Some(hide) = hide.filter(|h| h.is_dir()) {
            ops.push(Op::Hide(cs(hide).map_err(err)?));
        }
        if let Some(root) = root_shadow {
            ops.insert(0, root);
        }
        Ok(MountPlan { ops })
    }

    /// Runs in the forked child, right after `unshare(CLONE_NEWNS)`: stops mount events from
    /// propagating back to the host, then carries the plan out.
    pub(crate) fn apply(&self) -> io::Result<()> {
        let none = None::<&CStr>;
        mount(none, c"/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none)?;
        for op in &self.ops {
            match op {
                Op::ShadowRoot { stage, entries } => {
                    mount(
                        Some(c"tmpfs"),
                        stage.as_c_str(),
                        Some(c"tmpfs"),
                        MsFlags::MS_NOSUID,
                        Some(c"mode=755"),
                    )?;
                    bind_entries(entries);
                    nix::unistd::chdir(stage.as_c_str())?;
                    mount(Some(c"."), c"/", none, MsFlags::MS_MOVE, none)?;
                    nix::unistd::chroot(c".")?;
                    nix::unistd::chdir(c"/")?;
                }
                Op::Shadow { dir, slot, entries } => {
                    let original = open(
                        dir.as_c_str(),
                        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )?;
                    nix::unistd::dup3(original, slot.as_raw_fd(), OFlag::O_CLOEXEC)?;
                    let _ = nix::unistd::close(original);
                    mount(
                        Some(c"tmpfs"),
                        dir.as_c_str(),
                        Some(c"tmpfs"),
                        MsFlags::MS_NOSUID,
                        Some(c"mode=755"),
                    )?;
                    bind_entries(entries);
                }
                Op::Mkdir(path) => match nix::unistd::mkdir(path.as_c_str(), Mode::from_bits_truncate(0o755))
                {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                },
                Op::Touch(path) => create_file(path)?,
                Op::Bind {
                    source,
                    target,
                    read_only,
                } => {
                    mount(
                        Some(source.as_c_str()),
                        target.as_c_str(),
                        none,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        none,
                    )?;
                    if *read_only {
                        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                        mount(none, target.as_c_str(), none, flags, none)?;
                    }
                }
                Op::Hide(dir) => {
                    let flags =
                        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                    mount(
                        Some(c"tmpfs"),
                        dir.as_c_str(),
                        Some(c"tmpfs"),
                        flags,
                        Some(c"mode=000,size=4k"),
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// Re-creates each entry in a fresh tmpfs and binds the original onto it (best effort: an
/// entry that vanished or cannot be bound stays an empty placeholder).
fn bind_entries(entries: &Entries) {
    let none = None::<&CStr>;
    for (path, source, kind) in entries {
        let created = match kind {
            EntryKind::Symlink(to) => {
                let _ = nix::unistd::symlinkat(to.as_c_str(), None, path.as_c_str());
                continue;
            }
            EntryKind::Device {
                kind,
                mode,
                rdev,
                uid,
                gid,
            } => {
                // The same device, as a node of the tmpfs: far cheaper than a bind mount to
                // make and to tear down (a host's /dev has about a hundred of them).
                let perm = Mode::from_bits_truncate(*mode);
                if nix::sys::stat::mknod(path.as_c_str(), *kind, perm, *rdev).is_ok() {
                    let _ = nix::unistd::fchownat(
                        None,
                        path.as_c_str(),
                        Some(nix::unistd::Uid::from_raw(*uid)),
                        Some(nix::unistd::Gid::from_raw(*gid)),
                        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                    );
                    // mknod applied the umask.
                    let _ = nix::sys::stat::fchmodat(
                        None,
                        path.as_c_str(),
                        perm,
                        nix::sys::stat::FchmodatFlags::FollowSymlink,
                    );
                }
                continue;
            }
            EntryKind::Dir => {
                nix::unistd::mkdir(path.as_c_str(), Mode::from_bits_truncate(0o755)).map_err(io::Error::from)
            }
            EntryKind::File => create_file(path),
        };
        if created.is_ok() {
            let _ = mount(
                Some(source.as_c_str()),
                path.as_c_str(),
                none,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                none,
            );
        }
    }
}

fn create_file(path: &CString) -> io::Result<()> {
    let fd = open(
        path.as_c_str(),
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    let _ = nix::unistd::close(fd);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(source: &Path, target: &str) -> BindSpec {
        BindSpec {
            source: source.to_path_buf(),
            target: target.into(),
            read_only: false,
        }
    }

    fn kinds(plan: &MountPlan) -> Vec<String> {
        plan.ops
            .iter()
            .map(|op| match op {
                Op::ShadowRoot { .. } => "shadow-root".to_string(),
                Op::Shadow { dir, .. } => format!("shadow {}", dir.to_string_lossy()),
                Op::Mkdir(p) => format!("mkdir {}", p.to_string_lossy()),
                Op::Touch(p) => format!("touch {}", p.to_string_lossy()),
                Op::Bind { target, .. } => format!("bind {}", target.to_string_lossy()),
                Op::Hide(p) => format!("hide {}", p.to_string_lossy()),
            })
            .collect()
    }

    #[test]
    fn existing_targets_are_bound_in_place_and_missing_ones_created_in_a_shadow() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        fs::create_dir(&vol).unwrap();
        let host = tmp.path().join("host");
        fs::create_dir_all(host.join("etc")).unwrap();
        let etc = host.join("etc");
        let plan = MountPlan::prepare(
            &[
                bind(&vol, &format!("{}/app/conf", etc.display())),
                bind(&vol, &etc.display().to_string()),
                bind(&vol, "/podvisor-test-does-not-exist/data"),
            ],
            Some(tmp.path()),
            &tmp.path().join("stage"),
        )
        .unwrap();
        let e = etc.display();
        assert_eq!(
            kinds(&plan),
            vec![
                "shadow-root".to_string(),
                "mkdir /podvisor-test-does-not-exist".into(),
                "mkdir /podvisor-test-does-not-exist/data".into(),
                "bind /podvisor-test-does-not-exist/data".into(),
                format!("bind {e}"),
                // Inside the mounted volume: created there, not in a shadow.
                format!("mkdir {e}/app"),
                format!("mkdir {e}/app/conf"),
                format!("bind {e}/app/conf"),
                format!("hide {}", tmp.path().display()),
            ]
        );
    }

    #[test]
    fn a_missing_file_target_is_created_in_a_shadow_of_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("msg");
        fs::write(&file, "").unwrap();
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).unwrap();
        let target = format!("{}/sub/termination-log", dir.display());
        let plan = MountPlan::prepare(&[bind(&file, &target)], None, tmp.path()).unwrap();
        let d = dir.display();
        assert_eq!(
            kinds(&plan),
            vec![
                format!("shadow {d}"),
                format!("mkdir {d}/sub"),
                format!("touch {d}/sub/termination-log"),
                format!("bind {d}/sub/termination-log"),
            ]
        );
    }

    #[test]
    fn bad_mount_points_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for (target, message) in [
            ("data", "is not an absolute path"),
            ("/a/../b", "must not contain '..'"),
            ("/", "cannot be a mount point"),
        ] {
            let Err(e) = MountPlan::prepare(&[bind(tmp.path(), target)], None, tmp.path()) else {
                panic!("{target} accepted");
            };
            assert!(e.contains(message), "{target}: {e}");
        }
    }
}
