//! Object metadata helpers: timestamps in RFC 3339 (`podvisor_core::rfc3339`), uids (random
//! version-4 UUIDs), generated names, JSON accessors.

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

/// Random bytes from the operating system; should it fail (it does not on Linux after boot),
/// a per-process counter and the clock keep uids and names distinct.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_i64(now_millis());
        let seed = h.finish().to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = seed.get(i % seed.len()).copied().unwrap_or_default() ^ (i as u8);
        }
    }
    bytes
}

/// A random version-4 UUID.
pub fn new_uid() -> String {
    uuid::Builder::from_random_bytes(random_bytes())
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// `generateName` plus five random characters from kube-apiserver's alphabet.
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = prefix.chars().take(58).collect::<String>();
    for r in random_bytes::<5>() {
        let i = usize::from(r) % ALPHABET.len();
        out.push(char::from(ALPHABET.get(i).copied().unwrap_or(b'x')));
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
        assert!(
            matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
            "RFC 4122 variant: {u}"
        );
        let uids: std::collections::HashSet<String> = (0..1000).map(|_| new_uid()).collect();
        assert_eq!(uids.len(), 1000);
        let n = generate_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9);
    }
}
