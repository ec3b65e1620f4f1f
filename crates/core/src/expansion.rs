//! Kubernetes `$(VAR)` expansion, as `command`, `args`, `env` values, exec probes and
//! `subPathExpr` use it (upstream: `third_party/forked/golang/expansion`).
//!
//! `$$` is a literal `$`; `$(NAME)` is replaced by what `lookup` gives for `NAME`, and kept as
//! written when it gives nothing; an unclosed `$(` and a `$` before any other character (or at
//! the end) are kept as written, and scanning goes on after them.

/// Expands `$(NAME)` references in `input` with `lookup`.
pub fn expand<'v>(input: &str, lookup: impl Fn(&str) -> Option<&'v str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Looks a name up in `(name, value)` pairs, the last pair of a name winning (a container's
/// `env` list, where a later entry overrides an earlier one).
pub fn last_value<'v>(pairs: &'v [(String, String)], name: &str) -> Option<&'v str> {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars(name: &str) -> Option<&'static str> {
        match name {
            "A" => Some("1"),
            "B" => Some("two"),
            "EMPTY" => Some(""),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_kubernetes() {
        assert_eq!(expand("$(A)-$(B)", vars), "1-two");
        assert_eq!(expand("$$(A)", vars), "$(A)");
        assert_eq!(expand("$(C)", vars), "$(C)");
        assert_eq!(expand("$()", vars), "$()");
        assert_eq!(expand("x$(EMPTY)y", vars), "xy");
        assert_eq!(expand("$(A", vars), "$(A");
        assert_eq!(expand("$($(A)", vars), "$($(A)", "the name runs to the first `)`");
        assert_eq!(expand("$(A $$ $(B)", vars), "$(A $$ $(B)", "it names `A $$ $(B`");
        assert_eq!(
            expand("$(unclosed $$ $A", vars),
            "$(unclosed $ $A",
            "scanning goes on"
        );
        assert_eq!(expand("a$b$", vars), "a$b$");
        assert_eq!(expand("$$$$", vars), "$$");
        assert_eq!(expand("$$$(A)", vars), "$1");
        assert_eq!(expand("cost: $$5", vars), "cost: $5");
        assert_eq!(expand("$HOME", vars), "$HOME");
        assert_eq!(expand("é$(A)ü$", vars), "é1ü$");
        assert_eq!(expand("héllo $(A)é", vars), "héllo 1é");
    }

    #[test]
    fn the_last_entry_of_a_name_wins() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("A".to_string(), "2".to_string()),
        ];
        assert_eq!(expand("$(A)", |n| last_value(&env, n)), "2");
    }

    proptest! {
        #[test]
        fn text_without_a_dollar_is_unchanged(s in "[^$]{0,40}") {
            prop_assert_eq!(expand(&s, vars), s);
        }

        #[test]
        fn escaping_every_dollar_gives_the_text_back(s in "\\PC{0,40}") {
            let escaped = s.replace('$', "$$");
            prop_assert_eq!(expand(&escaped, vars), s);
        }

        #[test]
        fn unknown_names_are_kept(name in "[a-z]{1,8}", s in "[^$]{0,8}") {
            let input = format!("{s}$({name}){s}");
            prop_assert_eq!(expand(&input, vars), input.clone());
        }

        #[test]
        fn references_are_replaced(prefix in "[a-z ]{0,8}", suffix in "[a-z ]{0,8}") {
            let input = format!("{prefix}$(A){suffix}$(B)");
            prop_assert_eq!(expand(&input, vars), format!("{prefix}1{suffix}two"));
        }
    }
}
