//! HTTPS for `wharf serve`: rustls from PEM certificate and key files, reloaded when the files
//! change (no restart to renew a certificate), and optional client certificates whose
//! subject common name becomes the caller's identity (mTLS).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;

/// The `[tls]` table of the configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to; enables mTLS.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: `optional` (default; callers without a certificate use other
    /// credentials) or `required`.
    pub client_auth: Option<String>,
    /// How often the certificate and key files are checked for changes.
    pub reload_check_secs: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_required: bool,
    pub reload_every: Duration,
}

impl TlsSettings {
    pub fn from_file(
        t: &FileTls,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<TlsSettings>, String> {
        let (cert, key) = match (cert.or(t.cert.clone()), key.or(t.key.clone())) {
            (Some(c), Some(k)) => (c, k),
            (None, None) if t.client_ca.is_none() => return Ok(None),
            _ => return Err("TLS needs both a certificate and a key (tls.cert and tls.key, or --tls-cert and --tls-key)".into()),
        };
        let client_required = match t.client_auth.as_deref() {
            None | Some("optional") => false,
            Some("required") => true,
            Some(other) => {
                return Err(format!(
                    "tls.client_auth must be optional or required, not {other:?}"
                ))
            }
        };
        if client_required && t.client_ca.is_none() {
            return Err("tls.client_auth = \"required\" needs tls.client_ca".into());
        }
        Ok(Some(TlsSettings {
            cert,
            key,
            client_ca: t.client_ca.clone(),
            client_required,
            reload_every: Duration::from_secs(t.reload_check_secs.unwrap_or(10).max(1)),
        }))
    }
}

/// Serves the current certificate; the reload task swaps it.
#[derive(Debug)]
struct Reloadable(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().expect("lock").clone())
    }
}

fn load_key(s: &TlsSettings, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&s.cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", s.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in the file",
            s.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&s.key)
        .map_err(|e| format!("TLS key {}: {e}", s.key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("TLS key {}: {e}", s.key.display()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| {
        format!(
            "TLS key {} does not match certificate {}: {e}",
            s.key.display(),
            s.cert.display()
        )
    })?;
    Ok(ck)
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The rustls configuration, and a task that reloads the certificate when its files change.
pub fn acceptor(s: &TlsSettings) -> Result<tokio_rustls::TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = Arc::new(Reloadable(RwLock::new(Arc::new(load_key(s, &provider)?))));
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &s.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("tls.client_ca {}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("tls.client_ca {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("tls.client_ca {}: {e}", ca.display()))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let v = if s.client_required {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| format!("tls.client_ca: {e}"))?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let settings = s.clone();
    tokio::spawn(async move {
        let mut seen = (modified(&settings.cert), modified(&settings.key));
        loop {
            tokio::time::sleep(settings.reload_every).await;
            let now = (modified(&settings.cert), modified(&settings.key));
            if now == seen {
                continue;
            }
            // A renewal may write the two files one after the other: a mismatched pair is
            // kept out until both have landed.
            match load_key(&settings, &provider) {
                Ok(k) => {
                    *resolver.0.write().expect("lock") = Arc::new(k);
                    seen = now;
                    tracing::info!(cert = %settings.cert.display(), "reloaded the TLS certificate");
                }
                Err(e) => tracing::warn!("keeping the current TLS certificate: {e}"),
            }
        }
    });
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The subject common name of a certificate.
pub(crate) fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::Decode;
    let c = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    for rdn in c.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == x509_cert::der::oid::db::rfc4519::CN {
                let v = &atv.value;
                return x509_cert::der::asn1::Utf8StringRef::try_from(v)
                    .map(|s| s.as_str().to_string())
                    .or_else(|_| {
                        x509_cert::der::asn1::PrintableStringRef::try_from(v)
                            .map(|s| s.as_str().to_string())
                    })
                    .ok();
            }
        }
    }
    None
}
