//! `registry tls ca create` and `registry tls cert create`: a CA and the agents'
//! certificates for TLS, written under Consul's file names in the current directory
//! (`<domain>-agent-ca.pem`, `<domain>-agent-ca-key.pem`, `<dc>-server-<domain>-<n>.pem`,
//! `<dc>-client-<domain>-<n>.pem`, `<dc>-cli-<domain>-<n>.pem` and their `-key.pem`), with
//! the names Consul puts in them (`server.<dc>.<domain>`, `client.<dc>.<domain>`,
//! `cli.client.<dc>.<domain>`, `localhost`, `127.0.0.1`). Keys are ECDSA P-256.

use super::ui::Ui;
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// `registry tls ...`.
#[derive(Subcommand, Debug)]
pub enum TlsCommand {
    /// Creates or manages a certificate authority.
    Ca {
        /// The CA operation.
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Creates or manages certificates.
    Cert {
        /// The certificate operation.
        #[command(subcommand)]
        command: CertCommand,
    },
}

/// `registry tls ca ...`.
#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Creates a new certificate authority.
    Create(CaCreateArgs),
}

/// `registry tls cert ...`.
#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Creates a new certificate signed by the CA.
    Create(CertCreateArgs),
}

/// Flags of `tls ca create`.
#[derive(Args, Debug, Clone)]
pub struct CaCreateArgs {
    /// Days the CA is valid for.
    #[arg(long, default_value_t = 1825)]
    pub days: u64,
    /// Domain of the agents (`consul`).
    #[arg(long, default_value = "consul")]
    pub domain: String,
    /// Common name of the CA (default: "Consul Agent CA <serial>").
    #[arg(long = "common-name")]
    pub common_name: Option<String>,
    /// Accepted as Consul's; name constraints are not added.
    #[arg(long = "name-constraint", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = super::go_bool)]
    pub name_constraint: Option<bool>,
    /// Accepted as Consul's; name constraints are not added.
    #[arg(long = "additional-name-constraint")]
    pub additional_name_constraint: Vec<String>,
}

/// Flags of `tls cert create`.
#[derive(Args, Debug, Clone)]
pub struct CertCreateArgs {
    /// A server certificate (`server.<dc>.<domain>`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = super::go_bool)]
    pub server: Option<bool>,
    /// A client agent certificate (`client.<dc>.<domain>`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = super::go_bool)]
    pub client: Option<bool>,
    /// A command-line client certificate (`cli.client.<dc>.<domain>`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = super::go_bool)]
    pub cli: Option<bool>,
    /// Datacenter.
    #[arg(long, default_value = "dc1")]
    pub dc: String,
    /// Domain.
    #[arg(long, default_value = "consul")]
    pub domain: String,
    /// Days the certificate is valid for.
    #[arg(long, default_value_t = 365)]
    pub days: u64,
    /// The CA certificate (default `<domain>-agent-ca.pem`).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The CA key (default `<domain>-agent-ca-key.pem`).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Another DNS name for the certificate (repeatable).
    #[arg(long = "additional-dnsname")]
    pub additional_dnsname: Vec<String>,
    /// Another IP address for the certificate (repeatable).
    #[arg(long = "additional-ipaddress")]
    pub additional_ipaddress: Vec<String>,
    /// Node name: adds `<node>.server.<dc>.<domain>` to a server certificate.
    #[arg(long)]
    pub node: Option<String>,
}

/// Runs a `tls` command in the current directory.
pub fn run(command: TlsCommand, ui: &mut Ui<'_>) -> i32 {
    let result = match command {
        TlsCommand::Ca {
            command: CaCommand::Create(a),
        } => ca_create(&a, Path::new("."), ui),
        TlsCommand::Cert {
            command: CertCommand::Create(a),
        } => cert_create(&a, Path::new("."), ui),
    };
    match result {
        Ok(()) => 0,
        Err(e) => ui.fail(&format!("==> {e}")),
    }
}

fn validity(params: &mut CertificateParams, days: u64) {
    let now = SystemTime::now();
    // A minute of slack for clocks that are slightly behind.
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + Duration::from_secs(days * 86_400)).into();
}

