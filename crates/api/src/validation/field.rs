//! Field-level validation errors and warnings, rendered the way kube-apiserver renders them.

use std::fmt;

/// Why a field failed validation; mirrors apimachinery's `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A required value is missing (`Required value`).
    Required,
    /// The value is malformed or out of range (`Invalid value`).
    Invalid,
    /// The value is not one of an enumerated set (`Unsupported value`).
    NotSupported,
    /// The value collides with an earlier one that must be unique (`Duplicate value`).
    Duplicate,
    /// The value is well formed but not allowed here (`Forbidden`).
    Forbidden,
    /// The value is too long (`Too long`).
    TooLong,
    /// A referenced value does not exist (`Not found`).
    NotFound,
    /// A list has more items than allowed (`Too many`).
    TooMany,
}

impl ErrorKind {
    /// The human-readable label Kubernetes prints for this kind, e.g. `Required value`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid => "Invalid value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::TooLong => "Too long",
            ErrorKind::NotFound => "Not found",
            ErrorKind::TooMany => "Too many",
        }
    }

    /// The machine-readable reason used in `Status.details.causes[].reason`, e.g.
    /// `FieldValueRequired`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::NotFound => "FieldValueNotFound",
            ErrorKind::TooMany => "FieldValueTooMany",
        }
    }

    /// Whether Kubernetes omits the bad value when rendering this kind.
    fn omits_value(self) -> bool {
        matches!(
            self,
            ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong
        )
    }
}

/// One field that failed validation.
///
/// `Display` renders exactly like apimachinery's `field.Error`, for example
/// `spec.containers[0].name: Required value` or
/// `spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldError {
    /// The field path, e.g. `spec.containers[1].livenessProbe.periodSeconds`.
    pub path: String,
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The offending value, already rendered the way Kubernetes prints it: strings are
    /// Go-quoted (`"app"`), integers are bare (`-1`), a missing value is `null`. `None` when the
    /// kind carries no value (`Required`, `Forbidden`, `TooLong`) or the value is omitted
    /// (apimachinery's `field.OmitValueType`, as in [`FieldError::invalid_omitted`]).
    pub value: Option<String>,
    /// Extra explanation; may be empty.
    pub detail: String,
}

impl FieldError {
    fn new(path: &str, kind: ErrorKind, value: Option<String>, detail: impl Into<String>) -> Self {
        FieldError {
            path: path.to_owned(),
            kind,
            value,
            detail: detail.into(),
        }
    }

    /// `Required value`, with an optional detail (pass `""` for none).
    pub fn required(path: &str, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Required, None, detail)
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(path: &str, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Forbidden, None, detail)
    }

    /// `Invalid value: <value>: <detail>` for a value that is already rendered.
    pub fn invalid(path: &str, value: Value, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Invalid, Some(value.0), detail)
    }

    /// `Invalid value: <detail>`, the value omitted (apimachinery's `field.OmitValueType{}`).
    pub fn invalid_omitted(path: &str, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorKind::Invalid, None, detail)
    }

    /// `Too many: <actual>: must have at most <max> items`.
    pub fn too_many(path: &str, actual: usize, max: usize) -> Self {
        let items = if max == 1 { "item" } else { "items" };
        Self::new(
            path,
            ErrorKind::TooMany,
            Some(actual.to_string()),
            format!("must have at most {max} {items}"),
        )
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(path: &str, value: Value) -> Self {
        Self::new(path, ErrorKind::Duplicate, Some(value.0), "")
    }

    /// `Not found: <value>`.
    pub fn not_found(path: &str, value: Value) -> Self {
        Self::new(path, ErrorKind::NotFound, Some(value.0), "")
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(path: &str, value: Value, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(path, ErrorKind::NotSupported, Some(value.0), detail)
    }

    /// `Too long: must have at most <max> bytes`.
    pub fn too_long(path: &str, max: usize) -> Self {
        Self::new(
            path,
            ErrorKind::TooLong,
            None,
            format!("must have at most {max} bytes"),
        )
    }

    /// The message without the field path (apimachinery's `ErrorBody`), as used in
    /// `Status.details.causes[].message`.
    pub fn body(&self) -> String {
        let mut s = String::from(self.kind.label());
        if !self.kind.omits_value()
            && let Some(value) = &self.value
        {
            s.push_str(": ");
            s.push_str(value);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.body())
    }
}

impl std::error::Error for FieldError {}

/// A bad value rendered the way apimachinery prints it (Go `%q` for strings, `%v` for numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value(pub(crate) String);

impl Value {
    /// A string value, Go-quoted.
    pub fn str(s: &str) -> Self {
        Value(go_quote(s))
    }

    /// An integer value, printed bare.
    pub fn int(i: impl Into<i64>) -> Self {
        Value(i.into().to_string())
    }

    /// A missing (nil) value, printed as `null`.
    pub fn null() -> Self {
        Value("null".to_owned())
    }

    /// A structured value as JSON, the way kube-apiserver (v1.34 and later) prints maps and
    /// structs: compact, keys in the serializer's order, `<`, `>`, `&`, U+2028 and U+2029
    /// escaped as Go's `encoding/json` does. A value that fails to serialize prints `null`.
    pub fn json<T: serde::Serialize + ?Sized>(v: &T) -> Self {
        Value(serde_json::to_string(v).map_or_else(|_| "null".to_owned(), go_json_escape))
    }

    /// A value rendered by the caller; use only when no other constructor fits.
    pub fn raw(s: impl Into<String>) -> Self {
        Value(s.into())
    }
}

/// Quote a string the way Go's `%q` / `strconv.Quote` does.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || c == '\u{feff}' => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Escape serde_json's output the way Go's `encoding/json` escapes HTML-significant and
/// line-separator characters. These only ever occur inside JSON strings, so a global replace
/// is exact.
pub(crate) fn go_json_escape(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Every error found while validating one object.
///
/// `Display` matches kube-apiserver's aggregate: one error prints alone, several print as
/// `[first, second]`, and identical messages are printed once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// Wrap a list of errors.
    pub fn new(errors: Vec<FieldError>) -> Self {
        ValidationErrors { errors }
    }

    /// The individual errors, in the order they were found (duplicates included).
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// Consume into the list of errors.
    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }

    /// Whether there are no errors.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// The errors as rendered strings, duplicates removed, in order.
    pub fn messages(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for e in &self.errors {
            let m = e.to_string();
            if seen.insert(m.clone()) {
                out.push(m);
            }
        }
        out
    }

    /// The full kube-apiserver "Invalid" message, e.g.
    /// `Pod "web" is invalid: spec.containers: Required value`.
    pub fn invalid_message(&self, kind: &str, name: &str) -> String {
        format!("{kind} {} is invalid: {self}", go_quote(name))
    }

    pub(crate) fn into_result<T>(self, ok: T) -> Result<T, ValidationErrors> {
        if self.errors.is_empty() { Ok(ok) } else { Err(self) }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msgs = self.messages();
        match msgs.as_slice() {
            [] => Ok(()),
            [one] => f.write_str(one),
            many => write!(f, "[{}]", many.join(", ")),
        }
    }
}

