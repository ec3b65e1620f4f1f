//! Kubernetes resource quantities (`64Mi`, `500m`, `1.5Gi`, `2E`, `1e3`), parsed exactly.
//!
//! The grammar is apimachinery's `resource.ParseQuantity`: an optional sign, decimal digits with
//! at most one `.`, then nothing, a decimal-SI suffix (`n u m k M G T P E`), a binary-SI suffix
//! (`Ki Mi Gi Ti Pi Ei`) or a decimal exponent (`e3`, `E-2`, `e+6`). The amount is kept as its
//! digits and exponents, never as a float, so `0.1`, `1Ei` and `8E` convert without rounding
//! error; conversions round up, as `Quantity.Value()` and `MilliValue()` do.

use std::fmt;

/// The grammar's own message, as apimachinery words it (kube-apiserver returns it for a
/// malformed quantity).
pub const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Why a string is not a quantity (apimachinery's errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Empty, or characters after the suffix that cannot belong to it.
    #[error("{QUANTITY_FORMAT}")]
    Format,
    /// The suffix is none of the known ones (`1Kb`, `1mi`, `1e`).
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// A parsed quantity: `±digits × 10^exp10 × 2^exp2`, exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    /// Significant decimal digits (ASCII), without leading zeros; empty for zero.
    digits: Vec<u8>,
    /// Power of ten applied to `digits` (the decimal point and a decimal suffix or exponent).
    exp10: i64,
    /// Power of two from a binary suffix (0, 10, ..., 60).
    exp2: u32,
}

/// Parses a quantity as kube-apiserver does.
pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::Format);
    }
    let bytes = s.as_bytes();
    let (negative, mut pos) = match bytes.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let digits_from = |pos: usize| {
        bytes
            .get(pos..)
            .map_or(0, |rest| rest.iter().take_while(|b| b.is_ascii_digit()).count())
    };
    let int_len = digits_from(pos);
    let int = &bytes[pos..pos + int_len];
    pos += int_len;
    let mut frac: &[u8] = &[];
    if bytes.get(pos) == Some(&b'.') {
        let frac_len = digits_from(pos + 1);
        frac = &bytes[pos + 1..pos + 1 + frac_len];
        pos += 1 + frac_len;
    }
    // Upstream's scanner reads a sign or a suffix alone (`-`, `Mi`) as zero; kube-apiserver's
    // regular expression and our validation want a digit.
    if int_len + frac.len() == 0 {
        return Err(QuantityError::Format);
    }
    let suffix = s.get(pos..).ok_or(QuantityError::Format)?;
    let letters = suffix.bytes().take_while(|b| b"eEinumkKMGTP".contains(b)).count();
    let tail = &suffix[letters..];
    let tail = tail.strip_prefix(['+', '-']).unwrap_or(tail);
    if !tail.bytes().all(|b| b.is_ascii_digit()) {
        // Upstream's regular expression does not match (`1.2.3`, `1 Mi`, `1Kb`).
        return Err(QuantityError::Format);
    }
    let (exp10, exp2) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other => {
            let exp = other
                .strip_prefix(['e', 'E'])
                .filter(|e| !e.is_empty())
                .ok_or(QuantityError::Suffix)?;
            (exp.parse::<i64>().map_err(|_| QuantityError::Suffix)?, 0)
        }
    };
    let mut digits: Vec<u8> = int.iter().chain(frac).copied().collect();
    let leading = digits.iter().take_while(|d| **d == b'0').count();
    digits.drain(..leading);
    let frac_len = i64::try_from(frac.len()).map_err(|_| QuantityError::Format)?;
    Ok(Quantity {
        negative: negative && !digits.is_empty(),
        digits,
        exp10: exp10.saturating_sub(frac_len),
        exp2,
    })
}

impl Quantity {
    /// Whether the amount is below zero (`-0` is zero, not negative).
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// The amount in whole units, rounded up (`Quantity.Value()`); `None` when negative,
    /// `u64::MAX` when larger.
    pub fn ceil_units(&self) -> Option<u64> {
        self.ceil_scaled(0)
    }

