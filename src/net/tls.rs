//! TLS settings built from the options: trusted roots and the insecure switch.

use ureq::tls::{parse_pem, Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

use crate::error::Error;

/// The TLS options (`ca_file`, `ca_pem`, `tls_bundled_roots`,
/// `insecure_skip_tls_verify`).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub ca_file: Option<String>,
    pub ca_pem: Option<String>,
    pub bundled_roots: bool,
    pub insecure_skip_verify: bool,
}

/// Builds ureq's TLS config. `ca_file` and `ca_pem` add trusted roots to the
/// bundled Mozilla ones (a corporate proxy's CA, a private gateway's CA);
/// with `tls_bundled_roots: false` they replace them, as curl's `--cacert`
/// does. Both may be given together.
pub fn tls_config(o: &TlsOptions) -> Result<TlsConfig, Error> {
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    if let Some(path) = &o.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Error::invalid(format!("option \"ca_file\": cannot read {path}: {e}")))?;
        certs.extend(certs_from_pem(&pem, "ca_file")?);
    }
    if let Some(pem) = &o.ca_pem {
        certs.extend(certs_from_pem(pem.as_bytes(), "ca_pem")?);
    }
    let roots = if certs.is_empty() && o.bundled_roots {
        RootCerts::WebPki
    } else {
        let mut all: Vec<Certificate<'static>> = Vec::new();
        if o.bundled_roots {
            all.extend(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS
                    .iter()
                    .map(|c| Certificate::from_der(c.as_ref())),
            );
        }
        all.extend(certs);
        RootCerts::new_with_certs(&all)
    };
    Ok(TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .disable_verification(o.insecure_skip_verify)
        .build())
}

fn certs_from_pem(pem: &[u8], key: &str) -> Result<Vec<Certificate<'static>>, Error> {
    let mut out = Vec::new();
    for item in parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => return Err(Error::invalid(format!("option \"{key}\": bad PEM: {e}"))),
        }
    }
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "option \"{key}\": no CERTIFICATE found in the PEM data"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options' defaults: bundled roots on.
    fn on() -> TlsOptions {
        TlsOptions {
            bundled_roots: true,
            ..TlsOptions::default()
        }
    }

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBeTCCAR+gAwIBAgIUVpoFjpP5Ym0LQ1+3mAj9ZCOqQXowCgYIKoZIzj0EAwIw\nEjEQMA4GA1UEAwwHdGVzdC1jYTAeFw0yNjAxMDEwMDAwMDBaFw0zNjAxMDEwMDAw\nMDBaMBIxEDAOBgNVBAMMB3Rlc3QtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\nAAQ=\n-----END CERTIFICATE-----\n";

    fn root_count(o: &TlsOptions) -> usize {
        match tls_config(o).unwrap().root_certs() {
            RootCerts::Specific(v) => v.len(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn custom_cas_add_to_the_bundled_roots_unless_told_otherwise() {
        let bundled = webpki_root_certs::TLS_SERVER_ROOT_CERTS.len();
        assert!(bundled > 100);
        let o = TlsOptions {
            ca_pem: Some(CA.into()),
            ..on()
        };
        assert_eq!(root_count(&o), bundled + 1);
        let o = TlsOptions {
            ca_pem: Some(CA.into()),
            bundled_roots: false,
            ..on()
        };
        assert_eq!(root_count(&o), 1);
        assert!(matches!(
            tls_config(&on()).unwrap().root_certs(),
            RootCerts::WebPki
        ));
    }

    #[test]
    fn empty_or_missing_ca_is_a_clear_error() {
        let o = TlsOptions {
            ca_pem: Some("not a pem".into()),
            ..on()
        };
        let e = tls_config(&o).unwrap_err();
        assert!(e.message.contains("ca_pem"), "{}", e.message);
        let o = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..on()
        };
        let e = tls_config(&o).unwrap_err();
        assert!(e.message.contains("/nonexistent/ca.pem"), "{}", e.message);
    }
}
