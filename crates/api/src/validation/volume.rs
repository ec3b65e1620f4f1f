//! Pod volumes and container `volumeMounts` (`validateVolumes`, `ValidateVolumeMounts`),
//! for the volume types a process node serves; other types are accepted as the API server
//! accepts them (the node reports them when it cannot mount them).

use std::collections::HashSet;

use podvisor_core::corev1::{Container, DownwardAPIVolumeFile, KeyToPath, Volume};

use super::config::key_problems;
use super::field::{FieldError, Path, Value};
use super::format;

type Errs = Vec<FieldError>;

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];

const MODE_RANGE: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// The volume source fields set on `v` (everything but `name`).
fn sources(v: &Volume) -> Vec<String> {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .map(|o| o.keys().filter(|k| *k != "name").cloned().collect())
        })
        .unwrap_or_default()
}

fn check_mode(mode: Option<i32>, p: &Path, errs: &mut Errs) {
    if let Some(m) = mode
        && !(0..=0o777).contains(&m)
    {
        errs.push(FieldError::invalid(p.as_str(), Value::int(m), MODE_RANGE));
    }
}

/// A path inside a volume: relative, no `..` element, not starting with `..`.
fn check_local_path(path: &str, p: &Path, errs: &mut Errs) {
    if path.is_empty() {
        errs.push(FieldError::required(p.as_str(), ""));
        return;
    }
    if path.starts_with('/') {
        errs.push(FieldError::invalid(
            p.as_str(),
            Value::str(path),
            "must be a relative path",
        ));
    }
    if path.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(
            p.as_str(),
            Value::str(path),
            "must not contain '..'",
        ));
    } else if path.starts_with("..") {
        errs.push(FieldError::invalid(
            p.as_str(),
            Value::str(path),
            "must not start with '..'",
        ));
    }
}

fn check_items(items: &[KeyToPath], p: &Path, errs: &mut Errs) {
    for (i, item) in items.iter().enumerate() {
        let ip = p.index(i);
        if item.key.is_empty() {
            errs.push(FieldError::required(ip.child("key").as_str(), ""));
        } else {
            for m in key_problems(&item.key) {
                errs.push(FieldError::invalid(
                    ip.child("key").as_str(),
                    Value::str(&item.key),
                    m,
                ));
            }
        }
        check_local_path(&item.path, &ip.child("path"), errs);
        check_mode(item.mode, &ip.child("mode"), errs);
    }
}

fn check_downward_items(items: &[DownwardAPIVolumeFile], p: &Path, errs: &mut Errs) {
    for (i, item) in items.iter().enumerate() {
        let ip = p.index(i);
        check_local_path(&item.path, &ip.child("path"), errs);
        check_mode(item.mode, &ip.child("mode"), errs);
        match (&item.field_ref, &item.resource_field_ref) {
            (Some(_), Some(_)) => errs.push(FieldError::invalid(
                ip.as_str(),
                Value::str("resource"),
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            )),
            (None, None) => errs.push(FieldError::required(
                ip.as_str(),
                "one of fieldRef and resourceFieldRef is required",
            )),
            _ => {}
        }
    }
}

