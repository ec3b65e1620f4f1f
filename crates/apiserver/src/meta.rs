//! Object metadata helpers: timestamps in RFC 3339, uids, generated names, JSON accessors.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `2024-05-01T12:00:00Z` for a time in milliseconds (second precision, like `metav1.Time`).
pub fn rfc3339(millis: i64) -> String {
    podvisor_core::rfc3339::seconds(millis)
}

/// `2024-05-01T12:00:00.123456Z` (microseconds, like `metav1.MicroTime`).
pub fn rfc3339_micro(millis: i64) -> String {
    podvisor_core::rfc3339::micros(millis)
}

/// Parses an RFC 3339 UTC or offset timestamp to milliseconds; `None` if malformed.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    podvisor_core::rfc3339::parse(s)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_i64(now_millis());
    h.finish()
}

/// A random version-4 UUID.
pub fn new_uid() -> String {
    let (a, b) = (random_u64(), random_u64());
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// `generateName` plus five random characters from kube-apiserver's alphabet.
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = random_u64();
    let mut out = prefix.chars().take(58).collect::<String>();
    for _ in 0..5 {
        let i = (n % ALPHABET.len() as u64) as usize;
        out.push(char::from(ALPHABET.get(i).copied().unwrap_or(b'x')));
        n /= ALPHABET.len() as u64;
    }
    out
}

/// A string at a dotted path (`metadata.name`, `involvedObject.kind`), `None` if absent.
pub fn str_at<'a>(object: &'a Value, path: &str) -> Option<&'a str> {
    path.split('.').try_fold(object, |v, part| v.get(part))?.as_str()
}

/// A value at a dotted path rendered as a field-selector string (`""` if absent).
pub fn field_value(object: &Value, path: &str) -> String {
    match path.split('.').try_fold(object, |v, part| v.get(part)) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `metadata` of an object as a mutable map, created if missing; `None` if not an object.
pub fn metadata_mut(object: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let map = object.as_object_mut()?;
    map.entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()))
        .as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_and_names_look_right() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_ne!(u, new_uid());
        assert_eq!(u.as_bytes()[14], b'4');
        let n = generate_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9);
    }
}
