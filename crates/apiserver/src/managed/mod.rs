//! Field management: `metadata.managedFields` kept for every write, and server-side apply
//! (spec section 7, rules 7.5–7.14).
//!
//! Every create, update and merge, strategic or JSON patch is an **Update** (rule 7.9): the
//! writer (`fieldManager`, else the User-Agent's prefix) gains the fields it added or changed,
//! and they leave every other manager's set. An **Apply** ([`apply`]) merges the configuration
//! into the live object (7.8, lists by [`crate::list_types`]), gives the applier exactly the
//! configuration's fields, prunes the fields it applied before and dropped unless someone else
//! owns them, and refuses with a 409 ([`Conflict`], 7.10) to change fields other managers own
//! unless forced; equal values are shared. Fields are encoded as FieldsV1 ([`fieldset`], 7.6).
//! Never tracked: `apiVersion`, `kind`, `metadata` itself and the server's metadata fields (7.5),
//! and the part of the object the request's endpoint does not write (the status through the
//! main resource when the kind has a `status` subresource, the spec through `status`).
//!
//! The bookkeeping is linear in the object's size: one walk over both versions (no per-field
//! search), and the sets are trees.
//!
//! **Bounds.** Update entries are capped at [`MAX_UPDATE_ENTRIES`], the oldest merged into
//! `ancient-changes`; an object has at most [`MAX_APPLY_ENTRIES`] Apply entries, and an apply
//! by one more manager (or managedFields written by a client with more) is refused with 422, so
//! a client cannot grow an object without bound through manager names. A manager name is at
//! most 128 printable characters (the request is refused otherwise; a User-Agent is cut).
//!
//! **Not implemented.** Atomic maps and structs (`x-kubernetes-map-type: atomic`, e.g. a label
//! selector) are tracked field by field; lists the table does not know are atomic (7.12); no
//! version conversion of sets (each kind is served in one version); fields that defaulting
//! fills in during an apply are owned by nobody, while an Update's writer owns what it stored,
//! defaults included (7.11); managedFields a client sends on create are ignored; apply through
//! `scale` (415, as any unknown patch type there).

pub(crate) mod fieldset;
pub(crate) mod merge;

use serde_json::{Map, Value, json};

use fieldset::{Changes, FieldSet, FieldsError, PathElement, path_string};

/// The most Update entries an object keeps; older ones merge into `ancient-changes`.
pub(crate) const MAX_UPDATE_ENTRIES: usize = 10;

/// The most Apply entries an object may have (one per manager and subresource).
pub(crate) const MAX_APPLY_ENTRIES: usize = 32;

/// The longest manager name, in bytes.
pub(crate) const MAX_MANAGER_LEN: usize = 128;

/// The manager the oldest Update entries are merged into.
const ANCIENT_CHANGES: &str = "ancient-changes";

/// The Update manager an object's fields are attributed to at its first apply (7.14).
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// The client-side apply annotation.
pub(crate) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An operation of a managedFields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    pub(crate) operation: Operation,
    pub(crate) api_version: String,
    pub(crate) time: Option<String>,
    pub(crate) subresource: Option<String>,
    pub(crate) set: FieldSet,
}

impl Entry {
    /// Whether this entry is `writer`'s for `operation` (Apply entries are one per manager and
    /// subresource, Update entries one per manager, apiVersion and subresource).
    fn is(&self, writer: &Writer<'_>, operation: Operation) -> bool {
        self.operation == operation
            && self.manager == writer.manager
            && self.subresource.as_deref() == writer.subresource
            && (operation == Operation::Apply || self.api_version == writer.api_version)
    }

