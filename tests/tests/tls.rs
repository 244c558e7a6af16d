//! TLS end to end: the real server behind a real TLS listener whose
//! certificate comes from a private CA (as district government servers'
//! do). The device trusts it only through an extra root, and a certificate
//! pin is checked after verification: match signs in and syncs, mismatch and
//! an unknown CA are refused with a message that names no host.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gridwork_core::{DraftFields, Gridwork, TlsConfig, Trigger};
use gridwork_tests::server::{LocalServer, PASSWORD, default_policy};
use gridwork_tests::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use sha2::{Digest, Sha256};

struct Pki {
    ca_der: Vec<u8>,
    leaf_der: Vec<u8>,
    leaf_key_der: Vec<u8>,
    /// SHA-256 of the leaf's SubjectPublicKeyInfo.
    leaf_spki_sha256: [u8; 32],
}

fn private_ca_and_leaf() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "District Government Test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_der: ca_cert.der().to_vec(),
        leaf_der: leaf_cert.der().to_vec(),
        leaf_spki_sha256: Sha256::digest(spki_of(leaf_cert.der())).into(),
        leaf_key_der: leaf_key.serialize_der(),
    }
}

/// A TLS listener on loopback relaying each connection to `upstream` (plain HTTP).
struct TlsFront {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn tls_front(pki: &Pki, upstream: SocketAddr) -> TlsFront {
    tls_front_with(vec![pki.leaf_der.clone(), pki.ca_der.clone()], &pki.leaf_key_der, upstream)
}

/// A TLS front presenting `chain` (leaf first) with the leaf's key.
fn tls_front_with(chain: Vec<Vec<u8>>, key_der: &[u8], upstream: SocketAddr) -> TlsFront {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            chain.into_iter().map(CertificateDer::from).collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake simply ends this connection.
                let Ok(mut tls) = acceptor.accept(client).await else { return };
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    TlsFront { addr, _runtime: runtime }
}

fn device(dir: &std::path::Path, tls: TlsConfig) -> Gridwork {
    let mut config = config(dir, "worker1");
    config.tls = tls;
    Gridwork::open(config).unwrap()
}

#[test]
fn a_private_ca_server_is_trusted_through_an_extra_root_and_a_matching_pin() {
    let pki = private_ca_and_leaf();
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let front = tls_front(&pki, server.addr);
    let url = format!("https://localhost:{}", front.addr.port());

    // Extra root and the leaf's pin: signs in, and a report with a photo arrives.
    let dir = tempfile::tempdir().unwrap();
    let gw = device(dir.path(), TlsConfig { extra_roots_der: vec![pki.ca_der.clone()], pinned_spki_sha256: vec![pki.leaf_spki_sha256] });
    gw.login(&url, "worker1", PASSWORD, false).expect("trusted through the extra root, pin matches");
    let draft = gw.create_draft(DraftFields { category_code: Some("0602".into()), description: "加密通道".into(), ..Default::default() }).unwrap();
    let photo = dir.path().join("p.jpg");
    std::fs::write(&photo, jpeg_bytes(&image::RgbImage::from_fn(640, 480, |x, y| image::Rgb([x as u8, y as u8, 90])), 90, None)).unwrap();
    gw.attach_photo(draft.id, &photo).unwrap();
    gw.submit(draft.id).unwrap();
    let report = gw.sync_now(Trigger::OperationQueued, Duration::from_secs(30)).unwrap();
    assert!(report.completed && report.photos_uploaded == 1, "{report:?}");
    let arrived: Vec<bool> = server.photos(&draft.id.to_string()).into_iter().map(|(_, arrived)| arrived).collect();
    assert_eq!(arrived, vec![true]);

    // The CA's key as the pin also matches (any certificate of the chain).
    let dir = tempfile::tempdir().unwrap();
    let ca_spki: [u8; 32] = Sha256::digest(spki_of(&pki.ca_der)).into();
    let gw = device(dir.path(), TlsConfig { extra_roots_der: vec![pki.ca_der.clone()], pinned_spki_sha256: vec![ca_spki] });
    gw.login(&url, "worker1", PASSWORD, false).expect("pin on the CA key");
}

#[test]
fn an_unknown_ca_or_a_wrong_pin_is_refused_without_naming_the_host() {
    let pki = private_ca_and_leaf();
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let front = tls_front(&pki, server.addr);
    let url = format!("https://localhost:{}", front.addr.port());

    // The platform store does not know the district CA.
    let dir = tempfile::tempdir().unwrap();
    let error = device(dir.path(), TlsConfig::default()).login(&url, "worker1", PASSWORD, false).unwrap_err();
    assert_eq!(error.code(), "network_unavailable");
    assert!(error.to_string().contains("not trusted"), "{error}");
    assert!(!error.to_string().contains("localhost"), "{error}");

    // Trusted CA, but the key is not the pinned one (an intercepting proxy with an MDM CA).
    let dir = tempfile::tempdir().unwrap();
    let gw = device(dir.path(), TlsConfig { extra_roots_der: vec![pki.ca_der.clone()], pinned_spki_sha256: vec![[7u8; 32]] });
    let error = gw.login(&url, "worker1", PASSWORD, false).unwrap_err();
    assert_eq!(error.code(), "network_unavailable");
    assert!(error.to_string().contains("pinned"), "{error}");
    assert!(gw.session_user().unwrap().is_none());
}

/// An interceptor whose CA the phone trusts (installed by a user or an MDM)
/// presents its own certificate for the server and appends the real
/// server's public certificate to the chain: the pin on the real server's
/// key must not be satisfied by a certificate merely sent along.
#[test]
fn a_pinned_certificate_appended_by_an_interceptor_does_not_satisfy_the_pin() {
    let real = private_ca_and_leaf();
    let interceptor = private_ca_and_leaf();
    let server_dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(server_dir.path(), "127.0.0.1:0", default_policy());
    server.seed();
    let front = tls_front_with(
        vec![interceptor.leaf_der.clone(), real.leaf_der.clone(), interceptor.ca_der.clone()],
        &interceptor.leaf_key_der,
        server.addr,
    );
    let url = format!("https://localhost:{}", front.addr.port());
    let trusting_both = || TlsConfig { extra_roots_der: vec![real.ca_der.clone(), interceptor.ca_der.clone()], pinned_spki_sha256: vec![real.leaf_spki_sha256] };
    let dir = tempfile::tempdir().unwrap();
    let gw = device(dir.path(), trusting_both());
    let error = gw.login(&url, "worker1", PASSWORD, false).unwrap_err();
    assert_eq!(error.code(), "network_unavailable");
    assert!(error.to_string().contains("pinned"), "{error}");
    assert!(gw.session_user().unwrap().is_none());
    // The real server, with the same settings, is trusted.
    let real_front = tls_front(&real, server.addr);
    let dir = tempfile::tempdir().unwrap();
    device(dir.path(), trusting_both()).login(&format!("https://localhost:{}", real_front.addr.port()), "worker1", PASSWORD, false).expect("the real server");
}

/// The SubjectPublicKeyInfo of a DER certificate (a TBSCertificate walk).
fn spki_of(cert_der: &[u8]) -> Vec<u8> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version,
    // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ... } }
    fn element(der: &[u8]) -> (usize, usize) {
        // (header length, content length)
        let first = der[1] as usize;
        if first < 0x80 {
            (2, first)
        } else {
            let n = first & 0x7F;
            let mut len = 0usize;
            for byte in &der[2..2 + n] {
                len = (len << 8) | *byte as usize;
            }
            (2 + n, len)
        }
    }
    let (h, _) = element(cert_der);
    let tbs = &cert_der[h..];
    let (h, _) = element(tbs);
    let mut rest = &tbs[h..];
    for _ in 0..6 {
        let (h, len) = element(rest);
        rest = &rest[h + len..];
    }
    let (h, len) = element(rest);
    rest[..h + len].to_vec()
}
