//! The controller revision hash (rule 1.11): a 32-bit FNV-1a of a pod template, with the
//! collision count mixed in, written in the API's vowel-free alphabet. Used for
//! `pod-template-hash` (Deployments) and DaemonSet revisions; StatefulSet revisions hash their
//! patch bytes with [`hash_bytes`].
//!
//! Upstream hashes a Go-specific dump of the struct; we hash the template's JSON, which is
//! deterministic for the `k8s-openapi` types (fields in declaration order, maps sorted). The
//! values differ from a real cluster's, the alphabet and length do not.

use podvisor_core::corev1::PodTemplateSpec;

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// apimachinery's `rand.SafeEncodeString` alphabet: no vowels, no `0`, `1`, `3`.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a(mut hash: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Maps each character of `s` into the safe alphabet, as `rand.SafeEncodeString` does.
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// The hash of `bytes` with `collision_count` mixed in (its value as a little-endian `u32`,
/// padded to 8 bytes), safe-encoded: at most 10 characters.
pub fn hash_bytes(bytes: &[u8], collision_count: Option<i32>) -> String {
    let mut h = fnv1a(FNV_OFFSET, bytes);
    if let Some(c) = collision_count {
        let mut padded = [0u8; 8];
        padded[..4].copy_from_slice(&c.cast_unsigned().to_le_bytes());
        h = fnv1a(h, &padded);
    }
    safe_encode(&h.to_string())
}

/// `ComputeHash(template, collisionCount)`.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // Serialising a k8s-openapi struct cannot fail (no maps with non-string keys).
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    hash_bytes(&bytes, collision_count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use podvisor_core::metav1::ObjectMeta;

    fn template(label: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), label.to_string())].into()),
                ..Default::default()
            }),
            spec: None,
        }
    }

    #[test]
    fn fnv1a_is_the_reference_function() {
        // Reference values of 32-bit FNV-1a.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0x811c_9dc5);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn hashes_are_stable_safe_and_change_with_template_and_collisions() {
        let a = compute_hash(&template("web"), None);
        assert_eq!(a, compute_hash(&template("web"), None));
        assert!(a.len() <= 10 && !a.is_empty());
        assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{a}");
        assert_ne!(a, compute_hash(&template("api"), None));
        assert_ne!(a, compute_hash(&template("web"), Some(1)));
        assert_ne!(
            compute_hash(&template("web"), Some(1)),
            compute_hash(&template("web"), Some(2))
        );
        // Digits map one by one: '0' is byte 48, 48 % 27 = 21 → '4'.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }
}