    /// The manager's identity as kube-apiserver builds it (a JSON object of manager,
    /// operation, apiVersion for Update, subresource), which orders conflicts.
    fn identity(&self) -> String {
        let mut id = json!({"manager": self.manager, "operation": self.operation.as_str()});
        if self.operation == Operation::Update {
            id["apiVersion"] = json!(self.api_version);
        }
        if let Some(sub) = &self.subresource {
            id["subresource"] = json!(sub);
        }
        // Field order of the Go struct: manager, operation, apiVersion, subresource.
        let field = |k: &str| id.get(k).map(|v| format!("\"{k}\":{v}"));
        let parts: Vec<String> = ["manager", "operation", "apiVersion", "subresource"]
            .into_iter()
            .filter_map(field)
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    /// As a conflict names it (7.10): `"m"`, `"m" with subresource "status"`, `… using v1`.
    fn describe(&self) -> String {
        let mut text = json!(self.manager).to_string();
        if let Some(sub) = &self.subresource {
            text = format!("{text} with subresource {}", json!(sub));
        }
        if self.operation == Operation::Update {
            text = format!("{text} using {}", self.api_version);
        }
        text
    }

    fn encode(&self) -> Value {
        let mut e = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.set.to_fields_v1(),
        });
        if let Some(t) = &self.time {
            e["time"] = json!(t);
        }
        if let Some(s) = &self.subresource {
            e["subresource"] = json!(s);
        }
        e
    }

    fn decode(v: &Value) -> Result<Entry, FieldsError> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let operation = match v.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => return Err(FieldsError::Encoding(format!("unknown operation {other:?}"))),
        };
        if v.get("fieldsType").is_some_and(|t| t != "FieldsV1") {
            return Err(FieldsError::Encoding("fieldsType must be FieldsV1".into()));
        }
        let set = match v.get("fieldsV1") {
            Some(doc) => FieldSet::from_fields_v1(doc)?,
            None => FieldSet::default(),
        };
        Ok(Entry {
            manager: text("manager").unwrap_or_default(),
            operation,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            set,
        })
    }
}

/// Why a write's managed fields were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ManagedError {
    /// More Apply entries than [`MAX_APPLY_ENTRIES`].
    #[error("Too many: {count}: must have at most {MAX_APPLY_ENTRIES} apply managers")]
    TooManyAppliers {
        /// The entries there would be.
        count: usize,
    },
    /// The configuration's fields cannot be computed or merged.
    #[error("{0}")]
    Fields(#[from] FieldsError),
    /// The apply changes fields other managers own (7.10).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
}

/// One field another manager owns that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The manager, as the message names it (`"m" using apps/v1`).
    pub(crate) manager: String,
    /// The field, as rule 7.7 writes it.
    pub(crate) field: String,
}

/// kube-apiserver's message for conflicts (7.10).
pub(crate) fn conflict_message(conflicts: &[Conflict]) -> String {
    let n = conflicts.len();
    let body = match conflicts {
        [one] => format!("conflict with {}: {}", one.manager, one.field),
        _ => {
            let mut lines: Vec<String> = Vec::new();
            let mut last: Option<&str> = None;
            for c in conflicts {
                if last != Some(c.manager.as_str()) {
                    lines.push(format!("conflicts with {}:", c.manager));
                    last = Some(&c.manager);
                }
                lines.push(format!("- {}", c.field));
            }
            lines.join("\n")
        }
    };
    format!(
        "Apply failed with {n} conflict{}: {body}",
        if n == 1 { "" } else { "s" }
    )
}

/// Who writes, through which endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    /// The manager name.
    pub(crate) manager: &'a str,
    /// The endpoint's group/version.
    pub(crate) api_version: &'a str,
    /// The subresource written (`status`), if any.
    pub(crate) subresource: Option<&'a str>,
    /// Whether the kind has a `status` subresource (the main resource then does not write
    /// the status).
    pub(crate) has_status: bool,
}

impl Writer<'_> {
    /// Drops what is never tracked (7.5) and what this endpoint does not write.
    fn untrack(&self, set: &mut FieldSet) {
        for field in ["apiVersion", "kind"] {
            set.remove_subtree(&PathElement::Field(field.into()));
        }
        let metadata = PathElement::Field("metadata".into());
        set.remove_all(&{
            let mut bare = FieldSet::default();
            bare.insert(std::slice::from_ref(&metadata));
            bare
        });
        if let Some(m) = set.child_mut(&metadata) {
            for field in [
                "name",
                "namespace",
                "creationTimestamp",
                "selfLink",
                "uid",
                "clusterName",
                "generation",
                "managedFields",
                "resourceVersion",
            ] {
                m.remove_subtree(&PathElement::Field(field.into()));
            }
        }
        set.prune_child(&metadata);
        match self.subresource {
            Some("status") => set.remove_subtree(&PathElement::Field("spec".into())),
            None if self.has_status => set.remove_subtree(&PathElement::Field("status".into())),
            _ => {}
        }
    }
}