fn write_new(path: &Path, text: &str, ui: &mut Ui<'_>) -> Result<(), String> {
    if path.exists() {
        return Err(format!("{} already exists", path.display()));
    }
    std::fs::write(path, text).map_err(|e| format!("Failed to write {}: {e}", path.display()))?;
    ui.output(&format!(
        "==> Saved {}",
        path.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    Ok(())
}

/// `tls ca create` in `dir`.
pub fn ca_create(a: &CaCreateArgs, dir: &Path, ui: &mut Ui<'_>) -> Result<(), String> {
    let cert_path = dir.join(format!("{}-agent-ca.pem", a.domain));
    let key_path = dir.join(format!("{}-agent-ca-key.pem", a.domain));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(format!("{} already exists", p.display()));
        }
    }
    let key = KeyPair::generate().map_err(|e| format!("Error generating the CA key: {e}"))?;
    let mut params = CertificateParams::default();
    let serial: u64 = rand::random::<u64>() >> 1;
    params.serial_number = Some(serial.into());
    let cn = a
        .common_name
        .clone()
        .unwrap_or_else(|| format!("Consul Agent CA {serial}"));
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "HashiCorp Inc.");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, a.days);
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("Error generating the CA: {e}"))?;
    write_new(&cert_path, &cert.pem(), ui)?;
    write_new(&key_path, &key.serialize_pem(), ui)?;
    Ok(())
}

/// `tls cert create` in `dir`.
pub fn cert_create(a: &CertCreateArgs, dir: &Path, ui: &mut Ui<'_>) -> Result<(), String> {
    let kinds = [
        (a.server.unwrap_or(false), "server"),
        (a.client.unwrap_or(false), "client"),
        (a.cli.unwrap_or(false), "cli"),
    ];
    let chosen: Vec<&str> = kinds
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, k)| *k)
        .collect();
    let kind = match chosen.as_slice() {
        [one] => *one,
        _ => return Err("Please provide either -server, -client, or -cli".to_string()),
    };
    if a.node.is_some() && kind != "server" {
        return Err("-node requires -server".to_string());
    }
    let ca_path = dir.join(
        a.ca.clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}-agent-ca.pem", a.domain))),
    );
    let ca_key_path = dir.join(
        a.key
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}-agent-ca-key.pem", a.domain))),
    );
    let ca_pem = std::fs::read_to_string(&ca_path)
        .map_err(|e| format!("Error reading CA: {}: {e}", ca_path.display()))?;
    let ca_key_pem = std::fs::read_to_string(&ca_key_path)
        .map_err(|e| format!("Error reading CA key: {}: {e}", ca_key_path.display()))?;
    let ca_key =
        KeyPair::from_pem(&ca_key_pem).map_err(|e| format!("Error reading CA key: {e}"))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| format!("Error reading CA: {e}"))?;

    let (dc, domain) = (a.dc.as_str(), a.domain.as_str());
    let (name, mut dns) = match kind {
        "server" => {
            let name = format!("server.{dc}.{domain}");
            let mut dns = vec![name.clone(), "localhost".to_string()];
            if let Some(node) = &a.node {
                dns.insert(1, format!("{node}.server.{dc}.{domain}"));
            }
            ui.output(
                "==> WARNING: Server Certificates grants authority to become a\n    server and access all state in the cluster including root keys\n    and all ACL tokens. Do not distribute them to production hosts\n    that are not server nodes. Store them as securely as CA keys.",
            );
            (name, dns)
        }
        "client" => {
            let name = format!("client.{dc}.{domain}");
            (name.clone(), vec![name, "localhost".to_string()])
        }
        _ => {
            let name = format!("cli.client.{dc}.{domain}");
            (name.clone(), vec![name, "localhost".to_string()])
        }
    };
    for d in &a.additional_dnsname {
        if !dns.contains(d) {
            dns.push(d.clone());
        }
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    if kind != "cli" {
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    for ip in &a.additional_ipaddress {
        let parsed: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not a valid IP address"))?;
        if !ips.contains(&parsed) {
            ips.push(parsed);
        }
    }
    ui.output(&format!(
        "==> Using {} and {}",
        ca_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        ca_key_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));

    let key = KeyPair::generate().map_err(|e| format!("Error generating the key: {e}"))?;
    let mut params = CertificateParams::default();
    let serial: u64 = rand::random::<u64>() >> 1;
    params.serial_number = Some(serial.into());
    params.distinguished_name.push(DnType::CommonName, name);
    for d in &dns {
        let san = d
            .clone()
            .try_into()
            .map_err(|e| format!("invalid DNS name {d:?}: {e}"))?;
        params.subject_alt_names.push(SanType::DnsName(san));
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, a.days);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| format!("Error signing the certificate: {e}"))?;

    let prefix = format!("{dc}-{kind}-{domain}");
    let mut n = 0;
    while dir.join(format!("{prefix}-{n}.pem")).exists()
        || dir.join(format!("{prefix}-{n}-key.pem")).exists()
    {
        n += 1;
    }
    write_new(&dir.join(format!("{prefix}-{n}.pem")), &cert.pem(), ui)?;
    write_new(
        &dir.join(format!("{prefix}-{n}-key.pem")),
        &key.serialize_pem(),
        ui,
    )?;
    Ok(())
}
