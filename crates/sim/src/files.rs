//! The files other tools read to reach the emulators: the endpoints JSON and a ready
//! socbridge config with its env file. API keys go only into files created with mode 0600.
//! With the Symantec emulator on, its production CA is written as `sim-ca.pem` beside the
//! config, and each tenant's modern `.p12` (base64) and passphrase go into the env file.
//! With the Umbrella emulator on, the MSSP parent key is a top-level `[[credentials]]` entry
//! (key and secret in the env file) that each tenant's `umbrella` source names with its org.

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
pub(crate) const ENV_FILE: &str = "socbridge.env";

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

/// The name of the Umbrella MSSP parent credential and the env variables of its key and
/// secret (one parent for all tenants, so no tenant prefix).
pub(crate) const UMBRELLA_CREDENTIAL: &str = "umbrella-mssp";
pub(crate) const UMBRELLA_KEY_ENV: &str = "UMBRELLA_MSSP_KEY";
pub(crate) const UMBRELLA_SECRET_ENV: &str = "UMBRELLA_MSSP_SECRET";

/// Lines, each prefixed with `# ` unless `active`.
fn block(lines: &[String], active: bool) -> String {
    let mut out = String::new();
    for l in lines {
        if !active {
            out.push_str("# ");
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The top-level `[[credentials]]` entry of the MSSP parent key. TOML wants it before the
/// first `[[tenants]]` table (after it, it would not be top-level); `active: false` writes it
/// commented out, so a socbridge without shared credentials yet still loads the config.
fn umbrella_credential(u: &crate::UmbrellaEndpoints, active: bool) -> String {
    let lines = [
        "[[credentials]]".to_string(),
        format!("name = {}", toml_str(UMBRELLA_CREDENTIAL)),
        "kind = \"umbrella\"".to_string(),
        format!("base_url = {}", toml_str(&u.base_url)),
        format!("key_env = {}", toml_str(UMBRELLA_KEY_ENV)),
        format!("secret_env = {}", toml_str(UMBRELLA_SECRET_ENV)),
    ];
    format!(
        "\n# Cisco Umbrella: the MSSP parent key, shared by every tenant's source (secrets in the env file).\n{}",
        block(&lines, active)
    )
}

/// A tenant's `umbrella` source: its child org, read with the parent credential.
fn umbrella_source(creds: &crate::UmbrellaCreds, active: bool) -> String {
    let lines = [
        "[[tenants.sources]]".to_string(),
        "name = \"umbrella\"".to_string(),
        "kind = \"umbrella\"".to_string(),
        format!("credential = {}", toml_str(UMBRELLA_CREDENTIAL)),
        format!("org_id = {}", toml_str(&creds.org_id.to_string())),
    ];
    format!("\n{}", block(&lines, active))
}

/// The env variable holding a tenant's Cisco XDR client secret: `ACME_XDR_CLIENT_SECRET`.
pub(crate) fn xdr_secret_env(tenant: &str) -> String {
    format!(
        "{}_XDR_CLIENT_SECRET",
        tenant.to_uppercase().replace('-', "_")
    )
}

/// A tenant's `[tenants.xdr]` section, written commented out: the XDR incident sink is
/// optional, so a config turns it on by uncommenting it.
fn xdr_sink(x: &crate::XdrEndpoints, c: &crate::XdrClientCreds) -> String {
    let lines = [
        "[tenants.xdr]".to_string(),
        format!("client_id = {}", toml_str(&c.client_id)),
        format!(
            "client_secret_env = {}",
            toml_str(&xdr_secret_env(&c.tenant))
        ),
        format!("token_url = {}", toml_str(&x.token_url)),
        format!("ctia_url = {}", toml_str(&x.ctia_url)),
    ];
    format!(
        "\n# Cisco XDR incident sink (optional; secret in the env file).\n{}",
        block(&lines, false)
    )
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
    if let Some(u) = &ep.umbrella {
        toml.push_str(&umbrella_credential(u, opts.umbrella_sources));
    }
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
        if let (Some(_), Some(creds)) = (&ep.umbrella, &t.umbrella) {
            toml.push_str(&umbrella_source(creds, opts.umbrella_sources));
        }
        if let Some(x) = &ep.xdr
            && let Some(c) = x.clients.iter().find(|c| c.tenant == t.name)
        {
            toml.push_str(&xdr_sink(x, c));
            env.push_str(&format!(
                "{}={}\n",
                xdr_secret_env(&t.name),
                c.client_secret
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
    if let Some(u) = &ep.umbrella {
        env.push_str(&format!(
            "{UMBRELLA_KEY_ENV}={}\n{UMBRELLA_SECRET_ENV}={}\n",
            u.parent_key, u.parent_secret
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
                umbrella: None,
            }],
            servicenow: None,
            symantec_mss: None,
            umbrella: None,
            xdr: None,
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
                umbrella: None,
            }],
            servicenow: None,
            symantec_mss: Some(crate::SymantecEndpoints {
                url: "https://127.0.0.1:11".into(),
                ca_pem: "-----BEGIN CERTIFICATE-----\n".into(),
            }),
            umbrella: None,
            xdr: None,
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

    /// The config of [`with_symantec`] with default options, byte for byte, as written before
    /// Umbrella existed: adding an emulator must not change what is already there.
    const SYMANTEC_CONFIG: &str = "# Written by `socbridge sim --write-config`: points socbridge at the emulators.\nenv_file = \"socbridge.env\"\n\n[[tenants]]\nname = \"acme\"\n\n[[tenants.sources]]\nname = \"secure-endpoint\"\nkind = \"secure_endpoint\"\nbase_url = \"http://127.0.0.1:9\"\nclient_id = \"cid\"\napi_key_env = \"ACME_SECURE_ENDPOINT_API_KEY\"\n\n# [[tenants.sources]]\n# name = \"symantec-mss\"\n# kind = \"symantec_mss\"\n# base_url = \"https://127.0.0.1:11\"\n# ca_file = \"sim-ca.pem\"\n# p12_env = \"ACME_SYMANTEC_MSS_P12\"\n# p12_passphrase_env = \"ACME_SYMANTEC_MSS_P12_PASSPHRASE\"\n";

    fn with_umbrella() -> Endpoints {
        let mut ep = with_symantec();
        ep.umbrella = Some(crate::UmbrellaEndpoints {
            base_url: "http://127.0.0.1:12".into(),
            regional_url: "http://127.0.0.1:13".into(),
            parent_key: "pk3y".into(),
            parent_secret: "ps3cret".into(),
            parent_org_id: 2_000_001,
            extra_orgs: Vec::new(),
        });
        ep.tenants[0].umbrella = Some(crate::UmbrellaCreds {
            org_id: 1234567,
            key: "ck3y".into(),
            secret: "cs3cret".into(),
        });
        let mut second = ep.tenants[0].clone();
        second.name = "globex".into();
        second.umbrella = Some(crate::UmbrellaCreds {
            org_id: 7654321,
            key: "ck3y2".into(),
            secret: "cs3cret2".into(),
        });
        ep.tenants.push(second);
        ep
    }

    const UMBRELLA_CREDENTIAL_BLOCK: &str = "[[credentials]]\nname = \"umbrella-mssp\"\nkind = \"umbrella\"\nbase_url = \"http://127.0.0.1:12\"\nkey_env = \"UMBRELLA_MSSP_KEY\"\nsecret_env = \"UMBRELLA_MSSP_SECRET\"\n";
    const UMBRELLA_SOURCE_BLOCK: &str = "[[tenants.sources]]\nname = \"umbrella\"\nkind = \"umbrella\"\ncredential = \"umbrella-mssp\"\norg_id = \"1234567\"\n";

    #[test]
    fn existing_output_is_unchanged() {
        let (toml, _) = render_config(&with_symantec(), &crate::ConfigOptions::default());
        assert_eq!(toml, SYMANTEC_CONFIG);
        // With Umbrella on but its option off, only commented lines are added: without the
        // Umbrella comment lines the text is what it was.
        let (toml, _) = render_config(&with_umbrella(), &crate::ConfigOptions::default());
        let mut expected = with_umbrella();
        expected.umbrella = None;
        for t in &mut expected.tenants {
            t.umbrella = None;
        }
        let (plain, _) = render_config(&expected, &crate::ConfigOptions::default());
        assert_eq!(strip_umbrella(&toml), plain, "{toml}");
    }

    /// The config without the commented Umbrella blocks (and their blank line before).
    fn strip_umbrella(toml: &str) -> String {
        let mut out = toml.to_string();
        let cred: String = UMBRELLA_CREDENTIAL_BLOCK
            .lines()
            .map(|l| format!("# {l}\n"))
            .collect();
        out = out.replace(
            &format!(
                "\n# Cisco Umbrella: the MSSP parent key, shared by every tenant's source (secrets in the env file).\n{cred}"
            ),
            "",
        );
        for org in ["1234567", "7654321"] {
            let src: String = UMBRELLA_SOURCE_BLOCK
                .replace("1234567", org)
                .lines()
                .map(|l| format!("# {l}\n"))
                .collect();
            out = out.replace(&format!("\n{src}"), "");
        }
        out
    }

    #[test]
    fn umbrella_credential_and_sources_parse_with_and_without_the_option() {
        let ep = with_umbrella();
        for opts in [
            crate::ConfigOptions::default(),
            crate::ConfigOptions {
                umbrella_sources: true,
                ..Default::default()
            },
            crate::ConfigOptions {
                servicenow_section: true,
                symantec_sources: true,
                umbrella_sources: true,
            },
        ] {
            let (text, env) = render_config(&ep, &opts);
            let doc: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert!(
                !text.contains("pk3y") && !text.contains("ps3cret"),
                "{text}"
            );
            assert!(env.contains("UMBRELLA_MSSP_KEY=pk3y\n"), "{env}");
            assert!(env.contains("UMBRELLA_MSSP_SECRET=ps3cret\n"), "{env}");
            let tenants = doc["tenants"].as_array().unwrap();
            assert_eq!(tenants.len(), 2);
            let creds = doc.get("credentials").and_then(|c| c.as_array());
            let sources = |t: &toml::Value| {
                t["sources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["kind"].as_str() == Some("umbrella"))
                    .map(|s| s["org_id"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            };
            if opts.umbrella_sources {
                let creds = creds.expect("a top-level credentials array");
                assert_eq!(creds.len(), 1);
                assert_eq!(creds[0]["name"].as_str(), Some("umbrella-mssp"));
                assert_eq!(creds[0]["kind"].as_str(), Some("umbrella"));
                assert_eq!(creds[0]["base_url"].as_str(), Some("http://127.0.0.1:12"));
                assert_eq!(creds[0]["key_env"].as_str(), Some("UMBRELLA_MSSP_KEY"));
                assert_eq!(
                    creds[0]["secret_env"].as_str(),
                    Some("UMBRELLA_MSSP_SECRET")
                );
                assert_eq!(sources(&tenants[0]), ["1234567"]);
                assert_eq!(sources(&tenants[1]), ["7654321"]);
                assert!(text.contains(&format!("\n{UMBRELLA_CREDENTIAL_BLOCK}")));
                assert!(text.contains(&format!("\n{UMBRELLA_SOURCE_BLOCK}")));
                // The credentials come before the first tenant (or TOML would nest them).
                let c = text.find("[[credentials]]").unwrap();
                assert!(c < text.find("[[tenants]]").unwrap());
            } else {
                assert!(creds.is_none(), "{text}");
                assert!(sources(&tenants[0]).is_empty());
            }
        }
        // Without Umbrella the file parses too and has no trace of it.
        let (text, env) = render_config(&with_symantec(), &crate::ConfigOptions::default());
        toml::from_str::<toml::Table>(&text).unwrap();
        assert!(!text.contains("mbrella") && !env.contains("UMBRELLA"));
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
