//! The registry client against the real registry: digests, errors a person can act on, auth,
//! read-only mode, and the verifier catching damage.

mod support;

use std::net::{Ipv4Addr, SocketAddr};

use regsweep::fixture::{Format, push_image, push_index};
use regsweep::maintenance::instance::{RegistryProcess, find_registry_bin, free_port};
use regsweep::registry::{ClientOptions, DeleteOutcome, RegistryClient, RegistryError, WriteProbe};

/// A registry with its own config: delete enabled, optional htpasswd auth and read-only mode.
async fn registry(dir: &std::path::Path, htpasswd: Option<(&str, &str)>, read_only: bool) -> RegistryProcess {
    support::ensure_registry_installed();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut config = format!(
        "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp: {{addr: \"{addr}\", secret: s}}\n",
        dir.join("storage").display()
    );
    if let Some((user, password)) = htpasswd {
        let hash = bcrypt::hash(password, 4).unwrap();
        std::fs::write(dir.join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
        config.push_str(&format!("auth:\n  htpasswd: {{realm: test, path: {}}}\n", dir.join("htpasswd").display()));
    }
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let env = if read_only { vec![("REGISTRY_STORAGE_MAINTENANCE_READONLY".to_string(), r#"{"enabled":true}"#.to_string())] } else { Vec::new() };
    RegistryProcess::start(&find_registry_bin(None).unwrap(), &dir.join("config.yml"), env, addr, Some(dir.join("log"))).await.unwrap()
}

fn client(url: &str) -> RegistryClient {
    RegistryClient::new(url, ClientOptions::default()).unwrap()
}

#[tokio::test]
async fn manifests_come_back_with_their_true_digest_and_deletes_converge() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), None, false).await;
    let c = client(&reg.url());
    let docker = push_image(&c, "team-a/app", Some("docker"), Format::Docker, &[100], &[]).await.unwrap();
    let oci = push_image(&c, "team-a/app", Some("oci"), Format::Oci, &[100], &[]).await.unwrap();
    let index = push_index(&c, "team-a/app", "multi", Format::Oci, &[(&oci, "amd64")]).await.unwrap();
    push_image(&c, "b", Some("1"), Format::Docker, &[10], &[]).await.unwrap();
    assert_eq!(c.catalog().await.unwrap(), vec!["b".to_string(), "team-a/app".to_string()]);
    assert_eq!(c.tags("team-a/app").await.unwrap(), vec!["docker", "multi", "oci"]);
    for (tag, want, media) in [("docker", &docker, regsweep::media::DOCKER_MANIFEST), ("oci", &oci, regsweep::media::OCI_MANIFEST), ("multi", &index, regsweep::media::OCI_INDEX)] {
        let got = c.get_manifest("team-a/app", tag).await.unwrap();
        assert_eq!(got.digest, want.digest, "{tag}");
        assert_eq!(got.media_type, media);
        let head = c.head_manifest("team-a/app", want.digest.as_str()).await.unwrap().unwrap();
        assert_eq!(head.digest, want.digest, "HEAD agrees with GET for {tag}");
    }
    assert_eq!(c.delete_manifest("team-a/app", &docker.digest).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(c.delete_manifest("team-a/app", &docker.digest).await.unwrap(), DeleteOutcome::AlreadyGone);
    assert!(c.head_manifest("team-a/app", "docker").await.unwrap().is_none());
    let err = c.tags("nope").await.unwrap_err();
    assert_eq!(err.category(), "repository-unknown", "{err}");
    assert!(matches!(c.probe_write("b").await.unwrap(), WriteProbe::Accepted { .. }));
    reg.stop().await;
}

#[tokio::test]
async fn read_only_mode_refuses_writes_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let writable = registry(dir.path(), None, false).await;
    let img = push_image(&client(&writable.url()), "app", Some("v1"), Format::Oci, &[10], &[]).await.unwrap();
    writable.stop().await;
    let frozen = registry(dir.path(), None, true).await;
    let c = client(&frozen.url());
    assert_eq!(c.probe_write("app").await.unwrap(), WriteProbe::Refused { status: 405 });
    let err = c.delete_manifest("app", &img.digest).await.unwrap_err();
    assert!(matches!(err, RegistryError::ReadOnly { .. }), "{err}");
    assert!(err.to_string().contains("read-only"));
    // Reads still work.
    assert_eq!(c.get_manifest("app", "v1").await.unwrap().digest, img.digest);
    frozen.stop().await;
}

#[tokio::test]
async fn basic_auth_and_credential_errors() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Some(("ci", "s3cret")), false).await;
    let with = |user: Option<&str>, password: &str| {
        RegistryClient::new(&reg.url(), ClientOptions { username: user.map(String::from), password: Some(password.into()), ..Default::default() }).unwrap()
    };
    let good = with(Some("ci"), "s3cret");
    push_image(&good, "app", Some("v1"), Format::Docker, &[10], &[]).await.unwrap();
    assert_eq!(good.catalog().await.unwrap(), vec!["app".to_string()]);
    for bad in [with(Some("ci"), "wrong"), with(None, "")] {
        let err = bad.catalog().await.unwrap_err();
        assert_eq!(err.category(), "unauthorized");
        assert!(err.to_string().contains("REGSWEEP_REGISTRY_PASSWORD"), "says how to fix it: {err}");
        assert!(!err.to_string().contains("s3cret") && !err.to_string().contains("wrong"), "never prints a password");
    }
    reg.stop().await;
}

#[tokio::test]
async fn an_unreachable_registry_is_named_in_the_error() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let err = client(&url).ping().await.unwrap_err();
    assert_eq!(err.category(), "unreachable");
    assert!(err.to_string().contains(&url));
}

#[tokio::test]
async fn the_verifier_catches_missing_and_corrupted_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), None, false).await;
    let c = client(&reg.url());
    let a = push_image(&c, "app", Some("a"), Format::Docker, &[1000], &[]).await.unwrap();
    let b = push_image(&c, "app", Some("b"), Format::Oci, &[1000], &[]).await.unwrap();
    push_image(&c, "app", Some("fine"), Format::Oci, &[1000], &[]).await.unwrap();
    let healthy = regsweep::verify::verify_registry(&c).await.unwrap();
    assert!(healthy.is_ok(), "{:?}", healthy.problems);
    assert_eq!((healthy.tags, healthy.manifests, healthy.blobs), (3, 3, 6));
    reg.stop().await;
    let layout = regsweep::storage::Layout::new(dir.path().join("storage"));
    std::fs::remove_file(layout.blob_data(&a.blobs[1])).unwrap();
    std::fs::write(layout.blob_data(&b.blobs[1]), vec![7u8; 1000]).unwrap();
    let reg = registry(dir.path(), None, false).await;
    let report = regsweep::verify::verify_registry(&client(&reg.url())).await.unwrap();
    let mut broken: Vec<&str> = report.problems.iter().map(|p| p.tag.as_str()).collect();
    broken.sort();
    assert_eq!(broken, vec!["a", "b"], "{:?}", report.problems);
    assert!(report.problems.iter().any(|p| p.problem.contains("not sha256") || p.problem.contains("digest")), "{:?}", report.problems);
    reg.stop().await;
}
