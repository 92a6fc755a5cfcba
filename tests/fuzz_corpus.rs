//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz targets of
//! `apivip::testkit::fuzz`, so that every input the fuzzer kept (and every crash once
//! fixed and added) is checked by `cargo test` without the fuzzer.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seeds` writes the seed inputs
//! (`seed-*` files: adverts built by the codec and captured from keepalived, election
//! scenarios, the example configs) into the corpora; `scripts/fuzz.sh` fuzzes from them
//! and minimizes the corpora.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use apivip::testkit::fuzz::{self, MACHINE_EVENTS};
use apivip::vrrp::packet::{
    AddrList, AdvertV2, AdvertV3, Auth, Checksum, IpPair, Packet, Repr, VirtualAddrs, MULTICAST_V4,
    MULTICAST_V6,
};
use apivip::vrrp::units::{Centisecs, Password, Priority, Secs, Vrid};

/// A fuzz target: any bytes in, a panic only when an invariant breaks.
type Target = fn(&[u8]);

/// Every fuzz target, by corpus directory name.
const TARGETS: [(&str, Target); 4] = [
    ("packet", fuzz::packet),
    ("machine", fuzz::machine),
    ("config", fuzz::config),
    ("dns", fuzz::dns),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The files of one corpus, sorted.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_passes_its_target() {
    let mut failed = Vec::new();
    for (target, run) in TARGETS {
        let files = corpus(target);
        assert!(
            !files.is_empty(),
            "fuzz/corpus/{target} is empty: the corpus belongs in the repository"
        );
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{}: {message}", file.display()));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz targets panicked on corpus files:\n{}",
        failed.join("\n")
    );
}

/// The replay is only worth something if a broken invariant fails it: an input that
/// breaks none of the targets' rules passes, and a target's panic is caught and named.
#[test]
fn a_panicking_target_is_reported() {
    let caught = catch_unwind(|| fuzz::packet(&[0x31, 51, 100, 1, 0, 100, 0, 0, 1, 2, 3, 4]));
    assert!(
        caught.is_ok(),
        "a bad checksum is a decode error, not a panic"
    );
    let caught = catch_unwind(|| {
        let run: fn(&[u8]) = |_| panic!("invariant");
        run(b"x")
    });
    assert!(caught.is_err());
}

// === seeds ===

/// Writes the seed inputs into the corpora (never overwriting a file).
#[test]
#[ignore = "writes into fuzz/corpus; run by hand when the seeds change"]
fn write_seeds() {
    for (target, seeds) in [
        ("packet", packet_seeds()),
        ("machine", machine_seeds()),
        ("config", config_seeds()),
    ] {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            let path = dir.join(format!("seed-{name}"));
            if !path.exists() {
                std::fs::write(&path, bytes).unwrap();
            }
        }
    }
}

/// An IPv4 header (no options, TTL 255, protocol 112) before `msg`, as an IPv4 raw
/// socket returns it.
fn ipv4_datagram(src: Ipv4Addr, dst: Ipv4Addr, msg: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + msg.len()).unwrap().to_be_bytes();
    let mut d = vec![0x45, 0xc0, total[0], total[1], 0, 1, 0, 0, 255, 112, 0, 0];
    d.extend(src.octets());
    d.extend(dst.octets());
    d.extend(msg);
    d
}

fn emit(repr: &Repr, ip: &IpPair) -> Vec<u8> {
    let mut buf = vec![0; repr.buffer_len()];
    repr.emit(
        &mut Packet::new_unchecked(&mut buf[..], repr.family()),
        ip,
        Checksum::Verify,
    );
    buf
}

