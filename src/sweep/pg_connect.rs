//! Connecting to PostgreSQL the way libpq users expect: a `postgresql://` URL without a
//! password (the URL is written to `resolved.toml`), the password from `PGPASSWORD` or the
//! password file (`PGPASSFILE`, else `~/.pgpass`), and `sslmode` with libpq's meanings:
//! `prefer` (the default) and `require` encrypt without checking the server's certificate
//! unless `sslrootcert` names a CA, `verify-full` checks it and the host name. TLS is rustls.

use postgres::config::{Host, SslMode};
use postgres::Client;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long a first connection may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `sslmode` may be, as libpq spells it.
const SSL_MODES: &str = "disable, prefer, require, verify-full";

/// A parsed storage URL, ready to connect (again, after a lost connection).
#[derive(Debug, Clone)]
pub struct Target {
    config: postgres::Config,
    /// `verify-full`: the server's certificate must chain to these roots and name the host.
    verify: Option<PathBuf>,
    /// `sslrootcert` with `require`: the chain is checked, the host name is not (libpq).
    root_cert: Option<PathBuf>,
}

impl Target {
    /// Reads a `postgresql://` URL; the error says what is wrong and what is allowed.
    pub fn parse(url: &str) -> Result<Self, String> {
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            return Err(format!(
                "'{}' is not a PostgreSQL URL: write postgresql://user@host:port/database",
                super::storage::without_password(url)
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut passed = Vec::new();
        let (mut mode, mut root_cert) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", m)) => mode = Some(m.to_string()),
                Some(("sslrootcert", path)) => root_cert = Some(PathBuf::from(path)),
                _ => passed.push(pair),
            }
        }
        let rebuilt = if passed.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", passed.join("&"))
        };
        let mut config = postgres::Config::from_str(&rebuilt).map_err(|e| {
            format!(
                "cannot read '{}' as a PostgreSQL URL ({e}); write \
                 postgresql://user@host:port/database[?sslmode=require]",
                super::storage::without_password(url)
            )
        })?;
        if config.get_password().is_some() {
            return Err(
                "holds a password, and the URL is written to resolved.toml and logs: remove it \
                 and set PGPASSWORD or a line in ~/.pgpass (libpq's conventions) instead"
                    .into(),
            );
        }
        if config.get_hosts().is_empty() {
            return Err("names no host: write postgresql://user@host:port/database".into());
        }
        if config.get_user().is_none() {
            let user = std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .map_err(|_| "names no user: write postgresql://user@host/database".to_string())?;
            config.user(&user);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // The server's notices ("relation already exists, skipping") are not the user's news.
        config.notice_callback(|notice| tracing::debug!("PostgreSQL: {}", notice.message()));
        let verify = match mode.as_deref() {
            None | Some("prefer") => None,
            Some("disable") => {
                config.ssl_mode(SslMode::Disable);
                None
            }
            Some("require") => {
                config.ssl_mode(SslMode::Require);
                None
            }
            Some("verify-full") => {
                config.ssl_mode(SslMode::Require);
                Some(root_cert.clone().unwrap_or_else(default_root_cert))
            }
            Some(other) => {
                return Err(format!(
                    "sslmode={other} is not supported; use one of {SSL_MODES}"
                ))
            }
        };
        Ok(Self {
            config,
            verify,
            root_cert,
        })
    }

    /// Connects, with the password from the environment or the password file.
    pub fn connect(&self) -> anyhow::Result<Client> {
        let mut config = self.config.clone();
        if let Some(password) = password(&config) {
            config.password(password);
        }
        Ok(config.connect(self.tls()?)?)
    }

    fn tls(&self) -> anyhow::Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let config = match (&self.verify, &self.root_cert) {
            (Some(roots), _) => builder
                .with_root_certificates(roots_from(roots)?)
                .with_no_client_auth(),
            (None, Some(roots)) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly::new(
                    roots_from(roots)?,
                    provider,
                )?))
                .with_no_client_auth(),
            (None, None) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                .with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

fn default_root_cert() -> PathBuf {
    home().join(".postgresql").join("root.crt")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn roots_from(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("sslrootcert '{}': {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| anyhow::anyhow!("sslrootcert '{}': {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("sslrootcert '{}': {e}", path.display()))?;
    }
    Ok(roots)
}

/// The password libpq would use: `PGPASSWORD`, else the first matching line of the password
/// file.
fn password(config: &postgres::Config) -> Option<String> {
    if let Ok(p) = std::env::var("PGPASSWORD") {
        return Some(p);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".pgpass"));
    let text = std::fs::read_to_string(&file).ok()?;
    if too_open(&file) {
        tracing::warn!(
            file = %file.display(),
            "the password file has group or world access and is ignored (as libpq does); \
             chmod 600 it"
        );
        return None;
    }
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default();
    let db = config.get_dbname().unwrap_or(user);
    pgpass_lookup(&text, [&host, &port, db, user])
}

#[cfg(unix)]
fn too_open(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn too_open(_: &Path) -> bool {
    false
}

/// The password of the first `host:port:database:user:password` line matching `want`,
/// `*` matching anything, `\:` and `\\` escaped.
pub fn pgpass_lookup(text: &str, want: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .find_map(|line| {
            let fields = split_escaped(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(want)
                .all(|(f, w)| f == "*" || f == w);
            matches.then(|| fields[4].clone())
        })
}

fn split_escaped(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// libpq's `sslmode=require` without a root certificate: encrypted, the server unchecked.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// libpq's `sslmode=require` with `sslrootcert`: the chain must lead to the given roots;
/// the host name is not checked (that is `verify-full`).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ChainOnly {
    fn new(
        roots: RootCertStore,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> anyhow::Result<Self> {
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()?;
        Ok(Self { inner })
    }
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_matches_like_libpq() {
        let text = "# comment\n\
                    other:5432:*:ana:wrong\n\
                    db.lab:5432:runner_studies:ana:s3cr\\:et\n\
                    *:*:*:*:fallback\n";
        let want = ["db.lab", "5432", "runner_studies", "ana"];
        assert_eq!(pgpass_lookup(text, want).as_deref(), Some("s3cr:et"));
        let elsewhere = ["x", "1", "y", "z"];
        assert_eq!(pgpass_lookup(text, elsewhere).as_deref(), Some("fallback"));
        assert_eq!(pgpass_lookup("a:b:c:d\n", elsewhere), None, "four fields");
    }

    #[test]
    fn urls_are_read_and_refused_like_libpq() {
        assert!(Target::parse("postgresql://ana@db.lab:5432/studies?sslmode=require").is_ok());
        assert!(Target::parse("postgres://ana@db.lab/studies").is_ok());
        let password = Target::parse("postgresql://ana:s3cret@db.lab/x").unwrap_err();
        assert!(
            password.contains("PGPASSWORD") && !password.contains("s3cret"),
            "{password}"
        );
        let mode = Target::parse("postgresql://ana@db.lab/x?sslmode=verify-ca").unwrap_err();
        assert!(mode.contains(SSL_MODES), "{mode}");
        let scheme = Target::parse("mysql://ana@db.lab/x").unwrap_err();
        assert!(scheme.contains("postgresql://user@host"), "{scheme}");
        let bad = Target::parse("postgresql://ana@db.lab:notaport/x").unwrap_err();
        assert!(bad.contains("cannot read"), "{bad}");
    }
}
