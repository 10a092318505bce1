//! The files other tools read to reach the emulators: the endpoints JSON and a ready
//! socbridge config with its env file. API keys go only into files created with mode 0600.
//! With the Symantec emulator on, its production CA is written as `sim-ca.pem` beside the
//! config, and each tenant's modern `.p12` (base64) and passphrase go into the env file.

use crate::Endpoints;
use std::io::Write as _;
use std::path::Path;

/// Writes `text` to `path`, readable by the owner only (on Unix), even if the file existed
/// with wider permissions.
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        opts.mode(0o600);
        let mut f = opts.open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut f = opts.open(path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The environment variable holding a tenant's Secure Endpoint API key:
/// `ACME_SECURE_ENDPOINT_API_KEY` for `acme`, `UMBRELLA_CORP_...` for `umbrella-corp`.
pub(crate) fn api_key_env(tenant: &str) -> String {
    format!(
        "{}_SECURE_ENDPOINT_API_KEY",
        tenant.to_uppercase().replace('-', "_")
    )
}

/// The name of the env file written beside the config.
const ENV_FILE: &str = "socbridge.env";

/// The Symantec production CA, written beside the config.
pub(crate) const CA_FILE: &str = "sim-ca.pem";

/// The env variables of a tenant's SWS certificate: `ACME_SYMANTEC_MSS_P12` and
/// `ACME_SYMANTEC_MSS_P12_PASSPHRASE` for `acme`.
pub(crate) fn symantec_envs(tenant: &str) -> (String, String) {
    let prefix = format!(
        "{}_SYMANTEC_MSS_P12",
        tenant.to_uppercase().replace('-', "_")
    );
    (prefix.clone(), format!("{prefix}_PASSPHRASE"))
}

/// A tenant's `symantec-mss` source; `active: false` writes it commented out, so a
/// socbridge that has no such source kind yet still loads the config.
fn symantec_source(url: &str, tenant: &str, active: bool) -> String {
    let (p12, pass) = symantec_envs(tenant);
    let lines = [
        "[[tenants.sources]]".to_string(),
        "name = \"symantec-mss\"".to_string(),
        "kind = \"symantec_mss\"".to_string(),
        format!("base_url = {}", toml_str(url)),
        format!("ca_file = {}", toml_str(CA_FILE)),
        format!("p12_env = {}", toml_str(&p12)),
        format!("p12_passphrase_env = {}", toml_str(&pass)),
    ];
    let mut out = String::from("\n");
    for l in lines {
        if !active {
            out.push_str("# ");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Env variables of the ServiceNow integration user's secrets (one instance for all tenants,
/// so no tenant prefix).
pub(crate) const SERVICENOW_PASSWORD_ENV: &str = "SERVICENOW_PASSWORD";
pub(crate) const SERVICENOW_CLIENT_SECRET_ENV: &str = "SERVICENOW_CLIENT_SECRET";
pub(crate) const SERVICENOW_WEBHOOK_SECRET_ENV: &str = "SERVICENOW_WEBHOOK_SECRET";

/// The `[servicenow]` section: where the instance is, who socbridge is there, and the names
/// of the env variables holding its secrets. `active: false` writes it commented out, so a
/// socbridge whose config has no such section yet (unknown keys are errors) still loads.
fn servicenow_section(sn: &crate::ServiceNowEndpoints, active: bool) -> String {
    let lines = [
        "[servicenow]".to_string(),
        format!("instance_url = {}", toml_str(&sn.instance_url)),
        format!("username = {}", toml_str(&sn.integration.user_name)),
        format!("password_env = {}", toml_str(SERVICENOW_PASSWORD_ENV)),
        format!("client_id = {}", toml_str(&sn.oauth.client_id)),
        format!(
            "client_secret_env = {}",
            toml_str(SERVICENOW_CLIENT_SECRET_ENV)
        ),
        format!(
            "webhook_secret_env = {}",
            toml_str(SERVICENOW_WEBHOOK_SECRET_ENV)
        ),
        format!("webhook_header = {}", toml_str(&sn.webhook_header)),
    ];
    let mut out = String::from(
        "\n# ServiceNow: one instance shared by every tenant (secrets in the env file).\n",
    );
    for l in lines {
        if !active {
            out.push_str("# ");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// The config text (no secrets) and the env file text (the secrets).
pub(crate) fn render_config(ep: &Endpoints, opts: &crate::ConfigOptions) -> (String, String) {
    let mut toml = String::from(
        "# Written by `socbridge sim --write-config`: points socbridge at the emulators.\n",
    );
    toml.push_str(&format!("env_file = {}\n", toml_str(ENV_FILE)));
    let mut env = String::from(
        "# Written by `socbridge sim --write-config`: API keys of the emulated tenants.\n",
    );
    for t in &ep.tenants {
        toml.push_str(&format!("\n[[tenants]]\nname = {}\n", toml_str(&t.name)));
        if let Some(se) = &t.secure_endpoint {
            let var = api_key_env(&t.name);
            toml.push_str(&format!(
                "\n[[tenants.sources]]\nname = \"secure-endpoint\"\nkind = \"secure_endpoint\"\nbase_url = {}\nclient_id = {}\napi_key_env = {}\n",
                toml_str(&ep.secure_endpoint),
                toml_str(&se.client_id),
                toml_str(&var),
            ));
            env.push_str(&format!("{var}={}\n", se.api_key));
        }
        if let (Some(sy), Some(creds)) = (&ep.symantec_mss, &t.symantec_mss) {
            toml.push_str(&symantec_source(&sy.url, &t.name, opts.symantec_sources));
            let (p12, pass) = symantec_envs(&t.name);
            env.push_str(&format!(
                "{p12}={}\n{pass}={}\n",
                creds.p12_base64, creds.passphrase
            ));
        }
    }
    if let Some(sn) = &ep.servicenow {
        toml.push_str(&servicenow_section(sn, opts.servicenow_section));
        env.push_str(&format!(
            "{SERVICENOW_PASSWORD_ENV}={}\n{SERVICENOW_CLIENT_SECRET_ENV}={}\n{SERVICENOW_WEBHOOK_SECRET_ENV}={}\n",
            sn.integration.password, sn.oauth.client_secret, sn.webhook_secret
        ));
    }
    (toml, env)
}

/// Writes the config at `path` and `socbridge.env` (mode 0600) in the same directory; the
/// env file first, so a config never names variables that are nowhere to be found.
pub(crate) fn write_config(
    ep: &Endpoints,
    path: &Path,
    opts: &crate::ConfigOptions,
) -> std::io::Result<()> {
    let (toml, env) = render_config(ep, opts);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    write_private(&dir.join(ENV_FILE), &env)?;
    if let Some(sy) = &ep.symantec_mss {
        std::fs::write(dir.join(CA_FILE), &sy.ca_pem)?;
    }
    std::fs::write(path, toml)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SecureEndpointCreds, TenantEndpoints};

    #[test]
    fn config_names_the_env_var_and_keeps_the_key_out() {
        let ep = Endpoints {
            secure_endpoint: "http://127.0.0.1:9".into(),
            control: "http://127.0.0.1:9/_sim".into(),
            tenants: vec![TenantEndpoints {
                name: "umbrella-corp".into(),
                secure_endpoint: Some(SecureEndpointCreds {
                    client_id: "cid".into(),
                    api_key: "k3y".into(),
                }),
                symantec_mss: None,
            }],
            servicenow: None,
            symantec_mss: None,
        };
        let (toml, env) = render_config(&ep, &crate::ConfigOptions::default());
        assert!(
            toml.contains("api_key_env = \"UMBRELLA_CORP_SECURE_ENDPOINT_API_KEY\""),
            "{toml}"
        );
        assert!(toml.contains("client_id = \"cid\""));
        assert!(toml.contains("env_file = \"socbridge.env\""));
        assert!(!toml.contains("k3y"));
        assert!(env.contains("UMBRELLA_CORP_SECURE_ENDPOINT_API_KEY=k3y\n"));
        assert!(!toml.contains("symantec"), "{toml}");
    }

    fn with_symantec() -> Endpoints {
        Endpoints {
            secure_endpoint: "http://127.0.0.1:9".into(),
            control: "http://127.0.0.1:9/_sim".into(),
            tenants: vec![TenantEndpoints {
                name: "acme".into(),
                secure_endpoint: Some(SecureEndpointCreds {
                    client_id: "cid".into(),
                    api_key: "k3y".into(),
                }),
                symantec_mss: Some(crate::SymantecCreds {
                    p12_base64: "UDEy".into(),
                    p12_legacy_base64: "TEVH".into(),
                    test_api_p12_base64: "VEVTVA==".into(),
                    passphrase: "s3cret".into(),
                }),
            }],
            servicenow: None,
            symantec_mss: Some(crate::SymantecEndpoints {
                url: "https://127.0.0.1:11".into(),
                ca_pem: "-----BEGIN CERTIFICATE-----\n".into(),
            }),
        }
    }

    const SYMANTEC_BLOCK: &str = "[[tenants.sources]]\nname = \"symantec-mss\"\nkind = \"symantec_mss\"\nbase_url = \"https://127.0.0.1:11\"\nca_file = \"sim-ca.pem\"\np12_env = \"ACME_SYMANTEC_MSS_P12\"\np12_passphrase_env = \"ACME_SYMANTEC_MSS_P12_PASSPHRASE\"\n";

    #[test]
    fn symantec_source_commented_by_default_and_secrets_in_env() {
        let ep = with_symantec();
        let (toml, env) = render_config(&ep, &crate::ConfigOptions::default());
        let commented: String = SYMANTEC_BLOCK.lines().map(|l| format!("# {l}\n")).collect();
        assert!(toml.contains(&commented), "{toml}");
        assert!(!toml.contains("\n[[tenants.sources]]\nname = \"symantec-mss\""));
        // The Secure Endpoint source is unchanged.
        assert!(toml.contains("[[tenants.sources]]\nname = \"secure-endpoint\"\nkind = \"secure_endpoint\"\nbase_url = \"http://127.0.0.1:9\"\nclient_id = \"cid\"\napi_key_env = \"ACME_SECURE_ENDPOINT_API_KEY\"\n"), "{toml}");
        assert!(!toml.contains("UDEy") && !toml.contains("s3cret"));
        assert!(env.contains("ACME_SYMANTEC_MSS_P12=UDEy\n"), "{env}");
        assert!(
            env.contains("ACME_SYMANTEC_MSS_P12_PASSPHRASE=s3cret\n"),
            "{env}"
        );
        let (active, _) = render_config(
            &ep,
            &crate::ConfigOptions {
                symantec_sources: true,
                ..Default::default()
            },
        );
        assert!(active.contains(&format!("\n{SYMANTEC_BLOCK}")), "{active}");
    }

    #[test]
    fn write_config_puts_the_ca_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socbridge.toml");
        write_config(&with_symantec(), &path, &crate::ConfigOptions::default()).unwrap();
        let ca = std::fs::read_to_string(dir.path().join("sim-ca.pem")).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(dir.path().join("socbridge.env").exists());
    }
}
