//! What a volume's files hold: ConfigMap and Secret keys (or their `items`), downward API
//! fields and resources, with the kubelet's file modes and its messages for missing objects.

use super::*;
use podvisor_core::downward::{self, FieldContext, FieldValue, RuntimeFields};

/// `$(VAR)` expansion for `subPathExpr` (unknown names expand to nothing here; the rule is
/// `podvisor_core::expansion`).
pub(super) fn expand_vars(expr: &str, vars: &std::collections::HashMap<String, String>) -> String {
    podvisor_core::expansion::expand(expr, |name| Some(vars.get(name).map_or("", String::as_str)))
}

pub(super) async fn get_config_map(
    source: Option<&dyn ConfigSource>,
    namespace: &str,
    name: &str,
) -> Result<Option<ConfigMap>, String> {
    match source {
        Some(s) => s.config_map(namespace, name).await.map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

pub(super) async fn get_secret(
    source: Option<&dyn ConfigSource>,
    namespace: &str,
    name: &str,
) -> Result<Option<Secret>, String> {
    match source {
        Some(s) => s.secret(namespace, name).await.map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

pub(super) fn mode(item: Option<i32>, default: Option<i32>) -> u32 {
    (item.or(default).unwrap_or(DEFAULT_MODE) & 0o777) as u32
}

/// Keys to files: all keys, or the `items` (a missing key is an error unless optional).
pub(super) fn keyed_payload(
    all: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
    missing_key: impl Fn(&str) -> String,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in all {
                payload.insert(k, (v, mode(None, default_mode)));
            }
        }
        Some(items) => {
            for item in items {
                match all.get(&item.key) {
                    Some(v) => {
                        payload.insert(item.path.clone(), (v.clone(), mode(item.mode, default_mode)));
                    }
                    None if optional => {}
                    None => return Err(missing_key(&item.key)),
                }
            }
        }
    }
    Ok(payload)
}

/// A missing object: an empty volume when it is optional, else the kubelet's not-found error.
pub(super) fn absent(optional: bool, kind: &str, name: &str) -> Result<Payload, String> {
    if optional {
        Ok(Payload::new())
    } else {
        Err(format!("{kind} \"{name}\" not found"))
    }
}

pub(super) fn config_map_payload(
    name: &str,
    cm: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, String> {
    let Some(cm) = cm else {
        return absent(optional, "configmap", name);
    };
    let mut all: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    all.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    keyed_payload(all, items, default_mode, optional, |k| {
        format!("configmap references non-existent config key: {k}")
    })
}

pub(super) fn secret_payload(
    name: &str,
    secret: Option<&Secret>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, String> {
    let Some(secret) = secret else {
        return absent(optional, "secret", name);
    };
    let all = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    keyed_payload(all, items, default_mode, optional, |k| {
        format!("references non-existent secret key: {k}")
    })
}

/// Go's `%q` for the downward API's `key="value"` lines.
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn downward_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            let path = f.field_path.as_str();
            match downward::resolve(pod, path, FieldContext::Volume, RuntimeFields::default()) {
                Ok(FieldValue::Text(text)) => text,
                Ok(FieldValue::Map(map)) => format_map(map),
                Err(_) => {
                    return Err(format!(
                        "unsupported fieldPath {path:?} in downward API item {:?}",
                        item.path
                    ));
                }
            }
        } else if let Some(r) = &item.resource_field_ref {
            resource_value(pod, r)?
        } else {
            continue;
        };
        payload.insert(
            item.path.clone(),
            (value.into_bytes(), mode(item.mode, default_mode)),
        );
    }
    Ok(payload)
}

/// `resourceFieldRef`: the container's limit or request divided by the divisor (rounded up);
/// an unset limit is the node's capacity, as the kubelet reports it.
pub(crate) fn resource_value(
    pod: &Pod,
    r: &podvisor_core::corev1::ResourceFieldSelector,
) -> Result<String, String> {
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    let name = r.container_name.as_deref().unwrap_or("");
    let container = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .ok_or_else(|| format!("resourceFieldRef: container {name:?} not found"))?;
    let resources = container.resources.as_ref();
    let (section, resource) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {:?}", r.resource))?;
    let map = match section {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resource {:?}", r.resource)),
    };
    let quantity = map.and_then(|m| m.get(resource)).map(|q| q.0.clone());
    let divisor = r.divisor.as_ref().map(|q| q.0.clone());
    match resource {
        "cpu" => {
            let millis = match quantity.as_deref().and_then(quantity::cpu_millis) {
                Some(m) => m,
                None if section == "limits" => node_cpus() * 1000,
                None => 0,
            };
            let per = divisor
                .as_deref()
                .and_then(quantity::cpu_millis)
                .filter(|d| *d > 0)
                .unwrap_or(1000);
            Ok(millis.div_ceil(per).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match quantity.as_deref().and_then(quantity::memory_bytes) {
                Some(b) => b,
                None if section == "limits" && resource == "memory" => node_memory(),
                None => 0,
            };
            let per = divisor
                .as_deref()
                .and_then(quantity::memory_bytes)
                .filter(|d| *d > 0)
                .unwrap_or(1);
            Ok(bytes.div_ceil(per).to_string())
        }
        _ => Err(format!("unsupported resource {:?}", r.resource)),
    }
}

pub(super) fn node_cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

pub(super) fn node_memory() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