/// The manager of a non-apply write: `fieldManager`, else the User-Agent up to its first `/`
/// (printable characters only, at most 128 bytes).
pub(crate) fn manager_of(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let prefix = user_agent.unwrap_or("").split('/').next().unwrap_or("");
    let mut out = String::new();
    for c in prefix.chars().filter(|c| printable(*c)) {
        if out.len() + c.len_utf8() > MAX_MANAGER_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// Go's `unicode.IsPrint`, near enough: no control characters, no spaces but ' '.
pub(crate) fn printable(c: char) -> bool {
    c == ' ' || !(c.is_control() || c.is_whitespace())
}

/// The entries of `object`'s `metadata.managedFields`. `Ok(None)` when absent or not a valid
/// list (kube-apiserver then keeps the live object's).
fn entries_of(object: &Value) -> Result<Option<Vec<Entry>>, ManagedError> {
    let Some(list) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Ok(None);
    };
    let appliers = list
        .iter()
        .filter(|e| e.get("operation").is_some_and(|o| o == "Apply"))
        .count();
    if appliers > MAX_APPLY_ENTRIES {
        return Err(ManagedError::TooManyAppliers { count: appliers });
    }
    Ok(list.iter().map(Entry::decode).collect::<Result<Vec<_>, _>>().ok())
}

/// Writes `entries` into `object` (ordered as kube-apiserver orders them: Apply first, then
/// by time, manager, apiVersion and subresource); none removes the field.
fn store_entries(object: &mut Value, mut entries: Vec<Entry>) {
    let Some(meta) = crate::meta::metadata_mut(object) else {
        return;
    };
    entries.retain(|e| !e.set.is_empty());
    if entries.is_empty() {
        meta.remove("managedFields");
        return;
    }
    let seconds = |e: &Entry| {
        e.time
            .as_deref()
            .and_then(crate::meta::parse_rfc3339)
            .unwrap_or(0)
            / 1000
    };
    entries.sort_by(|a, b| {
        (
            a.operation.as_str(),
            seconds(a),
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation.as_str(),
                seconds(b),
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    meta.insert(
        "managedFields".into(),
        Value::Array(entries.iter().map(Entry::encode).collect()),
    );
}

/// Merges the oldest Update entries into `ancient-changes` until at most
/// [`MAX_UPDATE_ENTRIES`] remain.
fn cap_updates(entries: &mut Vec<Entry>) {
    let updates = entries
        .iter()
        .filter(|e| e.operation == Operation::Update)
        .count();
    if updates <= MAX_UPDATE_ENTRIES {
        return;
    }
    let time = |e: &Entry| {
        e.time
            .as_deref()
            .and_then(crate::meta::parse_rfc3339)
            .unwrap_or(0)
    };
    let mut order: Vec<usize> = (0..entries.len())
        .filter(|i| entries[*i].operation == Operation::Update && entries[*i].manager != ANCIENT_CHANGES)
        .collect();
    order.sort_by_key(|i| time(&entries[*i]));
    let mut excess = updates - MAX_UPDATE_ENTRIES;
    // Merging into an ancient-changes that does not exist yet takes one entry's place.
    if !entries
        .iter()
        .any(|e| e.manager == ANCIENT_CHANGES && e.operation == Operation::Update)
    {
        excess += 1;
    }
    let folded: Vec<usize> = order.into_iter().take(excess).collect();
    let mut ancient: Option<Entry> = None;
    for i in &folded {
        let e = &entries[*i];
        match &mut ancient {
            Some(a) => a.set.union_with(&e.set),
            None => {
                ancient = Some(Entry {
                    manager: ANCIENT_CHANGES.into(),
                    subresource: None,
                    ..e.clone()
                })
            }
        }
    }
    let mut index = 0;
    entries.retain(|_| {
        let keep = !folded.contains(&index);
        index += 1;
        keep
    });
    if let Some(a) = ancient {
        match entries
            .iter_mut()
            .find(|e| e.manager == ANCIENT_CHANGES && e.operation == Operation::Update)
        {
            Some(existing) => existing.set.union_with(&a.set),
            None => entries.push(a),
        }
    }
}

/// What an Update does to the sets (7.9): the writer gains what changed, which leaves every
/// other set, as does what was removed.
fn update_sets(entries: &mut Vec<Entry>, changes: &Changes, writer: &Writer<'_>, now: &str) {
    for e in entries.iter_mut() {
        e.set.remove_all(&changes.changed);
        e.set.remove_all(&changes.removed);
    }
    if !changes.changed.is_empty() {
        match entries.iter_mut().find(|e| e.is(writer, Operation::Update)) {
            Some(e) => {
                e.set.union_with(&changes.changed);
                e.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                manager: writer.manager.to_string(),
                operation: Operation::Update,
                api_version: writer.api_version.to_string(),
                time: Some(now.to_string()),
                subresource: writer.subresource.map(str::to_string),
                set: changes.changed.clone(),
            }),
        }
    }
    entries.retain(|e| !e.set.is_empty());
    cap_updates(entries);
}

/// The object without its managedFields, for comparing.
fn without_entries(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(m) = crate::meta::metadata_mut(&mut copy) {
        m.remove("managedFields");
    }
    copy
}

/// Records an Update by `writer` (create when `old` is `None`) in `new`'s managedFields
/// (7.5, 7.9). The base is `old`'s entries, or the ones the client wrote into `new` (7.13):
/// `[]` or `[{}]` resets them. `now` is the time stamp.
pub(crate) fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    writer: &Writer<'_>,
    now: &str,
) -> Result<(), ManagedError> {
    let sent = new.pointer("/metadata/managedFields").cloned();
    let reset = matches!(&sent, Some(Value::Array(list)) if list.is_empty() || (list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty)));
    let mut entries = match (old, reset) {
        (None, _) | (_, true) => Vec::new(),
        (Some(old), false) => match entries_of(new)?.filter(|e| !e.is_empty()) {
            Some(given) => given,
            None => entries_of(old).ok().flatten().unwrap_or_default(),
        },
    };
    let empty = json!({});
    let old_object = old.unwrap_or(&empty);
    let mut changes = fieldset::compare(old_object, new);
    writer.untrack(&mut changes.changed);
    writer.untrack(&mut changes.removed);
    update_sets(&mut entries, &changes, writer, now);
    store_entries(new, entries);
    Ok(())
}

/// The outcome of an apply.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The object to write, with its managedFields.
    pub(crate) object: Value,
    /// Whether anything (managedFields included) differs from the live object.
    pub(crate) changed: bool,
}

