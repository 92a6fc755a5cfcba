//! Micro benchmarks of the sans-IO cores: the balancer, the rise/fall machine and
//! config parsing. Run with `cargo bench --bench cores`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use apivip::config::{Balance, Config};
use apivip::health::state::{DownCause, Outcome, RiseFall};
use apivip::proxy::balance::{pick, Candidate};

fn candidates(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            // Every fifth backend down, loads spread.
            healthy: i % 5 != 4,
            drained: false,
            active: (i * 7919) % 97,
            weight: apivip::proxy::balance::FULL_WEIGHT,
        })
        .collect()
}

fn bench_pick(c: &mut Criterion) {
    let mut g = c.benchmark_group("balance::pick");
    for n in [3usize, 64] {
        let cands = candidates(n);
        let untried = vec![false; n];
        // The worst case: every healthy backend tried, so the fallback pass runs.
        let healthy_tried: Vec<bool> = cands.iter().map(|c| c.healthy).collect();
        for (label, policy) in [
            ("least-connections", Balance::LeastConnections),
            ("round-robin", Balance::RoundRobin),
        ] {
            g.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                let mut cursor = 0usize;
                b.iter(|| {
                    cursor = cursor.wrapping_add(1);
                    black_box(pick(policy, cursor, black_box(&cands), black_box(&untried)))
                })
            });
        }
        g.bench_with_input(BenchmarkId::new("fallback", n), &n, |b, _| {
            b.iter(|| {
                black_box(pick(
                    Balance::LeastConnections,
                    1,
                    black_box(&cands),
                    black_box(&healthy_tried),
                ))
            })
        });
    }
    g.finish();
}

fn bench_rise_fall(c: &mut Criterion) {
    let mut g = c.benchmark_group("RiseFall::handle_outcome");
    let ok = Outcome::Success;
    let refused = Outcome::Failure {
        cause: DownCause::Unreachable,
        kind: apivip::health::state::FailureKind::Refused,
        reason: "connection refused".into(),
    };
    g.bench_function("steady up", |b| {
        let mut m = RiseFall::new(2, 2);
        let _ = m.handle_outcome(&ok);
        b.iter(|| black_box(m.handle_outcome(black_box(&ok))))
    });
    // Alternating: a transition every `fall`/`rise` results.
    g.bench_function("flapping (rise 2, fall 2)", |b| {
        let mut m = RiseFall::new(2, 2);
        let seq = [&ok, &ok, &refused, &refused];
        let mut i = 0usize;
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(m.handle_outcome(black_box(seq[i % 4])))
        })
    });
    g.finish();
}

const THREE_MASTERS: &str = "
backends:
  - name: master-1
    address: 198.18.0.11
  - name: master-2
    address: 198.18.0.12
  - name: master-3
    address: 198.18.0.13
apiserver:
  listen: ['0.0.0.0:8443', '[::]:8443']
  balance: least-connections
  check:
    kind: https
    path: /readyz
    interval: 2s
    timeout: 1s
    rise: 2
    fall: 2
etcd:
  listen: 127.0.0.1:2379
  check: {kind: tcp, interval: 1s}
shutdown: {drain_timeout: 30s}
log: {format: json, level: info}
";

fn bench_config(c: &mut Criterion) {
    // Fail here, not inside the timing loop, if the schema moved on.
    Config::from_yaml(THREE_MASTERS, Path::new("bench.yaml")).expect("the bench config is valid");
    c.bench_function("Config::from_yaml (3 masters)", |b| {
        b.iter(|| {
            black_box(Config::from_yaml(
                black_box(THREE_MASTERS),
                Path::new("bench.yaml"),
            ))
        })
    });
}

criterion_group!(benches, bench_pick, bench_rise_fall, bench_config);
criterion_main!(benches);
