//! The proxy across namespaces (root): a client namespace reaches apivip on one master,
//! which balances to two other masters' "apiservers" over the bridge, IPv4 and IPv6.
//!
//! The apiservers are `apivip demo` processes (imitation apiservers behind a proxy),
//! listening on the masters' bridge addresses at :6443.

mod support;

use std::time::Duration;

use support::netns::Topology;

const BIN: &str = env!("CARGO_BIN_EXE_apivip");

fn curl(node: &support::netns::Node, url: &str) -> Result<String, String> {
    let out = node
        .exec(&["curl", "-sS", "-k", "--max-time", "5", url])
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_client_namespace_reaches_the_masters_through_apivip() {
    if !support::require_root("a_client_namespace_reaches_the_masters_through_apivip")
        || support::require_bin(
            "a_client_namespace_reaches_the_masters_through_apivip",
            "curl",
        )
        .is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let topo = Topology::new(3).unwrap();
    let mut apiservers = Vec::new();
    for i in 1..=2 {
        let m = topo.master(i);
        let d = dir.path().join(format!("master-{i}"));
        let p = m
            .spawn(
                BIN,
                [
                    "demo".to_owned(),
                    "--listen".to_owned(),
                    format!("{}:6443", m.ipv4),
                    "--dir".to_owned(),
                    d.display().to_string(),
                ],
                &dir.path().join(format!("demo-{i}.log")),
            )
            .unwrap();
        apiservers.push(p);
    }
    let proxy_node = topo.master(0);
    let config = dir.path().join("apivip.yaml");
    std::fs::write(
        &config,
        format!(
            "backends:\n  - {{name: master-1, address: {}}}\n  - {{name: master-2, address: {}}}\napiserver:\n  listen: ['0.0.0.0:8443', '[::]:8443']\n  check: {{kind: tcp, interval: 200ms, timeout: 200ms}}\n",
            topo.master(1).ipv4,
            topo.master(2).ipv4
        ),
    )
    .unwrap();
    let proxy = proxy_node
        .spawn(
            BIN,
            ["run", "-c", config.to_str().unwrap()],
            &dir.path().join("apivip.log"),
        )
        .unwrap();
    let client = topo.client();
    let v4 = format!("https://{}:8443/whoami", proxy_node.ipv4);
    let v6 = format!("https://[{}]:8443/whoami", proxy_node.ipv6);
    let logs = || {
        format!(
            "apivip:\n{}\ndemo-1:\n{}\ndemo-2:\n{}",
            proxy.log(),
            apiservers[0].log(),
            apiservers[1].log()
        )
    };
    let up = support::wait_until_blocking(Duration::from_secs(20), || {
        curl(client, &v4).is_ok() && curl(client, &v6).is_ok()
    });
    assert!(
        up,
        "no answer through apivip from the client namespace\n{}",
        logs()
    );
    let mut seen = std::collections::HashSet::new();
    for _ in 0..8 {
        seen.insert(curl(client, &v4).unwrap());
    }
    assert!(seen.iter().all(|s| s.starts_with("master-")), "{seen:?}");

    // One master's apiserver dies: every request still succeeds.
    apiservers[0].kill_hard();
    for i in 0..20 {
        let r = curl(client, if i % 2 == 0 { &v4 } else { &v6 });
        assert!(r.is_ok(), "request {i} failed: {r:?}\n{}", logs());
    }
}
