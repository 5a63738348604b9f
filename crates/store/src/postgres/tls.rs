//! TLS to PostgreSQL, chosen by libpq's `sslmode` and `sslrootcert` URL parameters, as
//! operators of managed databases write them. `tokio-postgres` knows neither the verifying
//! modes nor `sslrootcert`, so both are taken out of the URL here and turned into a rustls
//! connector. Wharf always verifies the server's certificate and host name when it uses TLS:
//! `require`, `verify-ca` and `verify-full` all mean "TLS, verified", against `sslrootcert`
//! when given, else the system's roots.

use std::sync::Arc;

use crate::{Result, StoreError};

/// How to connect, once the TLS parameters are out of the URL.
pub(crate) enum Transport {
    Plain,
    Tls(Box<rustls::ClientConfig>),
}

/// Splits `sslmode` and `sslrootcert` off a `postgres://` URL.
pub(crate) fn split(url: &str) -> Result<(String, Transport)> {
    let bad = |m: String| StoreError::Database(format!("invalid PostgreSQL URL: {m}"));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root) = (None, None);
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .map_err(|_| bad(format!("{k} is not UTF-8")))?
            .into_owned();
        match k {
            "sslmode" => mode = Some(v),
            "sslrootcert" => root = Some(v),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let tls = match mode.as_deref() {
        None | Some("disable") | Some("allow") | Some("prefer") if root.is_none() => false,
        None | Some("disable") => {
            return Err(bad(
                "sslrootcert needs sslmode=require, verify-ca or verify-full".into(),
            ))
        }
        Some("allow") | Some("prefer") | Some("require") | Some("verify-ca")
        | Some("verify-full") => true,
        Some(other) => {
            return Err(bad(format!(
                "sslmode={other}: use disable, require, verify-ca or verify-full"
            )))
        }
    };
    if !tls {
        return Ok((url, Transport::Plain));
    }
    Ok((
        url,
        Transport::Tls(Box::new(client_config(root.as_deref())?)),
    ))
}

fn client_config(root: Option<&str>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let fail = |m: String| StoreError::Database(format!("PostgreSQL TLS: {m}"));
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(format!("cannot read sslrootcert {path}: {e}")))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| fail(format!("sslrootcert {path}: {e}")))?;
            if certs.is_empty() {
                return Err(fail(format!("sslrootcert {path} holds no certificate")));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| fail(format!("sslrootcert {path}: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(fail(
                    "no system root certificates; give sslrootcert=FILE".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url() {
        let (url, t) = split("postgres://u@h:5432/db").unwrap();
        assert_eq!(url, "postgres://u@h:5432/db");
        assert!(matches!(t, Transport::Plain));
        let (url, t) = split("postgres://u@h/db?sslmode=disable&connect_timeout=5").unwrap();
        assert_eq!(url, "postgres://u@h/db?connect_timeout=5");
        assert!(matches!(t, Transport::Plain));
        let (url, t) = split("postgres://u@h/db?sslmode=verify-full&application_name=w").unwrap();
        assert_eq!(url, "postgres://u@h/db?application_name=w");
        assert!(matches!(t, Transport::Tls(_)));
    }

    #[test]
    fn bad_tls_parameters_are_clear_errors() {
        let e = |u: &str| split(u).err().expect(u).to_string();
        assert!(e("postgres://h/db?sslmode=sometimes").contains("sslmode=sometimes"));
        assert!(e("postgres://h/db?sslrootcert=/x.pem").contains("needs sslmode"));
        assert!(
            e("postgres://h/db?sslmode=require&sslrootcert=/nonexistent.pem")
                .contains("cannot read sslrootcert /nonexistent.pem")
        );
    }
}