    /// The amount in thousandths, rounded up (`Quantity.MilliValue()`); `None` when negative,
    /// `u64::MAX` when larger.
    pub fn ceil_millis(&self) -> Option<u64> {
        self.ceil_scaled(3)
    }

    /// `ceil(amount × 10^shift)` for a non-negative amount, saturating at `u64::MAX`.
    fn ceil_scaled(&self, shift: i64) -> Option<u64> {
        if self.negative {
            return None;
        }
        if self.digits.is_empty() {
            return Some(0);
        }
        // Multiply the digits by 2^exp2 exactly (decimal long multiplication, at most 60 times
        // by two: the digit string grows by at most 19 digits).
        let mut n: Vec<u8> = self.digits.iter().map(|d| d - b'0').collect();
        for _ in 0..self.exp2 {
            let mut carry = 0;
            for d in n.iter_mut().rev() {
                let v = *d * 2 + carry;
                *d = v % 10;
                carry = v / 10;
            }
            if carry > 0 {
                n.insert(0, carry);
            }
        }
        let exp = self.exp10.saturating_add(shift);
        let len = i64::try_from(n.len()).unwrap_or(i64::MAX);
        // Digits before the decimal point, and whether any non-zero digit is after it.
        let int_len = len.saturating_add(exp);
        if int_len > 20 {
            return Some(u64::MAX);
        }
        let (int, frac): (Vec<u8>, &[u8]) = if exp >= 0 {
            let zeros = usize::try_from(exp).unwrap_or(0);
            (
                n.iter().copied().chain(std::iter::repeat_n(0, zeros)).collect(),
                &[],
            )
        } else if int_len <= 0 {
            (Vec::new(), &n)
        } else {
            let split = usize::try_from(int_len).unwrap_or(0);
            (n[..split].to_vec(), &n[split..])
        };
        let whole = int
            .iter()
            .try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(u64::from(*d)));
        let round_up = u64::from(frac.iter().any(|d| *d != 0));
        Some(whole.and_then(|w| w.checked_add(round_up)).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Quantity {
    /// The amount as `digits`, `e` and a power of ten, times a power of two (for messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.negative { "-" } else { "" };
        let digits = if self.digits.is_empty() {
            "0"
        } else {
            std::str::from_utf8(&self.digits).unwrap_or("?")
        };
        write!(f, "{sign}{digits}e{}", self.exp10)?;
        if self.exp2 > 0 {
            write!(f, "*2^{}", self.exp2)?;
        }
        Ok(())
    }
}

/// Parses a Kubernetes memory quantity (`64Mi`, `1G`, `128974848`, `129e6`, `1Ei`) into bytes,
/// rounded up; `None` if malformed or negative.
pub fn memory_bytes(q: &str) -> Option<u64> {
    parse(q.trim()).ok()?.ceil_units()
}

/// Parses a Kubernetes CPU quantity (`500m`, `1`, `0.25`) into millicores, rounded up; `None`
/// if malformed or negative.
pub fn cpu_millis(q: &str) -> Option<u64> {
    parse(q.trim()).ok()?.ceil_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    #[test]
    fn every_suffix_is_exact() {
        assert_eq!(memory_bytes("1P"), Some(10u64.pow(15)));
        assert_eq!(memory_bytes("2E"), Some(2 * 10u64.pow(18)));
        assert_eq!(memory_bytes("1Pi"), Some(1 << 50));
        assert_eq!(memory_bytes("7Ei"), Some(7 << 60));
        assert_eq!(memory_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(memory_bytes("0.1Ki"), Some(103)); // 102.4, rounded up
        assert_eq!(memory_bytes("3n"), Some(1));
        assert_eq!(memory_bytes("1500u"), Some(1));
        assert_eq!(memory_bytes("1e-2"), Some(1));
        assert_eq!(memory_bytes("123456789123456789"), Some(123_456_789_123_456_789));
        assert_eq!(cpu_millis("0.1"), Some(100));
        assert_eq!(cpu_millis("1.0005"), Some(1001));
        assert_eq!(cpu_millis("100u"), Some(1));
        assert_eq!(cpu_millis("2k"), Some(2_000_000));
        assert_eq!(cpu_millis("1E-3"), Some(1));
        // Beyond u64 saturates instead of wrapping.
        assert_eq!(memory_bytes("16Ei"), Some(u64::MAX));
        assert_eq!(memory_bytes("1e400"), Some(u64::MAX));
        assert_eq!(memory_bytes("1e-400"), Some(1));
        assert_eq!(memory_bytes("0e400"), Some(0));
    }

    #[test]
    fn the_grammar_matches_apimachinery() {
        for ok in [
            "0", "1", "0.5", ".5", "5.", "500m", "64Mi", "1e3", "1E-2", "1e+2", "+2", "12Ki", "3n", "1E",
            "1Ei", "2P", "2Pi", "-0", "007",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(parse(""), Err(QuantityError::Format));
        assert_eq!(parse("1.2.3"), Err(QuantityError::Format));
        // Upstream's scanner reads these as zero; its regular expression (and we) want a digit.
        for no_digit in ["+", "-", ".", "Mi", "k"] {
            assert_eq!(parse(no_digit), Err(QuantityError::Format), "{no_digit}");
        }
        assert_eq!(parse("1 Mi"), Err(QuantityError::Format));
        assert_eq!(parse("- 1"), Err(QuantityError::Format));
        assert_eq!(parse("abc"), Err(QuantityError::Format));
        assert_eq!(parse("1Kb"), Err(QuantityError::Format));
        for bad_suffix in ["1mi", "1e", "1KiB", "1ki", "1e99999999999999999999"] {
            assert!(parse(bad_suffix).is_err(), "{bad_suffix}");
        }
        assert_eq!(parse("1mi"), Err(QuantityError::Suffix));
        assert!(parse("-1").is_ok_and(|q| q.is_negative()));
        assert!(parse("-0.0Gi").is_ok_and(|q| !q.is_negative() && q.is_zero()));
        assert_eq!(
            QuantityError::Format.to_string(),
            QUANTITY_FORMAT,
            "kube-apiserver's words"
        );
    }

    const DECIMAL: [(&str, u32); 6] = [("", 0), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15)];
    const BINARY: [(&str, u32); 6] = [
        ("Ki", 10),
        ("Mi", 20),
        ("Gi", 30),
        ("Ti", 40),
        ("Pi", 50),
        ("Ei", 60),
    ];

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse(&s).map(|q| (q.ceil_units(), q.ceil_millis()));
        }

        #[test]
        fn integers_with_a_decimal_suffix_are_exact(n in 0u64..1_000_000, i in 0usize..6) {
            let (suffix, exp) = DECIMAL[i];
            let expected = u128::from(n) * 10u128.pow(exp);
            let got = memory_bytes(&format!("{n}{suffix}"));
            prop_assert_eq!(got, Some(u64::try_from(expected).unwrap_or(u64::MAX)));
        }

        #[test]
        fn integers_with_a_binary_suffix_are_exact(n in 0u64..100_000, i in 0usize..6) {
            let (suffix, exp) = BINARY[i];
            let expected = u128::from(n) << exp;
            prop_assert_eq!(
                memory_bytes(&format!("{n}{suffix}")),
                Some(u64::try_from(expected).unwrap_or(u64::MAX))
            );
        }

        #[test]
        fn decimals_round_up_to_the_next_milli(int in 0u64..10_000, frac in 0u64..1_000_000) {
            // int.frac with six fractional digits, in millis: ceil(int*1000 + frac/1000).
            let expected = int * 1000 + frac.div_ceil(1000);
            prop_assert_eq!(cpu_millis(&format!("{int}.{frac:06}")), Some(expected));
            // The same number as micro-units and as a decimal exponent.
            let micros = int * 1_000_000 + frac;
            prop_assert_eq!(cpu_millis(&format!("{micros}u")), Some(expected));
            prop_assert_eq!(cpu_millis(&format!("{micros}e-6")), Some(expected));
        }

        #[test]
        fn a_sign_only_changes_negativity(n in 1u64..u64::MAX, neg in any::<bool>()) {
            let text = format!("{}{n}", if neg { "-" } else { "+" });
            let q = parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(q.is_negative(), neg);
            prop_assert_eq!(q.ceil_units(), (!neg).then_some(n));
        }
    }
}
