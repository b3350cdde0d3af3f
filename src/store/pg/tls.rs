//! TLS to the shared index: the options ragls takes out of `store.url` before
//! tokio-postgres parses the rest, and the rustls client configuration.
//!
//! tokio-postgres knows `sslmode` `disable`, `prefer` and `require` only. ragls also reads
//! libpq's `sslrootcert` (the CA certificates a server's certificate must chain to; also
//! `PGSSLROOTCERT`), and takes libpq's `sslmode=verify-ca` and `verify-full` as `require`:
//! whenever TLS is used, ragls verifies the server's certificate chain and host name, so
//! its `require` is libpq's `verify-full`. Without `sslrootcert` (or with
//! `sslrootcert=system`) the chain must lead to a public CA (Mozilla's list).

use crate::error::{Error, Result};
use percent_encoding::percent_decode_str;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;

/// `store.url` as tokio-postgres takes it, and the CA file it named.
#[derive(Debug, PartialEq)]
pub(super) struct TlsOptions {
    pub url: String,
    pub root_cert: Option<String>,
}

/// Takes `sslrootcert` out of a `postgres://` URL's query and rewrites `sslmode=verify-ca`
/// and `verify-full` as `require`; every other option is kept as it was written. A
/// key=value connection string is left as it is (tokio-postgres names what it refuses).
pub(super) fn split_tls_options(url: &str) -> TlsOptions {
    let unchanged = || TlsOptions {
        url: url.to_string(),
        root_cert: None,
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return unchanged();
    }
    let Some((base, query)) = url.split_once('?') else {
        return unchanged();
    };
    let mut kept: Vec<String> = Vec::new();
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (decoded(key).as_str(), decoded(value).as_str()) {
            ("sslrootcert", file) => root_cert = Some(file.to_string()),
            ("sslmode", "verify-ca" | "verify-full") => kept.push("sslmode=require".into()),
            _ => kept.push(pair.to_string()),
        }
    }
    let url = match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    TlsOptions { url, root_cert }
}

fn decoded(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The rustls client configuration for `root_cert` (else `PGSSLROOTCERT`, else the
/// public CAs): a file that cannot be read or holds no certificate is a configuration
/// error, said at once rather than as a failed handshake later.
pub(super) fn client_config(root_cert: Option<&str>) -> Result<rustls::ClientConfig> {
    let from_env = std::env::var("PGSSLROOTCERT")
        .ok()
        .filter(|f| !f.is_empty());
    let roots = match root_cert.map(str::to_string).or(from_env) {
        None => public_roots(),
        Some(file) if file == "system" => public_roots(),
        Some(file) => roots_from_file(&file)?,
    };
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("cannot set up TLS: {e}")))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

fn public_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

fn roots_from_file(file: &str) -> Result<rustls::RootCertStore> {
    let bad = |why: String| {
        Error::Config(format!(
            "sslrootcert {file} {why}: give the PEM file of the certificate authority that signed the shared index server's certificate (store.url's sslrootcert, or PGSSLROOTCERT)"
        ))
    };
    let pem = std::fs::read(file).map_err(|e| bad(format!("cannot be read ({e})")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("is not valid PEM ({e})")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("holds a certificate rustls cannot use ({e})")))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, Option<String>) {
        let o = split_tls_options(url);
        (o.url, o.root_cert)
    }

    #[test]
    fn sslrootcert_is_taken_out_of_the_url_and_the_other_options_stay_as_written() {
        assert_eq!(
            split("postgres://r@db:5432/ragls?sslmode=require&sslrootcert=%2Fetc%2Fca%20dir%2Frds.pem&application_name=x%20y"),
            (
                "postgres://r@db:5432/ragls?sslmode=require&application_name=x%20y".into(),
                Some("/etc/ca dir/rds.pem".into())
            )
        );
        assert_eq!(
            split("postgresql://r@db/ragls?sslrootcert=ca.pem"),
            ("postgresql://r@db/ragls".into(), Some("ca.pem".into()))
        );
    }

    #[test]
    fn libpq_verifying_modes_become_require_which_verifies_as_much() {
        for mode in ["verify-ca", "verify-full"] {
            assert_eq!(
                split(&format!(
                    "postgres://r@db/ragls?sslmode={mode}&connect_timeout=3"
                )),
                (
                    "postgres://r@db/ragls?sslmode=require&connect_timeout=3".into(),
                    None
                )
            );
        }
    }

    #[test]
    fn urls_without_these_options_and_key_value_strings_are_left_alone() {
        for url in [
            "postgres://r@db/ragls",
            "postgres://r@db/ragls?sslmode=disable",
            "host=db user=r sslrootcert=/ca.pem",
        ] {
            assert_eq!(split(url), (url.to_string(), None));
        }
    }

    #[test]
    fn a_root_certificate_file_that_is_missing_or_holds_none_is_a_one_line_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = client_config(Some(missing.to_str().unwrap()))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("cannot be read") && e.contains("sslrootcert"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Some(empty.to_str().unwrap()))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("holds no certificate"), "{e}");
    }

    #[test]
    fn a_ca_file_is_read_and_system_means_the_public_cas() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
        assert!(client_config(Some(ca)).is_ok());
        assert!(client_config(Some("system")).is_ok());
    }
}
