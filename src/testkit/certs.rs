//! A throw-away PKI for tests, made with rcgen.
//!
//! [`TestPki::generate`] writes PEM files into a directory:
//!
//! | file | what |
//! |---|---|
//! | `ca.crt` | the test CA |
//! | `server.crt`, `server.key` | server certificate (the given SANs), signed by `ca.crt`; EKU server *and* client auth, like a kubeadm etcd server certificate |
//! | `client.crt`, `client.key` | client certificate (CN `apivip-client`), signed by `ca.crt`, for mTLS |
//! | `wrong-ca.crt` | a second, unrelated CA |
//! | `wrong-client.crt`, `wrong-client.key` | a client certificate signed by `wrong-ca.crt`, for negative mTLS tests |
//!
//! The rustls configurations built here always use the ring provider explicitly and never
//! depend on a process-wide default provider.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The ring crypto provider, as an `Arc` ready for the rustls builders.
pub fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and its private key, kept in memory (DER).
#[derive(Debug)]
struct Leaf {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Leaf {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// A test PKI: one CA, a server certificate, a client certificate, and an unrelated second CA
/// with its own client certificate. See the module docs for the files.
#[derive(Debug)]
pub struct TestPki {
    /// Directory holding every file below.
    pub dir: PathBuf,
    /// `ca.crt`: the CA that signed the server and client certificates.
    pub ca_cert: PathBuf,
    /// `server.crt`: server certificate with the SANs given to [`TestPki::generate`].
    pub server_cert: PathBuf,
    /// `server.key`: PKCS#8 private key of `server.crt`.
    pub server_key: PathBuf,
    /// `client.crt`: client certificate signed by `ca.crt`.
    pub client_cert: PathBuf,
    /// `client.key`: PKCS#8 private key of `client.crt`.
    pub client_key: PathBuf,
    /// `wrong-ca.crt`: an unrelated CA.
    pub wrong_ca_cert: PathBuf,
    /// `wrong-client.crt`: client certificate signed by `wrong-ca.crt`.
    pub wrong_client_cert: PathBuf,
    /// `wrong-client.key`: PKCS#8 private key of `wrong-client.crt`.
    pub wrong_client_key: PathBuf,
    ca_der: CertificateDer<'static>,
    wrong_ca_der: CertificateDer<'static>,
    server: Leaf,
    client: Leaf,
    wrong_client: Leaf,
}

fn to_io(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("rcgen: {e}"))
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::other(format!("rustls: {e}"))
}

fn new_ca(
    common_name: &str,
) -> io::Result<(CertificateDer<'static>, String, Issuer<'static, KeyPair>)> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(to_io)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let key = KeyPair::generate().map_err(to_io)?;
    let cert = params.self_signed(&key).map_err(to_io)?;
    Ok((cert.der().clone(), cert.pem(), Issuer::new(params, key)))
}

fn new_leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    sans: &[&str],
    ekus: &[ExtendedKeyUsagePurpose],
) -> io::Result<(Leaf, String, String)> {
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans).map_err(to_io)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = ekus.to_vec();
    let key = KeyPair::generate().map_err(to_io)?;
    let cert = params.signed_by(&key, issuer).map_err(to_io)?;
    let leaf = Leaf {
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    };
    Ok((leaf, cert.pem(), key.serialize_pem()))
}

fn write(path: &Path, contents: &str) -> io::Result<()> {
    fs::write(path, contents)
}

impl TestPki {
    /// Generates the PKI and writes its PEM files into `dir` (which must exist).
    ///
    /// `server_sans` become IP SANs when they parse as IP addresses (`"127.0.0.1"`, `"::1"`,
    /// `"198.18.0.11"`) and DNS SANs otherwise (`"localhost"`, `"kubernetes"`).
    pub fn generate(dir: &Path, server_sans: &[&str]) -> io::Result<TestPki> {
        let (ca_der, ca_pem, ca) = new_ca("apivip test CA")?;
        let (wrong_ca_der, wrong_ca_pem, wrong_ca) = new_ca("apivip wrong test CA")?;
        let (server, server_pem, server_key_pem) = new_leaf(
            &ca,
            "apivip-test-server",
            server_sans,
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        let (client, client_pem, client_key_pem) = new_leaf(
            &ca,
            "apivip-client",
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        )?;
        let (wrong_client, wrong_client_pem, wrong_client_key_pem) = new_leaf(
            &wrong_ca,
            "apivip-wrong-client",
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        )?;

        let pki = TestPki {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            wrong_ca_cert: dir.join("wrong-ca.crt"),
            wrong_client_cert: dir.join("wrong-client.crt"),
            wrong_client_key: dir.join("wrong-client.key"),
            ca_der,
            wrong_ca_der,
            server,
            client,
            wrong_client,
        };
        write(&pki.ca_cert, &ca_pem)?;
        write(&pki.server_cert, &server_pem)?;
        write(&pki.server_key, &server_key_pem)?;
        write(&pki.client_cert, &client_pem)?;
        write(&pki.client_key, &client_key_pem)?;
        write(&pki.wrong_ca_cert, &wrong_ca_pem)?;
        write(&pki.wrong_client_cert, &wrong_client_pem)?;
        write(&pki.wrong_client_key, &wrong_client_key_pem)?;
        Ok(pki)
    }

    /// DER of `ca.crt`.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// DER of `wrong-ca.crt`.
    pub fn wrong_ca_der(&self) -> &CertificateDer<'static> {
        &self.wrong_ca_der
    }

    /// A TLS server configuration presenting `server.crt`, without client authentication.
    ///
    /// # Panics
    /// Never in practice: the key and certificate were generated together.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.try_server_config(false)
            .expect("server config from generated certificates")
    }

    /// A TLS server configuration presenting `server.crt` and *requiring* a client certificate
    /// signed by `ca.crt`.
    ///
    /// # Panics
    /// Never in practice: the key and certificate were generated together.
    pub fn server_config_mtls(&self) -> Arc<ServerConfig> {
        self.try_server_config(true)
            .expect("mTLS server config from generated certificates")
    }

    fn try_server_config(&self, mtls: bool) -> io::Result<Arc<ServerConfig>> {
        let provider = ring_provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?;
        let builder = if mtls {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()), provider)
                    .build()
                    .map_err(|e| io::Error::other(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(vec![self.server.cert.clone()], self.server.key())
            .map_err(tls_err)?;
        Ok(Arc::new(config))
    }

    /// A root store holding only `ca.crt`.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("generated CA is a valid trust anchor");
        roots
    }

    /// A TLS client configuration trusting `ca.crt`, presenting no client certificate.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.build_client_config(None)
    }

    /// A TLS client configuration trusting `ca.crt` and presenting `client.crt`.
    pub fn client_config_mtls(&self) -> Arc<ClientConfig> {
        self.build_client_config(Some(&self.client))
    }

    /// A TLS client configuration trusting `ca.crt` and presenting `wrong-client.crt`
    /// (signed by the unrelated CA): an mTLS server must refuse it.
    pub fn client_config_wrong_mtls(&self) -> Arc<ClientConfig> {
        self.build_client_config(Some(&self.wrong_client))
    }

    fn build_client_config(&self, identity: Option<&Leaf>) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(self.roots());
        let config = match identity {
            Some(leaf) => builder
                .with_client_auth_cert(vec![leaf.cert.clone()], leaf.key())
                .expect("generated client certificate and key match"),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}
