//! apivip's etcd check and etcd frontend against a real etcd member with TLS and
//! client-certificate auth (Debian's etcd-server; certificates from rcgen).

mod support;

use std::path::Path;
use std::time::Duration;

use apivip::config::Config;
use apivip::health::{DownCause, Status};
use apivip::supervisor::Supervisor;
use apivip::testkit::certs::TestPki;
use support::etcd::Etcd;

fn config(etcd: &Etcd, ca: &Path, cert: &Path, key: &Path) -> Config {
    let port = etcd.client_url().port();
    let yaml = format!(
        "backends: [{{name: etcd-0, address: 127.0.0.1, etcd_port: {port}}}]
apiserver: {{listen: 127.0.0.1:0, check: {{kind: tcp}}}}
admin: {{listen: []}}
etcd:
  listen: 127.0.0.1:0
  check:
    kind: etcd
    ca: '{}'
    client_cert: '{}'
    client_key: '{}'
    interval: 300ms
    timeout: 300ms
",
        ca.display(),
        cert.display(),
        key.display()
    );
    Config::from_yaml(&yaml, Path::new("etcd.yaml")).unwrap()
}

async fn wait_for(
    sup: &Supervisor,
    pred: impl Fn(Status) -> bool,
) -> apivip::health::BackendHealth {
    let mut view = sup.health();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let snap = view.current_and_mark_seen();
        let b = snap
            .frontend(apivip::config::FrontendKind::Etcd)
            .unwrap()
            .backends[0]
            .clone();
        if pred(b.status) {
            return b;
        }
        if tokio::time::timeout_at(deadline, view.changed())
            .await
            .is_err()
        {
            panic!("etcd backend stayed {} ({})", b.status, b.reason);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_check_needs_the_right_client_certificate() {
    if support::require_bin("etcd_check_needs_the_right_client_certificate", "etcd").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &["127.0.0.1"]).unwrap();
    let etcd = tokio::task::block_in_place(|| Etcd::start(&pki, dir.path()))
        .unwrap_or_else(|e| panic!("etcd did not start: {e}"));

    // The right client certificate: healthy, and the frontend carries mTLS through.
    let good = config(&etcd, &pki.ca_cert, &pki.client_cert, &pki.client_key);
    let sup = Supervisor::start(&good).await.unwrap();
    let b = wait_for(&sup, |s| s != Status::Unknown).await;
    assert_eq!(
        b.status,
        Status::Up,
        "reason: {}\netcd log:\n{}",
        b.reason,
        etcd.log()
    );
    let endpoint = sup.listen_addrs(apivip::config::FrontendKind::Etcd)[0];
    let client =
        support::client_config(&pki.ca_cert, Some((&pki.client_cert, &pki.client_key))).unwrap();
    let (status, body) = support::https_get_with(endpoint, client, "/health")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"health\":\"true\""), "{body}");
    sup.shutdown(Duration::from_secs(1)).await;

    // A client certificate from another CA: etcd refuses the handshake; down, with why.
    let bad = config(
        &etcd,
        &pki.ca_cert,
        &pki.wrong_client_cert,
        &pki.wrong_client_key,
    );
    let sup = Supervisor::start(&bad).await.unwrap();
    let b = wait_for(&sup, |s| s != Status::Unknown).await;
    assert_eq!(
        b.status,
        Status::Down(DownCause::Unreachable),
        "reason: {}",
        b.reason
    );
    println!("wrong client certificate: {}", b.reason);
    assert!(
        b.reason.contains("TLS") || b.reason.contains("HTTP"),
        "the reason should name the TLS failure: {}",
        b.reason
    );
    sup.shutdown(Duration::from_secs(1)).await;

    // A CA that did not sign etcd's certificate: down, with the verification error.
    let wrong_ca = config(&etcd, &pki.wrong_ca_cert, &pki.client_cert, &pki.client_key);
    let sup = Supervisor::start(&wrong_ca).await.unwrap();
    let b = wait_for(&sup, |s| s != Status::Unknown).await;
    assert_eq!(b.status, Status::Down(DownCause::Unreachable));
    assert!(b.reason.contains("certificate"), "{}", b.reason);
    println!("wrong CA: {}", b.reason);
    sup.shutdown(Duration::from_secs(1)).await;
}
