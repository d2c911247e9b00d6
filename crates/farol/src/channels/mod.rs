//! Channel accounts and provider webhooks (docs/channels.md):
//!
//! - [`alerts`]: operator alerts when a channel's circuit breaker opens or closes;
//! - [`accounts`]: `/channel-accounts` CRUD, per-provider validation, secrets encrypted at rest;
//! - [`registry`]: adapters built from stored accounts, cached per process, rebuilt on change;
//! - [`routing`]: which channel and account each campaign recipient goes through (`auto`);
//! - [`webhooks`]: `/webhooks/<provider>/<id>` receivers verified by provider signatures;
//! - [`dsn`]: bounces (RFC 3464) of SMTP accounts, piped in by the MTA, matched by VERP;
//! - [`events`]: what delivery statuses and inbound messages change; campaign engagement;
//! - [`sessions`]: WPPConnect sessions of an account;
//! - [`test_send`]: one real test message through an account's adapter.

pub mod accounts;
pub mod alerts;
pub mod dsn;
pub mod events;
pub mod registry;
pub mod routing;
pub mod sessions;
pub mod test_send;
pub mod webhooks;

use std::path::Path;

use farol_channels::Secret;
use farol_channels::credentials::CredentialCipher;
use secrecy::ExposeSecret;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::state::AppState;

/// The channel accounts and webhooks API (mounted under `/api/v1`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(accounts::list_accounts, accounts::create_account))
        .routes(routes!(
            accounts::get_account,
            accounts::update_account,
            accounts::delete_account
        ))
        .routes(routes!(test_send::test_account))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(sessions::list_sessions))
        .routes(routes!(sessions::session_status))
        .routes(routes!(sessions::start_session))
        .routes(routes!(sessions::session_qrcode))
        .routes(routes!(sessions::close_session))
        .routes(routes!(webhooks::meta_verify, webhooks::meta_events))
        .routes(routes!(webhooks::twilio_events))
        .routes(routes!(webhooks::wppconnect_events))
        .routes(routes!(webhooks::sendgrid_events))
        .routes(routes!(webhooks::ses_events))
        .routes(routes!(dsn::smtp_dsn))
}

/// The key encrypting channel account secrets: `secrets.key`, else `<data_dir>/secrets.key`,
/// generated (0600) on first start.
pub fn load_or_create_key(config: &Config) -> anyhow::Result<CredentialCipher> {
    let configured = config.secrets.key.expose_secret();
    let key = if !configured.is_empty() {
        Secret::new(configured)
    } else {
        let path = config.data_dir.join("secrets.key");
        read_or_create(&path)?
    };
    CredentialCipher::new(&key)
        .map_err(|e| anyhow::anyhow!("configuration error: key `secrets.key`: {e}"))
}

fn read_or_create(path: &Path) -> anyhow::Result<Secret> {
    use std::io::Write;
    match std::fs::read_to_string(path) {
        Ok(s) => return Ok(Secret::new(s.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let key = CredentialCipher::generate_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(key.expose().as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "generated the key encrypting channel account secrets");
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(Secret::new(std::fs::read_to_string(path)?.trim()))
        }
        Err(e) => anyhow::bail!("cannot create {}: {e}", path.display()),
    }
}