fn packet_seeds() -> Vec<(String, Vec<u8>)> {
    // Real keepalived 2.2.7 adverts (the captures of src/vrrp/packet/tests.rs).
    let keepalived_v3_v4: [u8; 32] = [
        0x45, 0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x14, 0x86, 198, 18, 0, 2, 224,
        0, 0, 18, 0x31, 51, 100, 1, 0x00, 0x64, 0xfd, 0x4c, 198, 18, 0, 100,
    ];
    let keepalived_v3_v4_unicast: [u8; 32] = [
        0x45, 0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x2e, 0x83, 198, 18, 0, 2, 198,
        18, 0, 3, 0x31, 54, 90, 1, 0x00, 0x64, 0x21, 0x47, 198, 18, 0, 100,
    ];
    let keepalived_v3_v6_msg: [u8; 40] = [
        0x31, 52, 150, 2, 0x00, 0x32, 0x55, 0x9c, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x01, 0x00, 0x52, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
    ];
    let keepalived_v2_pass: [u8; 44] = [
        0x45, 0xc0, 0x00, 0x2c, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x14, 0x7a, 198, 18, 0, 2, 224,
        0, 0, 18, 0x21, 53, 200, 2, 0x01, 0x02, 0x4c, 0xbd, 198, 18, 0, 100, 198, 18, 0, 101, b's',
        b'3', b'c', b'r', b'e', b't', 0, 0,
    ];
    let mut out = vec![
        ("keepalived-v3-v4".into(), keepalived_v3_v4.to_vec()),
        (
            "keepalived-v3-v4-unicast".into(),
            keepalived_v3_v4_unicast.to_vec(),
        ),
        ("keepalived-v3-v6-msg".into(), keepalived_v3_v6_msg.to_vec()),
        ("keepalived-v2-pass".into(), keepalived_v2_pass.to_vec()),
        (
            "keepalived-v3-v4-msg".into(),
            keepalived_v3_v4[20..].to_vec(),
        ),
        (
            "keepalived-v2-pass-msg".into(),
            keepalived_v2_pass[20..].to_vec(),
        ),
    ];
    // Built by the codec.
    let src4 = Ipv4Addr::new(198, 18, 0, 2);
    let v4 = IpPair::V4 {
        src: src4,
        dst: MULTICAST_V4,
    };
    let v6 = IpPair::V6 {
        src: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
        dst: MULTICAST_V6,
    };
    let vips4 = |n: u8| AddrList::try_new((1..=n).map(|i| Ipv4Addr::new(198, 18, 1, i)).collect());
    let v3 = |priority: u8, cs: u16, addrs| {
        Repr::V3(AdvertV3 {
            vrid: Vrid::new_unchecked(51),
            priority: Priority::new(priority),
            max_advert_int: Centisecs::new_unchecked(cs),
            addrs,
        })
    };
    let v3_v4 = v3(100, 100, VirtualAddrs::V4(vips4(1).unwrap()));
    let v3_v4_many = v3(254, 1, VirtualAddrs::V4(vips4(5).unwrap()));
    let v3_v4_resign = v3(0, 4095, VirtualAddrs::V4(vips4(1).unwrap()));
    let v3_v4_empty = v3(255, 100, VirtualAddrs::V4(AddrList::empty()));
    let v3_v6 = v3(
        150,
        50,
        VirtualAddrs::V6(
            AddrList::try_new(vec![
                Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 1, 1),
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 1),
            ])
            .unwrap(),
        ),
    );
    let v2 = |auth| {
        Repr::V2(AdvertV2 {
            vrid: Vrid::new_unchecked(53),
            priority: Priority::new(200),
            advert_int: Secs::new_unchecked(1),
            auth,
            addrs: vips4(2).unwrap(),
        })
    };
    let v2_none = v2(Auth::None);
    let v2_pass = v2(Auth::Password(Password::try_new(b"s3cret").unwrap()));
    for (name, repr, ip) in [
        ("codec-v3-v4", &v3_v4, &v4),
        ("codec-v3-v4-five-vips", &v3_v4_many, &v4),
        ("codec-v3-v4-resign", &v3_v4_resign, &v4),
        ("codec-v3-v4-count0", &v3_v4_empty, &v4),
        ("codec-v3-v6", &v3_v6, &v6),
        ("codec-v2-none", &v2_none, &v4),
        ("codec-v2-pass", &v2_pass, &v4),
    ] {
        let msg = emit(repr, ip);
        if let IpPair::V4 { src, dst } = ip {
            out.push((format!("{name}-datagram"), ipv4_datagram(*src, *dst, &msg)));
        }
        out.push((format!("{name}-msg"), msg));
    }
    out
}

/// The byte that picks the event `name` of [`MACHINE_EVENTS`].
fn ev(name: &str) -> u8 {
    let index = MACHINE_EVENTS
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no machine event {name}"));
    u8::try_from(index).unwrap()
}