impl std::error::Error for ValidationErrors {}

impl From<Vec<FieldError>> for ValidationErrors {
    fn from(errors: Vec<FieldError>) -> Self {
        ValidationErrors { errors }
    }
}

/// A non-fatal finding, returned alongside a successful validation (kube-apiserver sends these
/// as `Warning` headers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Warning {
    /// The field the warning is about.
    pub path: String,
    /// The warning text without the path.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A field path under construction, rendered as `spec.containers[0].name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn root(name: &str) -> Self {
        Path(name.to_owned())
    }

    pub(crate) fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_owned())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_apimachinery() {
        let cases = [
            (
                FieldError::invalid(
                    "spec.containers[1].livenessProbe.periodSeconds",
                    Value::int(-1),
                    "must be greater than or equal to 0",
                ),
                "spec.containers[1].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                FieldError::required("spec.containers[0].name", ""),
                "spec.containers[0].name: Required value",
            ),
            (
                FieldError::not_supported(
                    "spec.restartPolicy",
                    Value::str("Sometimes"),
                    &["Always", "OnFailure", "Never"],
                ),
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ),
            (
                FieldError::duplicate("spec.containers[1].name", Value::str("app")),
                "spec.containers[1].name: Duplicate value: \"app\"",
            ),
            (
                FieldError::forbidden(
                    "spec.initContainers[0].livenessProbe",
                    "may not be set for init containers without restartPolicy=Always",
                ),
                "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            ),
            (
                FieldError::too_long("metadata.annotations", 262144),
                "metadata.annotations: Too long: must have at most 262144 bytes",
            ),
            (
                FieldError::not_found("spec.x", Value::str("y")),
                "spec.x: Not found: \"y\"",
            ),
            (
                FieldError::invalid("spec.x", Value::null(), "must not be nil"),
                "spec.x: Invalid value: null: must not be nil",
            ),
            (
                FieldError::invalid_omitted("spec.rules[0]", "specifying one is required"),
                "spec.rules[0]: Invalid value: specifying one is required",
            ),
            (
                FieldError::too_many("spec.rules", 21, 20),
                "spec.rules: Too many: 21: must have at most 20 items",
            ),
            (
                FieldError::invalid(
                    "spec.template.metadata.labels",
                    Value::json(&std::collections::BTreeMap::from([("b", "<x>"), ("a", "y")])),
                    "`selector` does not match template `labels`",
                ),
                "spec.template.metadata.labels: Invalid value: {\"a\":\"y\",\"b\":\"\\u003cx\\u003e\"}: `selector` does not match template `labels`",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("a\"b\\c\n\t\u{1}é"), "\"a\\\"b\\\\c\\n\\t\\x01é\"");
    }

    #[test]
    fn aggregate_formats_one_and_many_and_dedupes() {
        let one = ValidationErrors::new(vec![FieldError::required("a", "")]);
        assert_eq!(one.to_string(), "a: Required value");
        let many = ValidationErrors::new(vec![
            FieldError::required("a", ""),
            FieldError::required("b", ""),
            FieldError::required("a", ""),
        ]);
        assert_eq!(many.to_string(), "[a: Required value, b: Required value]");
        let dup_only =
            ValidationErrors::new(vec![FieldError::required("a", ""), FieldError::required("a", "")]);
        assert_eq!(dup_only.to_string(), "a: Required value");
        assert_eq!(
            one.invalid_message("Pod", "web"),
            "Pod \"web\" is invalid: a: Required value"
        );
    }

    #[test]
    fn paths_render_with_dots_and_indices() {
        let p = Path::root("spec").child("containers").index(2).child("name");
        assert_eq!(p.as_str(), "spec.containers[2].name");
    }
}
