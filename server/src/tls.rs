//! TLS as etcd's client flags set it up: `--cert-file` and `--key-file` for the server's
//! identity, `--trusted-ca-file` for the clients' CA, `--client-cert-auth` to refuse a client
//! without a certificate that CA signed.

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::Config;

/// The TLS configuration the flags ask for, `None` without `--cert-file`.
pub fn server_config(config: &Config) -> Result<Option<ServerTlsConfig>, String> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let (cert, key) = match (&config.cert_file, &config.key_file) {
        (None, None) => {
            if config.client_cert_auth || config.trusted_ca_file.is_some() {
                return Err(
                    "--client-cert-auth and --trusted-ca-file need --cert-file and --key-file"
                        .into(),
                );
            }
            return Ok(None);
        }
        (Some(c), Some(k)) => (read(c)?, read(k)?),
        _ => return Err("--cert-file and --key-file go together".into()),
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    match &config.trusted_ca_file {
        Some(ca) => {
            tls = tls
                .client_ca_root(Certificate::from_pem(read(ca)?))
                .client_auth_optional(!config.client_cert_auth);
        }
        None if config.client_cert_auth => {
            return Err("--client-cert-auth needs --trusted-ca-file".into());
        }
        None => {}
    }
    Ok(Some(tls))
}