/// Removes from `merged` what the applier applied before (`last`) and dropped from `config_set`,
/// unless another manager owns it or something below it (7.8 step 3).
fn prune(merged: &mut Value, last: &FieldSet, config_set: &FieldSet, others: &[Entry]) {
    let mut owned = config_set.clone();
    for e in others {
        owned.union_with(&e.set);
    }
    let mut dropped = FieldSet::default();
    for path in last.difference(config_set).paths() {
        if !owned.contains_or_below(&path) {
            dropped.insert(&path);
        }
    }
    merge::remove_all(merged, &dropped);
}

/// The client-side apply annotation of `object`, parsed.
fn last_applied_of(object: &Value) -> Option<Value> {
    let pointer = format!("/metadata/annotations/{}", LAST_APPLIED.replace('/', "~1"));
    let text = object.pointer(&pointer)?.as_str()?;
    serde_json::from_str(text).ok()
}

/// Other managers' fields among `touched` (7.8 step 4), per entry index: the conflicts, and
/// what the applier takes from each entry if it goes ahead. With `last_applied` (kubectl's own
/// apply), fields whose live value is the annotation's are taken silently (7.13).
fn clashes(
    entries: &[Entry],
    touched: &FieldSet,
    live: &Value,
    last_applied: Option<&Value>,
) -> (Vec<Conflict>, Vec<(usize, FieldSet)>) {
    let mut conflicts: Vec<(String, String, FieldSet)> = Vec::new();
    let mut taken = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let mut clash = e.set.intersection(touched);
        if let Some(annotation) = last_applied {
            let mut agreed = FieldSet::default();
            let applied = merge::values_at(annotation, &clash);
            for (path, value) in merge::values_at(live, &clash) {
                if applied.get(&path) == Some(&value) {
                    agreed.insert(&path);
                }
            }
            clash.remove_all(&agreed);
            taken.push((i, agreed));
        }
        if !clash.is_empty() {
            conflicts.push((e.identity(), e.describe(), clash.clone()));
            taken.push((i, clash));
        }
    }
    // Managers in the order of their identities, each one's fields in path order.
    conflicts.sort_by(|a, b| a.0.cmp(&b.0));
    let list = conflicts
        .iter()
        .flat_map(|(_, manager, set)| {
            set.paths().into_iter().map(|p| Conflict {
                manager: manager.clone(),
                field: path_string(&p),
            })
        })
        .collect();
    (list, taken)
}

