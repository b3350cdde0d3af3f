//! TLS to the shared index: the options ragls takes out of `store.url` before
//! tokio-postgres parses the rest, and the rustls client configuration.
//!
//! tokio-postgres knows `sslmode` `disable`, `prefer` and `require` only. ragls also reads
//! libpq's `sslrootcert` (the CA certificates a server's certificate must chain to; also
//! `PGSSLROOTCERT`), `sslcert` and `sslkey` (a client certificate, for servers that ask
//! for one; also `PGSSLCERT`, `PGSSLKEY`), and takes libpq's `sslmode=verify-ca` and
//! `verify-full` as `require`:
//! whenever TLS is used, ragls verifies the server's certificate chain and host name, so
//! its `require` is libpq's `verify-full`. Without `sslrootcert` (or with
//! `sslrootcert=system`) the chain must lead to a public CA (Mozilla's list).

use crate::error::{Error, Result};
use percent_encoding::percent_decode_str;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// `store.url` as tokio-postgres takes it, and the files it named.
#[derive(Debug, Default, PartialEq)]
pub(super) struct TlsOptions {
    pub url: String,
    /// `sslrootcert`: the CA certificates the server's must chain to.
    pub root_cert: Option<String>,
    /// `sslcert` and `sslkey`: the client's certificate (chain) and its private key.
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

/// Takes `sslrootcert`, `sslcert` and `sslkey` out of a `postgres://` URL's query and
/// rewrites `sslmode=verify-ca` and `verify-full` as `require`; every other option is
/// kept as it was written. A key=value connection string is left as it is
/// (tokio-postgres names what it refuses).
pub(super) fn split_tls_options(url: &str) -> TlsOptions {
    let unchanged = || TlsOptions {
        url: url.to_string(),
        ..TlsOptions::default()
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return unchanged();
    }
    let Some((base, query)) = url.split_once('?') else {
        return unchanged();
    };
    let mut kept: Vec<String> = Vec::new();
    let mut options = TlsOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (decoded(key).as_str(), decoded(value)) {
            ("sslrootcert", file) => options.root_cert = Some(file),
            ("sslcert", file) => options.client_cert = Some(file),
            ("sslkey", file) => options.client_key = Some(file),
            ("sslmode", mode) if mode == "verify-ca" || mode == "verify-full" => {
                kept.push("sslmode=require".into())
            }
            _ => kept.push(pair.to_string()),
        }
    }
    options.url = match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    options
}

fn decoded(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The rustls client configuration for `options` (each file else its libpq environment
/// variable; the roots else the public CAs): a file that cannot be read or holds no
/// certificate (or key) is a configuration error, said at once rather than as a failed
/// handshake later.
pub(super) fn client_config(options: &TlsOptions) -> Result<rustls::ClientConfig> {
    let or_env = |given: &Option<String>, var: &str| {
        given
            .clone()
            .or_else(|| std::env::var(var).ok().filter(|f| !f.is_empty()))
    };
    let roots = match or_env(&options.root_cert, "PGSSLROOTCERT") {
        None => public_roots(),
        Some(file) if file == "system" => public_roots(),
        Some(file) => roots_from_file(&file)?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Other(format!("cannot set up TLS: {e}")))?
    .with_root_certificates(roots);
    match (
        or_env(&options.client_cert, "PGSSLCERT"),
        or_env(&options.client_key, "PGSSLKEY"),
    ) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certificates_in(&cert, "sslcert", "the client certificate")?;
            let bad_key = |why: String| {
                Error::Config(format!(
                    "sslkey {key} {why}: give the PEM file of the client certificate's private key (store.url's sslkey, or PGSSLKEY)"
                ))
            };
            let der = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| bad_key(format!("cannot be read as a PEM private key ({e})")))?;
            builder
                .with_client_auth_cert(chain, der)
                .map_err(|e| bad_key(format!("does not go with sslcert {cert} ({e})")))
        }
        (Some(_), None) | (None, Some(_)) => Err(Error::Config(
            "a client certificate needs both sslcert and sslkey (in store.url, or PGSSLCERT and PGSSLKEY)".into(),
        )),
    }
}

fn public_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

fn roots_from_file(file: &str) -> Result<rustls::RootCertStore> {
    let what = "the certificate authority that signed the shared index server's certificate";
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates_in(file, "sslrootcert", what)? {
        roots.add(cert).map_err(|e| {
            Error::Config(format!(
                "sslrootcert {file} holds a certificate rustls cannot use ({e})"
            ))
        })?;
    }
    Ok(roots)
}

/// The PEM certificates in `file` (at least one), named in messages as the option
/// `option` that gives `what`.
fn certificates_in(file: &str, option: &str, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let env = format!("PG{}", option.to_uppercase());
    let bad = |why: String| {
        Error::Config(format!(
            "{option} {file} {why}: give the PEM file of {what} (store.url's {option}, or {env})"
        ))
    };
    let pem = std::fs::read(file).map_err(|e| bad(format!("cannot be read ({e})")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("is not valid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, Option<String>) {
        let o = split_tls_options(url);
        (o.url, o.root_cert)
    }

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn roots(file: &str) -> TlsOptions {
        TlsOptions {
            root_cert: Some(file.into()),
            ..TlsOptions::default()
        }
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
        let e = client_config(&roots(missing.to_str().unwrap()))
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("cannot be read") && e.contains("sslrootcert"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(&roots(empty.to_str().unwrap()))
            .expect_err("refused")
            .to_string();
        assert!(e.contains("holds no certificate"), "{e}");
    }

    #[test]
    fn a_ca_file_is_read_and_system_means_the_public_cas() {
        assert!(client_config(&roots(&fixture("ca.pem"))).is_ok());
        assert!(client_config(&roots("system")).is_ok());
    }

    #[test]
    fn a_client_certificate_is_taken_with_its_key_and_not_without() {
        let o = split_tls_options(&format!(
            "postgres://w@db/ragls?sslcert={}&sslkey={}&sslmode=require",
            fixture("client.pem"),
            fixture("client.key")
        ));
        assert_eq!(o.url, "postgres://w@db/ragls?sslmode=require");
        assert!(client_config(&o).is_ok());
        let half = TlsOptions {
            client_cert: o.client_cert.clone(),
            ..TlsOptions::default()
        };
        let e = client_config(&half).expect_err("refused").to_string();
        assert!(e.contains("both sslcert and sslkey"), "{e}");
        // A key that is not the certificate's.
        let wrong = TlsOptions {
            client_key: Some(fixture("server.key")),
            ..o
        };
        let e = client_config(&wrong).expect_err("refused").to_string();
        assert!(e.contains("does not go with sslcert"), "{e}");
    }
}
