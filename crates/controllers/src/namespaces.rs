//! The namespace controller (kube-controller-manager's, `pkg/controller/namespace`): a deleted
//! namespace's contents are deleted through the API, and once none is left its `kubernetes`
//! finalizer is removed through `namespaces/{name}/finalize`, which lets the API server remove
//! it.
//!
//! The API server marks a deleted namespace (`deletionTimestamp`, phase `Terminating`) and
//! refuses creates in it; this loop does the rest. For each terminating namespace that still
//! holds `kubernetes` in `spec.finalizers`, one pass discovers the namespaced resources over the
//! API (those that can be listed and deleted; events.k8s.io Events are the core Events stored
//! once, so they are handled once), deletes what each holds with ordinary DELETEs (a pod gets
//! its grace period and is removed by its node, an object with finalizers waits for them),
//! records what happened in the namespace's five deletion conditions (the texts
//! kube-controller-manager writes), and finalizes the namespace once nothing remains.
//!
//! Level-triggered: every change of a Namespace starts a pass over all terminating ones, and
//! while one is still busy it is looked at again every [`RECHECK`].

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResourceList, Time};
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use crate::watch::follow;

/// How often a terminating namespace is looked at again while its contents go away.
pub const RECHECK: Duration = Duration::from_secs(1);

/// The finalizer this controller owns in a namespace's `spec.finalizers`.
const FINALIZER: &str = "kubernetes";

/// Resources of a group served as another group's (the same objects under two names): handled
/// once, under the core group.
const SAME_AS_CORE: &[(&str, &str)] = &[("events.k8s.io", "events")];

/// Finishes terminating namespaces until dropped.
pub async fn run(client: Client) {
    let (tx, mut touched) = mpsc::unbounded_channel();
    let (namespaces, follower) = follow(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
        tx,
    );
    let _follower = AbortOnDropHandle::new(tokio::spawn(follower));
    if namespaces.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        let terminating: Vec<String> = namespaces
            .state()
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_some())
            .map(|n| n.name_any())
            .collect();
        let mut busy = false;
        for name in &terminating {
            match sync(&client, name).await {
                Ok(Pass::Done) => {}
                Ok(Pass::Busy) => busy = true,
                Err(e) => {
                    debug!(error = %e, namespace = %name, "terminating a namespace: trying again");
                    busy = true;
                }
            }
        }
        // Idle: wait for a namespace to change. Busy: look again soon as well.
        let next = if busy {
            tokio::time::timeout(RECHECK, touched.recv())
                .await
                .unwrap_or(Some(crate::watch::Touched::All))
        } else {
            touched.recv().await
        };
        if next.is_none() {
            return;
        }
        while touched.try_recv().is_ok() {}
    }
}

/// What a pass over one namespace left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Nothing more for this controller to do.
    Done,
    /// Content remains, or something failed: look again.
    Busy,
}

/// One pass over the namespace `name`: delete what is left, record what remains, and finalize
/// it when nothing does.
async fn sync(client: &Client, name: &str) -> Result<Pass, kube::Error> {
    let api = Api::<Namespace>::all(client.clone());
    let Some(namespace) = api.get_opt(name).await? else {
        return Ok(Pass::Done);
    };
    let finalizers = namespace
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if namespace.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Pass::Done);
    }
    let report = delete_content(client, name).await;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut namespace = namespace;
    let status = namespace.status.get_or_insert_with(Default::default);
    let old = status.conditions.clone().unwrap_or_default();
    let new = conditions(&report, &old, &now);
    if new != old || status.phase.as_deref() != Some("Terminating") {
        status.conditions = Some(new);
        status.phase = Some("Terminating".into());
        namespace = api
            .replace_status(name, &PostParams::default(), &namespace)
            .await?;
    }
    if !report.is_clean() {
        return Ok(Pass::Busy);
    }
    if let Some(spec) = namespace.spec.as_mut() {
        spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    }
    match api
        .replace_subresource::<Namespace>("finalize", name, &PostParams::default(), &namespace)
        .await
    {
        Ok(_) => Ok(Pass::Done),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Pass::Done),
        Err(e) => Err(e),
    }
}

