//! Kubernetes resource quantities (`64Mi`, `500m`), as numbers the node can use.

/// Parses a Kubernetes memory quantity (`64Mi`, `1G`, `128974848`, `129e6`) into bytes.
pub fn memory_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "m" => 1e-3,
        s if s.starts_with('e') || s.starts_with('E') => {
            let exp: i32 = s[1..].parse().ok()?;
            10f64.powi(exp)
        }
        _ => return None,
    };
    let value: f64 = num.parse().ok()?;
    (value >= 0.0).then(|| (value * mult).ceil() as u64)
}

/// Parses a Kubernetes CPU quantity (`500m`, `1`, `0.25`) into millicores.
pub fn cpu_millis(q: &str) -> Option<u64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().ok();
    }
    let value: f64 = q.parse().ok()?;
    (value >= 0.0).then(|| (value * 1000.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(memory_bytes("64Mi"), Some(64 << 20));
        assert_eq!(memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(memory_bytes("129e6"), Some(129_000_000));
        assert_eq!(memory_bytes("12345"), Some(12345));
        assert_eq!(memory_bytes("x"), None);
        assert_eq!(memory_bytes("-1"), None);
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("0.25"), Some(250));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("abc"), None);
    }
}
