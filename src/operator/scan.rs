//! The in-use scan: every Pod (spec images and the digests they run) and every workload
//! template that can start pods again (Deployments, StatefulSets, DaemonSets, ReplicaSets kept
//! for rollback, Jobs, CronJobs), in all namespaces or the configured ones.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::inuse::{InUse, InUseIndex, pod_images, spec_images};

async fn each<K>(client: &Client, namespaces: &Option<Vec<String>>, mut f: impl FnMut(&K)) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let apis: Vec<Api<K>> = match namespaces {
        None => vec![Api::all(client.clone())],
        Some(list) => list.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect(),
    };
    for api in apis {
        for obj in api.list(&ListParams::default()).await? {
            f(&obj);
        }
    }
    Ok(())
}

fn user<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!("{} {}/{}", K::kind(&()), obj.namespace().unwrap_or_default(), obj.name_any())
}

fn template(spec: Option<&PodSpec>) -> Vec<&str> {
    spec.map(spec_images).unwrap_or_default()
}

pub async fn in_use(client: &Client, namespaces: &Option<Vec<String>>, hosts: &[String]) -> Result<Vec<InUse>, kube::Error> {
    let mut idx = InUseIndex::default();
    each::<Pod>(client, namespaces, |p| idx.add(&user(p), pod_images(p), hosts)).await?;
    each::<Deployment>(client, namespaces, |d| idx.add(&user(d), template(d.spec.template.spec.as_ref()), hosts)).await?;
    each::<StatefulSet>(client, namespaces, |s| idx.add(&user(s), template(s.spec.template.spec.as_ref()), hosts)).await?;
    each::<DaemonSet>(client, namespaces, |d| idx.add(&user(d), template(d.spec.template.spec.as_ref()), hosts)).await?;
    each::<ReplicaSet>(client, namespaces, |r| idx.add(&user(r), template(r.spec.template.as_ref().and_then(|t| t.spec.as_ref())), hosts))
        .await?;
    each::<Job>(client, namespaces, |j| idx.add(&user(j), template(j.spec.as_ref().and_then(|s| s.template.spec.as_ref())), hosts)).await?;
    each::<CronJob>(client, namespaces, |c| {
        let spec = c.spec.job_template.spec.as_ref().and_then(|j| j.template.spec.as_ref());
        idx.add(&user(c), template(spec), hosts)
    })
    .await?;
    Ok(idx.into_list())
}