/// What deleting a namespace's contents found, as the namespace's conditions report it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Report {
    /// Group versions whose discovery failed (`group/version: error`).
    discovery_failures: Vec<String>,
    /// Group version strings that do not parse.
    parse_failures: Vec<String>,
    /// Lists and deletes that failed.
    content_failures: Vec<String>,
    /// Objects left, by group resource (`pods`, `endpointslices.discovery.k8s.io`).
    remaining: BTreeMap<String, usize>,
    /// Objects left, by finalizer they wait for.
    finalizers: BTreeMap<String, usize>,
}

impl Report {
    /// Whether everything was discovered and deleted and nothing is left.
    fn is_clean(&self) -> bool {
        self.discovery_failures.is_empty()
            && self.parse_failures.is_empty()
            && self.content_failures.is_empty()
            && self.remaining.is_empty()
    }
}

/// A namespaced resource the controller empties, and whether it can delete a collection.
struct Deletable {
    resource: ApiResource,
    collection: bool,
}

/// Deletes everything in the namespace `ns` that discovery finds and reports what is left.
async fn delete_content(client: &Client, ns: &str) -> Report {
    let mut report = Report::default();
    for r in discover(client, &mut report).await {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &r.resource);
        let shown = group_resource(&r.resource);
        if let Err(e) = delete_all(&api, r.collection).await {
            report.content_failures.push(format!("{shown}: {e}"));
        }
        let left = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                report.content_failures.push(format!("{shown}: {e}"));
                continue;
            }
        };
        if left.is_empty() {
            continue;
        }
        *report.remaining.entry(shown).or_default() += left.len();
        for finalizer in left.iter().flat_map(|o| o.finalizers()) {
            *report.finalizers.entry(finalizer.clone()).or_default() += 1;
        }
    }
    report
}

