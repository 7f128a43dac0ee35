//! Certificates for the tests of the encrypted control channel: a CA, control's server
//! certificate (for `fusebox-control`, `localhost` and 127.0.0.1), a client certificate for
//! Envoy and the CLI, and a client certificate from another CA that control must refuse.
//! Written as PEM files into a test's work folder.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA both sides trust.
    pub ca: PathBuf,
    pub server: CertFiles,
    pub client: CertFiles,
    /// Signed by a CA control does not trust.
    pub rogue: CertFiles,
}

fn ca(name: &str) -> Result<(Issuer<'static, KeyPair>, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key)?.pem();
    Ok((Issuer::new(params, key), pem))
}

fn leaf(dir: &Path, name: &str, sans: &[&str], issuer: &Issuer<'_, KeyPair>) -> Result<CertFiles, String> {
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).map_err(|e| e.to_string())?;
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, issuer).map_err(|e| e.to_string())?;
    let files = CertFiles { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) };
    std::fs::write(&files.cert, cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&files.key, key.serialize_pem()).map_err(|e| e.to_string())?;
    Ok(files)
}

impl Pki {
    /// New keys and certificates in `dir`.
    pub fn create(dir: &Path) -> Result<Pki, String> {
        let (issuer, ca_pem) = ca("fusebox test CA").map_err(|e| e.to_string())?;
        let (rogue_issuer, _) = ca("someone else's CA").map_err(|e| e.to_string())?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_pem).map_err(|e| e.to_string())?;
        Ok(Pki {
            ca,
            server: leaf(dir, "fusebox-control", &["fusebox-control", "localhost", "127.0.0.1"], &issuer)?,
            client: leaf(dir, "gateway-a", &["gateway-a"], &issuer)?,
            rogue: leaf(dir, "rogue", &["gateway-a"], &rogue_issuer)?,
        })
    }

    /// `fusebox-control serve` arguments for TLS with client certificates required.
    pub fn serve_args(&self) -> Vec<String> {
        let p = |p: &Path| p.display().to_string();
        ["--tls-cert", &p(&self.server.cert), "--tls-key", &p(&self.server.key), "--tls-client-ca", &p(&self.ca)]
            .map(str::to_string)
            .to_vec()
    }

    /// The placeholders of `envoy/snippets/control-cluster-mtls.yaml`, but the port.
    pub fn envoy_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CONTROL_CA", self.ca.display().to_string()),
            ("CONTROL_CLIENT_CERT", self.client.cert.display().to_string()),
            ("CONTROL_CLIENT_KEY", self.client.key.display().to_string()),
        ]
    }
}