fn machine_seeds() -> Vec<(String, Vec<u8>)> {
    let timeout = [ev("next timeout"), 0];
    // advert: flags, source (0 higher, 2 lower, 4 this node, 5 a stranger), priority.
    let advert = |src: u8, priority: u8| vec![ev("advert"), 0, src, priority];
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let mut scenario = |name: &str, start: u8, steps: &[&[u8]]| {
        let mut bytes = vec![start, 1];
        for step in steps {
            bytes.extend_from_slice(step);
        }
        seeds.push((name.to_string(), bytes));
    };
    // Configurations (testkit::fuzz::configs): 0 default, 1 fast with a preempt delay,
    // 2 no preemption, 3 unicast, 4 owner, 5 two VIPs, 6 and 7 VRRPv2 (IPv4), 8 another
    // primary, 9 a named owner, 10 announcements without pause; +0x80 for IPv6.
    for (family, base) in [("v4", 0u8), ("v6", 0x80)] {
        scenario(
            &format!("{family}-takeover-then-higher-priority"),
            base,
            &[
                &timeout,
                &advert(0, 200),
                &timeout,
                &timeout,
                &advert(2, 50),
                &[ev("shutdown")],
                &timeout,
            ],
        );
        scenario(
            &format!("{family}-backup-follows-master"),
            base,
            &[
                &advert(0, 150),
                &[ev("advance"), 0x45],
                &advert(0, 150),
                &advert(0, 0),
                &timeout,
            ],
        );
        scenario(
            &format!("{family}-maintenance-handover"),
            base | 5,
            &[
                &timeout,
                &[ev("maintenance")],
                &advert(0, 100),
                &[ev("resume")],
                &timeout,
                &timeout,
            ],
        );
        scenario(
            &format!("{family}-reloads"),
            base,
            &[
                &timeout,
                &[ev("reconfigure"), 5],
                &[ev("reconfigure"), 1],
                &[ev("reconfigure"), 9],
                &[ev("reconfigure"), 10],
                &[ev("health"), 0],
                &[ev("advance"), 0x83],
            ],
        );
        scenario(
            &format!("{family}-owner"),
            base | 4,
            &[&advert(0, 255), &advert(2, 100), &[ev("shutdown")]],
        );
        scenario(
            &format!("{family}-preempt-delay"),
            base | 1,
            &[
                &advert(2, 100),
                &[ev("advance"), 0x14],
                &advert(2, 100),
                &[ev("advance"), 0x28],
                &advert(2, 100),
                &timeout,
            ],
        );
        scenario(
            &format!("{family}-faults"),
            base,
            &[
                &timeout,
                &[ev("vips missing")],
                &[ev("link"), 0x02],
                &timeout,
                &[ev("link"), 0],
                &timeout,
                &[ev("vip add failed")],
                &timeout,
                &[ev("rx dropped"), 3],
                &timeout,
            ],
        );
        scenario(
            &format!("{family}-owner-fault"),
            base | 4,
            &[
                &[ev("link"), 0x08],
                &[ev("advance"), 0x45],
                &[ev("link"), 0],
                &timeout,
            ],
        );
        scenario(
            &format!("{family}-unicast-stranger"),
            base | 3,
            &[&advert(5, 200), &advert(0, 200), &timeout],
        );
    }
    scenario(
        "v4-v2-password",
        6,
        &[
            &advert(0, 150),
            &[ev("advert"), 0x40, 0, 150, 1, b'x'],
            &timeout,
        ],
    );
    // A keepalived VRRPv3 message as raw bytes (another VIP: dropped).
    let mut raw = vec![ev("raw advert"), 0, 0, 12];
    raw.extend([0x31, 51, 100, 1, 0x00, 0x64, 0xfd, 0x4c, 198, 18, 1, 1]);
    scenario("v4-raw-keepalived", 0, &[&raw, &timeout]);
    seeds
}

fn config_seeds() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(root.join("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.push((
        "everything.yaml".into(),
        b"backends:
  - {name: m1, address: 198.18.0.11, etcd_port: 12379}
  - {name: m2, address: '[2001:db8::12]:7443'}
apiserver:
  listen: ['0.0.0.0:8443', '[::]:8443']
  balance: round-robin
  check: {kind: https, path: /readyz, ca: pki/ca.crt, cert: pki/c.crt, key: pki/c.key, interval: 500ms, rise: 1, fall: 3}
etcd:
  listen: 127.0.0.1:2379
  check: {kind: tcp}
vrrp:
  interface: eth0
  vrid: 51
  version: 2
  auth_pass: s3cret
  advert_interval: 1s
  address: 198.18.0.11
  vips: [198.18.0.5/24]
  priority: 150
  unicast_peers: [198.18.0.12]
  preempt: false
  preempt_delay: 5s
  health_weight: 20
  handover_timeout: 10s
  announce_count: 3
  announce_interval: 100ms
  track: backend:m1
shutdown: {drain_timeout: 5s}
log: {format: text, level: debug}
admin: {listen: []}
"
        .to_vec(),
    ));
    out.push((
        "invalid.yaml".into(),
        b"backends: [{address: 300.1.1.1}]\nvrrp: {vrid: 0, vips: [x]}\nunknown: 1\n".to_vec(),
    ));
    out
}
