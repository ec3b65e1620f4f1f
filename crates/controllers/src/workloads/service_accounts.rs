//! The ServiceAccount controller's one duty here (`controller-semantics.md` 9.1): a
//! ServiceAccount named `default` in every active namespace, made again if deleted.

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

/// Runs the controller until cancelled.
pub(crate) async fn run(client: Client) {
    let sas: Api<ServiceAccount> = Api::all(client.clone());
    Controller::new(Api::<Namespace>::all(client.clone()), watcher::Config::default())
        .watches(sas, watcher::Config::default(), |sa| {
            sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .run(
            reconcile,
            |_, _, _| Action::requeue(std::time::Duration::from_secs(5)),
            Arc::new(client),
        )
        .for_each(|_| async {})
        .await;
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<Client>) -> Result<Action, kube::Error> {
    let active = ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Active");
    if !active {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced((*client).clone(), &ns.name_any());
    if api.get_opt("default").await?.is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if matches!(e.code, 409 | 403 | 404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Action::await_change())
}