/// Validates `spec.volumes`; returns the volume names.
pub(crate) fn validate_volumes<'a>(volumes: &'a [Volume], path: &Path, errs: &mut Errs) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = path.index(i);
        let name_path = p.child("name");
        if v.name.is_empty() {
            errs.push(FieldError::required(name_path.as_str(), ""));
        } else {
            for m in format::is_dns1123_label(&v.name) {
                errs.push(FieldError::invalid(name_path.as_str(), Value::str(&v.name), m));
            }
            if !names.insert(v.name.as_str()) {
                errs.push(FieldError::duplicate(name_path.as_str(), Value::str(&v.name)));
            }
        }
        let set = sources(v);
        match set.len() {
            0 => errs.push(FieldError::required(p.as_str(), "must specify a volume type")),
            1 => {}
            _ => errs.push(FieldError::forbidden(
                p.child(&set[1]).as_str(),
                "may not specify more than 1 volume type",
            )),
        }
        if let Some(h) = &v.host_path {
            let hp = p.child("hostPath");
            if h.path.is_empty() {
                errs.push(FieldError::required(hp.child("path").as_str(), ""));
            }
            let t = h.type_.as_deref().unwrap_or("");
            if !HOST_PATH_TYPES.contains(&t) {
                errs.push(FieldError::not_supported(
                    hp.child("type").as_str(),
                    Value::str(t),
                    HOST_PATH_TYPES,
                ));
            }
        }
        if let Some(c) = &v.config_map {
            let cp = p.child("configMap");
            if c.name.is_empty() {
                errs.push(FieldError::required(cp.child("name").as_str(), ""));
            }
            check_items(c.items.as_deref().unwrap_or(&[]), &cp.child("items"), errs);
            check_mode(c.default_mode, &cp.child("defaultMode"), errs);
        }
        if let Some(s) = &v.secret {
            let sp = p.child("secret");
            if s.secret_name.as_deref().unwrap_or("").is_empty() {
                errs.push(FieldError::required(sp.child("secretName").as_str(), ""));
            }
            check_items(s.items.as_deref().unwrap_or(&[]), &sp.child("items"), errs);
            check_mode(s.default_mode, &sp.child("defaultMode"), errs);
        }
        if let Some(d) = &v.downward_api {
            let dp = p.child("downwardAPI");
            check_downward_items(d.items.as_deref().unwrap_or(&[]), &dp.child("items"), errs);
            check_mode(d.default_mode, &dp.child("defaultMode"), errs);
        }
        if let Some(pr) = &v.projected {
            let pp = p.child("projected");
            check_mode(pr.default_mode, &pp.child("defaultMode"), errs);
            for (j, s) in pr.sources.iter().flatten().enumerate() {
                let sp = pp.child("sources").index(j);
                if let Some(c) = &s.config_map {
                    check_items(
                        c.items.as_deref().unwrap_or(&[]),
                        &sp.child("configMap").child("items"),
                        errs,
                    );
                }
                if let Some(c) = &s.secret {
                    check_items(
                        c.items.as_deref().unwrap_or(&[]),
                        &sp.child("secret").child("items"),
                        errs,
                    );
                }
                if let Some(d) = &s.downward_api {
                    check_downward_items(
                        d.items.as_deref().unwrap_or(&[]),
                        &sp.child("downwardAPI").child("items"),
                        errs,
                    );
                }
            }
        }
    }
    names
}

/// Validates one container's `volumeMounts` against the pod's volume names.
pub(crate) fn validate_volume_mounts(c: &Container, volumes: &HashSet<&str>, path: &Path, errs: &mut Errs) {
    let mut paths = HashSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let p = path.index(i);
        let name_path = p.child("name");
        if m.name.is_empty() {
            errs.push(FieldError::required(name_path.as_str(), ""));
        } else if !volumes.contains(m.name.as_str()) {
            errs.push(FieldError::not_found(name_path.as_str(), Value::str(&m.name)));
        }
        let mp = p.child("mountPath");
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(mp.as_str(), ""));
        } else if !paths.insert(m.mount_path.trim_end_matches('/')) {
            errs.push(FieldError::invalid(
                mp.as_str(),
                Value::str(&m.mount_path),
                "must be unique",
            ));
        }
        let sub = m.sub_path.as_deref().unwrap_or("");
        let expr = m.sub_path_expr.as_deref().unwrap_or("");
        if !sub.is_empty() {
            if !expr.is_empty() {
                errs.push(FieldError::invalid(
                    p.child("subPathExpr").as_str(),
                    Value::str(expr),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            let sp = p.child("subPath");
            if sub.starts_with('/') {
                errs.push(FieldError::invalid(
                    sp.as_str(),
                    Value::str(sub),
                    "must be a relative path",
                ));
            }
            if sub.split('/').any(|part| part == "..") {
                errs.push(FieldError::invalid(
                    sp.as_str(),
                    Value::str(sub),
                    "must not contain '..'",
                ));
            }
        }
    }
}
