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
//! everyone. Instead, the deepest directory that does exist is **shadowed** in the container's
//! namespace so it looks the same plus the new mount points: an overlay whose lower layer is
//! the original directory and whose upper layer is a fresh tmpfs (the mounts below the
//! directory are bound back on top). Where overlayfs is missing, or the staging directory lies
//! inside the shadowed one, a tmpfs is mounted over the directory instead and every original
//! entry is put back into it (devices re-created with `mknod`, everything else bound; a
//! hundred-odd operations for a host's `/dev`, against four or five). For `/` itself a tmpfs is
//! built at a staging directory, the top-level entries are bound into it recursively, and it
//! becomes the root (`MS_MOVE` onto `/`, then `chroot`), so joining the namespace later (exec
//! probes, `setns`) lands in the same view.
//!
//! # Restarts
//! The runtime keeps a container's namespace for its next instance, which joins it instead of
//! carrying the plan out again, as long as the binds' sources are the same files (device and
//! inode) on the same sandbox namespace; a replaced file (a `subPath` of an updated ConfigMap)
//! makes the next instance get a fresh namespace. What an instance wrote into a shadow's upper
//! layer is therefore still there for the next one, as files it wrote elsewhere on the host
//! filesystem are.
//!
//! # Hiding the node's data directory
//! Volume contents live under the node's data directory on the host. After the binds, the data
//! directory is covered in the container's namespace with a read-only bind of an empty
//! directory the runtime keeps for this ([`Hidden::cover`]), so a container reaches exactly the
//! volumes it mounts and no other pod's (or container's) files by any path. A bind makes no
//! file system of its own: a tmpfs per container was one more superblock for the kernel to
//! build at the start and tear down when the namespace goes (its shrinker and list_lru entries
//! under locks every other teardown of a burst contends for). (A container running as root
//! with `CAP_SYS_ADMIN` can undo mounts; there is no user namespace or capability dropping.)

use crate::error::MountError;
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
    ///
    /// With `overlay`, the directory is instead covered by an overlay whose lower layer is the
    /// original (so nothing is copied or bound per entry) and whose upper layer is a fresh
    /// tmpfs at the staging directory; the mounts below the directory are bound back.
    Shadow {
        dir: CString,
        slot: OwnedFd,
        entries: Entries,
        overlay: Option<Overlay>,
    },
    Mkdir(CString),
    Touch(CString),
    Bind {
        source: CString,
        target: CString,
        read_only: bool,
    },
}

/// A directory hidden in every container's namespace (the node's data directory), and the
/// empty directory bound over it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hidden {
    pub(crate) dir: PathBuf,
    /// Empty, mode 555, never written: what a container sees at `dir`.
    pub(crate) cover: PathBuf,
}

/// An overlay over a shadowed directory (see [`Op::Shadow`]).
struct Overlay {
    /// Where the upper layer's tmpfs is mounted, and its two directories.
    stage: CString,
    upper: CString,
    work: CString,
    /// `lowerdir=/proc/self/fd/<slot>,upperdir=…,workdir=…` (no user path in the options, so
    /// nothing needs escaping).
    options: CString,
    /// Mounts below the directory, bound back on top of the overlay: (source through the
    /// original's fd, target).
    submounts: Vec<(CString, CString)>,
}

/// Whether this kernel has overlayfs (checked once).
fn overlay_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        fs::read_to_string("/proc/filesystems")
            .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some("overlay")))
    })
}

