//! The `kubernetes` Service in `default`: the API's own ClusterIP (the service CIDR's first
//! address, port 443) with hand-made Endpoints and an EndpointSlice pointing at the API's
//! listen address, kept as kube-apiserver's own controller keeps them: deleted, or changed by
//! someone else, they are put back.

use std::net::{Ipv4Addr, SocketAddr};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use crate::watch::follow;

const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";

/// Keeps the `kubernetes` Service (ClusterIP `cluster_ip`, port 443) and its endpoints, which
/// point at `api`, until dropped.
pub async fn run(client: Client, cluster_ip: Ipv4Addr, api: SocketAddr) {
    let (tx, mut touched) = mpsc::unbounded_channel();
    let only = || watcher::Config::default().fields(&format!("metadata.name={NAME}"));
    let (_services, a) = follow(
        Api::<Service>::namespaced(client.clone(), NAMESPACE),
        only(),
        tx.clone(),
    );
    let (_endpoints, b) = follow(
        Api::<Endpoints>::namespaced(client.clone(), NAMESPACE),
        only(),
        tx.clone(),
    );
    let (_slices, c) = follow(
        Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE),
        only(),
        tx,
    );
    let _followers = [
        AbortOnDropHandle::new(tokio::spawn(a)),
        AbortOnDropHandle::new(tokio::spawn(b)),
        AbortOnDropHandle::new(tokio::spawn(c)),
    ];
    while touched.recv().await.is_some() {
        // One pass for whatever is queued.
        while touched.try_recv().is_ok() {}
        if let Err(e) = ensure(&client, cluster_ip, api).await {
            warn!(error = %e, "keeping the kubernetes Service failed");
        }
    }
}

/// Creates the `kubernetes` Service if it is missing (an existing one is kept as it is) and
/// points its Endpoints and EndpointSlice at `api`.
pub async fn ensure(client: &Client, cluster_ip: Ipv4Addr, api: SocketAddr) -> Result<(), kube::Error> {
    let meta = |labels: &[(&str, &str)]| ObjectMeta {
        name: Some(NAME.into()),
        namespace: Some(NAMESPACE.into()),
        labels: Some(labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
        ..Default::default()
    };
    let services = Api::<Service>::namespaced(client.clone(), NAMESPACE);
    if services.get_opt(NAME).await?.is_none() {
        let ip = cluster_ip.to_string();
        let service = Service {
            metadata: meta(&[("component", "apiserver"), ("provider", "kubernetes")]),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                cluster_ip: Some(ip.clone()),
                cluster_ips: Some(vec![ip]),
                ip_families: Some(vec!["IPv4".into()]),
                ip_family_policy: Some("SingleStack".into()),
                session_affinity: Some("None".into()),
                internal_traffic_policy: Some("Cluster".into()),
                ports: Some(vec![ServicePort {
                    name: Some("https".into()),
                    port: 443,
                    protocol: Some("TCP".into()),
                    target_port: Some(IntOrString::Int(i32::from(api.port()))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        create(&services, &service).await?;
    }
    let ip = api.ip().to_string();
    let port = i32::from(api.port());
    let endpoints = Endpoints {
        metadata: meta(&[("endpointslice.kubernetes.io/skip-mirror", "true")]),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: ip.clone(),
                ..Default::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some("https".into()),
                port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    };
    put(&Api::namespaced(client.clone(), NAMESPACE), endpoints, |e| {
        serde_json::to_value(&e.subsets).ok()
    })
    .await?;
    let slice = EndpointSlice {
        metadata: meta(&[("kubernetes.io/service-name", NAME)]),
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            ..Default::default()
        }],
        ports: Some(vec![k8s_openapi::api::discovery::v1::EndpointPort {
            name: Some("https".into()),
            port: Some(port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    };
    put(&Api::namespaced(client.clone(), NAMESPACE), slice, |s| {
        serde_json::to_value((&s.endpoints, &s.ports)).ok()
    })
    .await
}

/// Creates `object`; one that exists already is fine.
async fn create<K>(api: &Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `desired`, or replaces the stored object's content (`content` of both differs),
/// keeping its metadata.
async fn put<K>(
    api: &Api<K>,
    mut desired: K,
    content: impl Fn(&K) -> Option<serde_json::Value>,
) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(NAME).await? {
        Some(current) if content(&current) == content(&desired) => Ok(()),
        Some(current) => {
            *desired.meta_mut() = current.meta().clone();
            match api.replace(NAME, &PostParams::default(), &desired).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    debug!("the kubernetes endpoints changed meanwhile; the next event fixes them");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        None => create(api, &desired).await,
    }
}
