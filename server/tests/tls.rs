//! TLS with client certificate verification, as etcd's `--client-cert-auth`: a client with a
//! certificate the trusted CA signed is served; one without a certificate, or with one another
//! CA signed, is refused. The certificates are made here.

mod support;

use folio_server::pb::etcdserverpb::kv_client::KvClient;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use support::{get, put};
use tonic::transport::{self, Channel, ClientTlsConfig, Identity};

/// A certificate authority.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ca {
        cert: params.self_signed(&key).unwrap(),
        key,
    }
}

/// A certificate and key (PEM) for `names`, signed by `ca`, for `usage`.
fn leaf(ca: &Ca, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn client(
    url: &str,
    ca: &Ca,
    identity: Option<&(String, String)>,
) -> Result<KvClient<Channel>, transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(transport::Certificate::from_pem(ca.cert.pem()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(KvClient::new(channel))
}

/// Only a client whose certificate the trusted CA signed is served.
#[tokio::test]
async fn client_cert_auth_serves_only_clients_the_trusted_ca_signed() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = ca("trusted ca");
    let other = ca("other ca");
    let server_pair = leaf(
        &trusted,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let good = leaf(
        &trusted,
        &["good client"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let bad = leaf(&other, &["bad client"], ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let cert_file = write("server.crt", &server_pair.0);
    let key_file = write("server.key", &server_pair.1);
    let ca_file = write("ca.crt", &trusted.cert.pem());
    let mut server = support::start_with(|c| {
        c.listen_client_urls = vec!["https://127.0.0.1:0".into()];
        c.cert_file = Some(cert_file);
        c.key_file = Some(key_file);
        c.trusted_ca_file = Some(ca_file);
        c.client_cert_auth = true;
    })
    .await;
    let url = server.url.replace("http://", "https://");

    let mut kv = client(&url, &trusted, Some(&good)).await.unwrap();
    kv.put(put("tls", "ok")).await.unwrap();
    assert_eq!(
        kv.range(get("tls")).await.unwrap().into_inner().kvs[0].value,
        b"ok"
    );

    let refused = |r: Result<KvClient<Channel>, transport::Error>| async move {
        match r {
            Err(_) => true,
            Ok(mut kv) => kv.range(get("tls")).await.is_err(),
        }
    };
    assert!(
        refused(client(&url, &trusted, None).await).await,
        "a client without a certificate"
    );
    assert!(
        refused(client(&url, &trusted, Some(&bad)).await).await,
        "a client another CA signed"
    );
    // Plain text on the TLS port is refused too.
    let plain = Channel::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await;
    assert!(
        refused(plain.map(KvClient::new)).await,
        "a client without TLS"
    );

    kv.put(put("tls", "still")).await.unwrap();
    server.stop().await;
}