/// The mount points listed in a `mountinfo` file (octal escapes decoded).
pub(crate) fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|field| {
            let bytes = field.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                let octal = bytes.get(i + 1..i + 4).and_then(|d| {
                    std::str::from_utf8(d)
                        .ok()
                        .and_then(|d| u8::from_str_radix(d, 8).ok())
                });
                match (bytes[i], octal) {
                    (b'\\', Some(b)) => {
                        out.push(b);
                        i += 4;
                    }
                    (b, _) => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&out),
            ))
        })
        .collect()
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
fn clean_target(target: &str) -> Result<PathBuf, MountError> {
    let p = Path::new(target);
    if !p.is_absolute() {
        return Err(MountError::NotAbsolute(target.into()));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(MountError::ParentDir(target.into()));
            }
        }
    }
    if out == Path::new("/") {
        return Err(MountError::Root);
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
    /// The highest descriptor number the plan's steps use (its shadowed directories' slots),
    /// or -1.
    pub(crate) fn max_fd(&self) -> i32 {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Shadow { slot, .. } => Some(slot.as_raw_fd()),
                _ => None,
            })
            .max()
            .unwrap_or(-1)
    }

    /// Plans `binds` (in order of depth, so a mount inside another lands on top of it), then
    /// hides `hide` (the node's data directory). `stage` is an empty directory on the host used
    /// when `/` itself must be shadowed.
    ///
    /// `mount_points` are those of the namespace the container starts from: the ones below a
    /// shadowed directory are bound back over its overlay.
    pub(crate) fn prepare(
        binds: &[BindSpec],
        hide: Option<&Hidden>,
        stage: &Path,
        mount_points: &[PathBuf],
    ) -> Result<MountPlan, MountError> {
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
        let err = MountError::Io;
        for (target, bind) in binds {
            let source_meta = fs::metadata(&bind.source).map_err(|source| MountError::Source {
                path: bind.source.clone(),
                source,
            })?;
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
                        let overlay = if overlay_supported() {
                            Overlay::plan(&base, &via, stage, mount_points).map_err(err)?
                        } else {
                            None
                        };
                        let (entries, overlay) = if let Some(overlay) = overlay {
                            (Vec::new(), Some(overlay))
                        } else {
                            let dir = host_view(&base, &mounted);
                            (entries_of(&dir, &via, &base).map_err(err)?, None)
                        };
                        ops.push(Op::Shadow {
                            dir: cs(&base).map_err(err)?,
                            entries,
                            slot,
                            overlay,
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
        // The data directory and its cover are the runtime's own (both there when it started):
        // neither is looked up at every start, and a missing one fails the start rather than
        // leaving the data directory in view.
        if let Some(hide) = hide {
            ops.push(Op::Bind {
                source: cs(&hide.cover).map_err(err)?,
                target: cs(&hide.dir).map_err(err)?,
                read_only: true,
            });
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
                    mount_tmpfs(stage.as_c_str())?;
                    bind_entries(entries);
                    nix::unistd::chdir(stage.as_c_str())?;
                    mount(Some(c"."), c"/", none, MsFlags::MS_MOVE, none)?;
                    nix::unistd::chroot(c".")?;
                    nix::unistd::chdir(c"/")?;
                }
                Op::Shadow {
                    dir,
                    slot,
                    entries,
                    overlay,
                } => {
                    let original = open(
                        dir.as_c_str(),
                        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )?;
                    nix::unistd::dup3(original, slot.as_raw_fd(), OFlag::O_CLOEXEC)?;
                    let _ = nix::unistd::close(original);
                    if let Some(overlay) = overlay {
                        overlay.apply(dir)?;
                        continue;
                    }
                    mount_tmpfs(dir.as_c_str())?;
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
                    rbind(source.as_c_str(), target.as_c_str())?;
                    if *read_only {
                        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                        mount(none, target.as_c_str(), none, flags, none)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Overlay {
    /// `None` when the staging path cannot be written into overlay options or lies inside
    /// `dir` (overlayfs refuses layers that overlap).
    fn plan(
        dir: &Path,
        original: &Path,
        stage: &Path,
        mount_points: &[PathBuf],
    ) -> io::Result<Option<Overlay>> {
        if stage
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .any(|b| matches!(b, b',' | b':' | b'\\' | b' ' | b'\n'))
            || stage.starts_with(dir)
        {
            return Ok(None);
        }
        // The outermost mounts strictly below `dir` (a recursive bind carries the rest).
        let mut below: Vec<&PathBuf> = mount_points
            .iter()
            .filter(|m| m.starts_with(dir) && m.as_path() != dir)
            .collect();
        below.sort_by_key(|m| m.components().count());
        let mut outer: Vec<&PathBuf> = Vec::new();
        for m in below {
            if !outer.iter().any(|o| m.starts_with(o)) {
                outer.push(m);
            }
        }
        let submounts = outer
            .into_iter()
            .filter_map(|m| m.strip_prefix(dir).ok().map(|rel| (rel, m)))
            .map(|(rel, m)| Ok((cs(&original.join(rel))?, cs(m)?)))
            .collect::<io::Result<_>>()?;
        let (upper, work) = (stage.join("upper"), stage.join("work"));
        Ok(Some(Overlay {
            stage: cs(stage)?,
            upper: cs(&upper)?,
            work: cs(&work)?,
            options: CString::new(format!(
                "lowerdir={},upperdir={},workdir={}",
                original.display(),
                upper.display(),
                work.display()
            ))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))?,
            submounts,
        }))
    }

    /// In the child, once the original directory is open at the slot.
    fn apply(&self, dir: &CStr) -> io::Result<()> {
        mount_tmpfs(self.stage.as_c_str())?;
        nix::unistd::mkdir(self.upper.as_c_str(), Mode::from_bits_truncate(0o755))?;
        nix::unistd::mkdir(self.work.as_c_str(), Mode::from_bits_truncate(0o755))?;
        mount(
            Some(c"overlay"),
            dir,
            Some(c"overlay"),
            MsFlags::MS_NOSUID,
            Some(self.options.as_c_str()),
        )?;
        for (source, target) in &self.submounts {
            rbind(source.as_c_str(), target.as_c_str())?;
        }
        Ok(())
    }
}

/// Mounts a fresh tmpfs (mode 755, nosuid) at `at`.
fn mount_tmpfs(at: &CStr) -> nix::Result<()> {
    mount(
        Some(c"tmpfs"),
        at,
        Some(c"tmpfs"),
        MsFlags::MS_NOSUID,
        Some(c"mode=755"),
    )
}

/// Binds `source` (with the mounts below it) at `target`.
fn rbind(source: &CStr, target: &CStr) -> nix::Result<()> {
    mount(
        Some(source),
        target,
        None::<&CStr>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&CStr>,
    )
}

/// Re-creates each entry in a fresh tmpfs and binds the original onto it (best effort: an
/// entry that vanished or cannot be bound stays an empty placeholder).
fn bind_entries(entries: &Entries) {
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
            let _ = rbind(source.as_c_str(), path.as_c_str());
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
            Some(&Hidden {
                dir: tmp.path().to_path_buf(),
                cover: vol.clone(),
            }),
            &tmp.path().join("stage"),
            &[],
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
                // The data directory, covered last.
                format!("bind {}", tmp.path().display()),
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
        let plan = MountPlan::prepare(&[bind(&file, &target)], None, tmp.path(), &[]).unwrap();
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
            let Err(e) = MountPlan::prepare(&[bind(tmp.path(), target)], None, tmp.path(), &[]) else {
                panic!("{target} accepted");
            };
            assert!(e.to_string().contains(message), "{target}: {e}");
        }
    }

    #[test]
    fn mountinfo_points_are_decoded_and_only_the_outermost_below_a_shadow_are_bound_back() {
        let info = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                    23 22 0:5 / /dev rw - devtmpfs devtmpfs rw\n\
                    24 23 0:22 / /dev/shm rw - tmpfs tmpfs rw\n\
                    25 24 0:23 / /dev/shm rw - tmpfs tmpfs rw\n\
                    26 23 0:24 / /dev/pts rw - devpts devpts rw\n\
                    27 23 0:25 / /dev/my\\040disk rw - tmpfs tmpfs rw\n\
                    28 27 0:26 / /dev/my\\040disk/inner rw - tmpfs tmpfs rw\n\
                    29 22 0:27 / /devices rw - tmpfs tmpfs rw\n";
        let points = mount_points(info);
        assert_eq!(points[5], PathBuf::from("/dev/my disk"));
        let overlay = Overlay::plan(
            Path::new("/dev"),
            Path::new("/proc/self/fd/9"),
            Path::new("/stage"),
            &points,
        )
        .unwrap()
        .expect("an overlay");
        let submounts: Vec<(String, String)> = overlay
            .submounts
            .iter()
            .map(|(s, t)| (s.to_string_lossy().into_owned(), t.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            submounts,
            vec![
                ("/proc/self/fd/9/shm".to_string(), "/dev/shm".to_string()),
                ("/proc/self/fd/9/pts".into(), "/dev/pts".into()),
                ("/proc/self/fd/9/my disk".into(), "/dev/my disk".into()),
            ]
        );
        assert_eq!(
            overlay.options.to_str().unwrap(),
            "lowerdir=/proc/self/fd/9,upperdir=/stage/upper,workdir=/stage/work"
        );
        // A staging directory inside the shadowed one, or one that options cannot carry.
        for stage in ["/dev/stage", "/data,dir/stage"] {
            let plan = Overlay::plan(
                Path::new("/dev"),
                Path::new("/proc/self/fd/9"),
                Path::new(stage),
                &points,
            );
            assert!(plan.unwrap().is_none(), "{stage}");
        }
    }
}
