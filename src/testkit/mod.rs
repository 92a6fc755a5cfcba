//! Test kit: an imitation kube-apiserver and a throw-away PKI.
//!
//! kube-apiserver cannot be installed on the test machines, so [`apiserver`] serves what a load
//! balancer in front of it sees: HTTPS `/readyz`, `/livez`, `/healthz`, ordinary requests and a
//! long-lived streaming response like a WATCH. It can be told to turn not-ready, to hang, to
//! reset connections, and to shut down gracefully the way kube-apiserver does.
//!
//! [`certs`] makes the certificates (CA, server, client, and a wrong CA for negative mTLS
//! tests) with rcgen and writes them as PEM files.
//!
//! [`netns`] builds network-namespace topologies (a bridge, masters and a client) for the
//! topology tests and `apivip demo`'s VIP mode; it needs root.
//!
//! [`bind`] runs a real BIND with a zone that accepts TSIG-signed updates (DNS tests).
//!
//! [`fuzz`] holds the fuzz targets (the VRRP codec, the election machine, the config
//! loader), shared by the fuzzer binaries in `fuzz/` and the corpus replay test.
//!
//! Used by the tests, the benchmarks and `apivip demo`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use apivip::testkit::{apiserver::{ApiserverOptions, ImitationApiserver, Mode}, certs::TestPki};
//! let dir = std::env::temp_dir();
//! let pki = TestPki::generate(&dir, &["127.0.0.1", "localhost"])?;
//! let api = ImitationApiserver::start(ApiserverOptions::new("m0", pki.server_config())).await?;
//! println!("listening on https://{}", api.addr());
//! api.set_mode(Mode::NotReady); // /readyz now answers 500
//! api.graceful_shutdown().await;
//! # Ok(()) }
//! ```

pub mod apiserver;
pub mod bind;
pub mod certs;
pub mod fuzz;
pub mod netns;

/// Installs ring as the process-wide default rustls crypto provider, unless one is already
/// installed (then this does nothing).
///
/// The test kit itself never needs it (every configuration names ring explicitly); it is for
/// code that builds rustls configurations with the plain `builder()` functions.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may win the race: that is fine, a default is then installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