/// kubectl's server-side apply keeps the client-side annotation, where there is one, in step:
/// the applied configuration without the annotation itself (7.13).
fn sync_last_applied(merged: &mut Value, config: &Value) {
    let Some(annotations) = merged
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        .filter(|a| a.contains_key(LAST_APPLIED))
    else {
        return;
    };
    let mut applied = config.clone();
    if let Some(a) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    annotations.insert(LAST_APPLIED.into(), Value::String(applied.to_string()));
}

/// A server-side apply (7.8) of `config` by `writer` over `live` (`None` creates).
pub(crate) fn apply(
    live: Option<&Value>,
    config: &Value,
    writer: &Writer<'_>,
    force: bool,
    now: &str,
) -> Result<Applied, ManagedError> {
    let live_object = live.map_or_else(|| json!({}), without_entries);
    // The handler refuses configurations with managedFields (7.3); none gets into the object.
    let config = &without_entries(config);
    let mut entries = live
        .and_then(|l| entries_of(l).ok().flatten())
        .unwrap_or_default();
    // 7.14: an object written before its first apply gets its fields' owner.
    if live.is_some() && entries.is_empty() {
        let mut changes = fieldset::compare(&json!({}), &live_object);
        writer.untrack(&mut changes.changed);
        changes.removed = FieldSet::default();
        let before = Writer {
            manager: BEFORE_FIRST_APPLY,
            ..*writer
        };
        update_sets(&mut entries, &changes, &before, now);
    }
    // Steps 1 and 2: the merged object, and the applier's fields.
    let mut config_set = fieldset::set_of(config)?;
    writer.untrack(&mut config_set);
    let mut merged = merge::merge(live_object.clone(), config)?;
    let mine = entries.iter().position(|e| e.is(writer, Operation::Apply));
    let previous = mine.map(|i| entries.remove(i));
    if let Some(last) = &previous {
        prune(&mut merged, &last.set, &config_set, &entries);
    }
    let mut changes = fieldset::compare(&live_object, &merged);
    writer.untrack(&mut changes.changed);
    writer.untrack(&mut changes.removed);
    // A field the configuration sets to null is removed, and changed as far as its other
    // owners are concerned.
    let mut touched = changes.changed.clone();
    touched.union_with(&changes.removed.intersection(&config_set));
    let kubectl = writer.manager == "kubectl";
    let last_applied = kubectl.then(|| last_applied_of(&live_object)).flatten();
    let (conflicts, taken) = clashes(&entries, &touched, &live_object, last_applied.as_ref());
    if !conflicts.is_empty() && !force {
        return Err(ManagedError::Conflicts(conflicts));
    }
    for (i, set) in &taken {
        entries[*i].set.remove_all(set);
    }
    for e in entries.iter_mut() {
        e.set.remove_all(&changes.removed);
    }
    let object_changed = merged != live_object;
    entries.push(Entry {
        manager: writer.manager.to_string(),
        operation: Operation::Apply,
        api_version: writer.api_version.to_string(),
        time: match previous.and_then(|p| p.time) {
            Some(t) if !object_changed => Some(t),
            _ => Some(now.to_string()),
        },
        subresource: writer.subresource.map(str::to_string),
        set: config_set,
    });
    entries.retain(|e| !e.set.is_empty());
    let appliers = entries.iter().filter(|e| e.operation == Operation::Apply).count();
    if appliers > MAX_APPLY_ENTRIES {
        return Err(ManagedError::TooManyAppliers { count: appliers });
    }
    cap_updates(&mut entries);
    if kubectl {
        sync_last_applied(&mut merged, config);
    }
    store_entries(&mut merged, entries);
    let changed = live.is_none_or(|l| &merged != l);
    Ok(Applied {
        object: merged,
        changed,
    })
}

#[cfg(test)]
mod tests;