/// Deletes every object of `api`: the collection at once where the resource allows it,
/// otherwise one by one. Objects already gone are fine.
async fn delete_all(api: &Api<DynamicObject>, collection: bool) -> Result<(), kube::Error> {
    let dp = DeleteParams::default();
    if collection {
        return api
            .delete_collection(&dp, &ListParams::default())
            .await
            .map(|_| ());
    }
    for object in api.list(&ListParams::default()).await?.items {
        match api.delete(&object.name_any(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The namespaced resources that can be listed and deleted, in the preferred version of every
/// group; failures are recorded in `report`.
async fn discover(client: &Client, report: &mut Report) -> Vec<Deletable> {
    // The core group first, so a resource served twice is taken from it.
    let mut lists: Vec<APIResourceList> = Vec::new();
    match client.list_core_api_versions().await {
        Ok(core) => {
            for version in core.versions.iter().take(1) {
                match client.list_core_api_resources(version).await {
                    Ok(list) => lists.push(list),
                    Err(e) => report.discovery_failures.push(format!("{version}: {e}")),
                }
            }
        }
        Err(e) => report.discovery_failures.push(format!("v1: {e}")),
    }
    match client.list_api_groups().await {
        Ok(groups) => {
            for group in groups.groups {
                let preferred = group
                    .preferred_version
                    .or_else(|| group.versions.into_iter().next());
                let Some(gv) = preferred.map(|v| v.group_version) else {
                    continue;
                };
                match client.list_api_group_resources(&gv).await {
                    Ok(list) => lists.push(list),
                    Err(e) => report.discovery_failures.push(format!("{gv}: {e}")),
                }
            }
        }
        Err(e) => report.discovery_failures.push(format!("apis: {e}")),
    }
    report.discovery_failures.sort();
    let mut out: Vec<Deletable> = Vec::new();
    for list in lists {
        let (group, version) = match parse_group_version(&list.group_version) {
            Ok(gv) => gv,
            Err(e) => {
                report.parse_failures.push(e);
                continue;
            }
        };
        for r in &list.resources {
            let verbs = |verb: &str| r.verbs.iter().any(|v| v == verb);
            if r.name.contains('/') || !r.namespaced || !verbs("list") || !verbs("delete") {
                continue;
            }
            let same = SAME_AS_CORE.contains(&(group.as_str(), r.name.as_str()));
            if same
                && out
                    .iter()
                    .any(|d| d.resource.group.is_empty() && d.resource.plural == r.name)
            {
                continue;
            }
            let api_version = if group.is_empty() {
                version.clone()
            } else {
                format!("{group}/{version}")
            };
            out.push(Deletable {
                resource: ApiResource {
                    group: group.clone(),
                    version: version.clone(),
                    api_version,
                    kind: r.kind.clone(),
                    plural: r.name.clone(),
                },
                collection: verbs("deletecollection"),
            });
        }
    }
    out
}

/// `v1` or `group/version`.
fn parse_group_version(gv: &str) -> Result<(String, String), String> {
    match gv.split('/').collect::<Vec<_>>().as_slice() {
        [version] if !version.is_empty() => Ok((String::new(), (*version).to_owned())),
        [group, version] if !group.is_empty() && !version.is_empty() => {
            Ok(((*group).to_owned(), (*version).to_owned()))
        }
        _ => Err(format!("unexpected GroupVersion string: {gv}")),
    }
}

/// `pods`, or `endpointslices.discovery.k8s.io`: a group resource as upstream prints it.
fn group_resource(r: &ApiResource) -> String {
    if r.group.is_empty() {
        r.plural.clone()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

/// Errors as one message, as apimachinery's aggregate prints them: one alone, several in
/// brackets.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// One deletion condition: its type, the failure's reason and message if it failed, and the
/// reason and message of success.
struct Wanted {
    type_: &'static str,
    failure: Option<(&'static str, String)>,
    ok: (&'static str, &'static str),
}

/// The five deletion conditions for `report`, each keeping its transition time from `old`
/// while its status is unchanged; conditions of other types in `old` are kept.
fn conditions(report: &Report, old: &[NamespaceCondition], now: &Time) -> Vec<NamespaceCondition> {
    let counted = |counts: &BTreeMap<String, usize>, what: &str| {
        counts
            .iter()
            .map(|(k, n)| format!("{k} {what} {n} resource instances"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut content_failures = report.content_failures.clone();
    content_failures.sort();
    let wanted = [
        Wanted {
            type_: "NamespaceDeletionDiscoveryFailure",
            failure: (!report.discovery_failures.is_empty()).then(|| {
                (
                    "DiscoveryFailed",
                    format!(
                        "Discovery failed for some groups, {} failing: unable to retrieve the complete list of server APIs: {}",
                        report.discovery_failures.len(),
                        report.discovery_failures.join(", ")
                    ),
                )
            }),
            ok: ("ResourcesDiscovered", "All resources successfully discovered"),
        },
        Wanted {
            type_: "NamespaceDeletionGroupVersionParsingFailure",
            failure: (!report.parse_failures.is_empty())
                .then(|| ("GroupVersionParsingFailed", aggregate(&report.parse_failures))),
            ok: ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
        },
        Wanted {
            type_: "NamespaceDeletionContentFailure",
            failure: (!content_failures.is_empty()).then(|| {
                (
                    "ContentDeletionFailed",
                    format!(
                        "Failed to delete all resource types, {} remaining: {}",
                        content_failures.len(),
                        aggregate(&content_failures)
                    ),
                )
            }),
            ok: (
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization",
            ),
        },
        Wanted {
            type_: "NamespaceContentRemaining",
            failure: (!report.remaining.is_empty()).then(|| {
                (
                    "SomeResourcesRemain",
                    format!("Some resources are remaining: {}", counted(&report.remaining, "has")),
                )
            }),
            ok: ("ContentRemoved", "All content successfully removed"),
        },
        Wanted {
            type_: "NamespaceFinalizersRemaining",
            failure: (!report.finalizers.is_empty()).then(|| {
                (
                    "SomeFinalizersRemain",
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        counted(&report.finalizers, "in")
                    ),
                )
            }),
            ok: ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
        },
    ];
    let mut out: Vec<NamespaceCondition> = old
        .iter()
        .filter(|c| !wanted.iter().any(|w| c.type_ == w.type_))
        .cloned()
        .collect();
    for Wanted { type_, failure, ok } in wanted {
        let (status, reason, message) = match failure {
            Some((reason, message)) => ("True", reason, message),
            None => ("False", ok.0, ok.1.to_owned()),
        };
        let since = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        out.push(NamespaceCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(since),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn conditions_say_what_remains_and_keep_their_transition_times() {
        let mut report = Report::default();
        report.remaining.insert("pods".into(), 1);
        report.remaining.insert("configmaps".into(), 2);
        report.finalizers.insert("example.com/keep".into(), 1);
        let first = conditions(&report, &[], &at(10));
        let by_type = |cs: &[NamespaceCondition], t: &str| {
            cs.iter()
                .find(|c| c.type_ == t)
                .cloned()
                .unwrap_or_else(|| panic!("no {t}"))
        };
        assert_eq!(first.len(), 5);
        let remaining = by_type(&first, "NamespaceContentRemaining");
        assert_eq!(
            (
                remaining.status.as_str(),
                remaining.reason.as_deref(),
                remaining.message.as_deref()
            ),
            (
                "True",
                Some("SomeResourcesRemain"),
                Some(
                    "Some resources are remaining: configmaps has 2 resource instances, pods has 1 resource instances"
                )
            )
        );
        let held = by_type(&first, "NamespaceFinalizersRemaining");
        assert_eq!(
            held.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"
            )
        );
        let discovered = by_type(&first, "NamespaceDeletionDiscoveryFailure");
        assert_eq!(
            (discovered.status.as_str(), discovered.reason.as_deref()),
            ("False", Some("ResourcesDiscovered"))
        );

        // Later: the finalizer went (status flips, new time), content still remains (time kept),
        // a delete failed; a condition of another type stays.
        let mut old = first.clone();
        old.push(NamespaceCondition {
            type_: "Other".into(),
            status: "True".into(),
            ..Default::default()
        });
        report.finalizers.clear();
        report.content_failures = vec!["pods: b".into(), "configmaps: a".into()];
        let later = conditions(&report, &old, &at(20));
        assert_eq!(later.len(), 6);
        assert!(later.iter().any(|c| c.type_ == "Other"));
        assert_eq!(
            by_type(&later, "NamespaceContentRemaining").last_transition_time,
            Some(at(10))
        );
        let held = by_type(&later, "NamespaceFinalizersRemaining");
        assert_eq!(
            (
                held.status.as_str(),
                held.reason.as_deref(),
                held.last_transition_time
            ),
            ("False", Some("ContentHasNoFinalizers"), Some(at(20)))
        );
        assert_eq!(
            by_type(&later, "NamespaceDeletionContentFailure")
                .message
                .as_deref(),
            Some("Failed to delete all resource types, 2 remaining: [configmaps: a, pods: b]")
        );
    }

    #[test]
    fn group_versions_parse_or_say_why_not() {
        assert_eq!(parse_group_version("v1"), Ok((String::new(), "v1".into())));
        assert_eq!(
            parse_group_version("discovery.k8s.io/v1"),
            Ok(("discovery.k8s.io".into(), "v1".into()))
        );
        assert_eq!(
            parse_group_version("a/b/c"),
            Err("unexpected GroupVersion string: a/b/c".into())
        );
    }
}
