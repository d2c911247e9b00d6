//! Campaigns: templates, audiences, campaigns and the send workers (docs/campaigns.md).
//!
//! - [`templates`]: per-channel message templates, validated against the account's variables
//!   when saved (farol-channels' minijinja engine), previewed for a client;
//! - [`audiences`]: saved filters over clients or static lists, previewed (size + sample);
//! - [`campaigns`]: lifecycle (draft → scheduled/running → paused → completed/cancelled), the
//!   launch snapshot into `campaign_recipients`, results; [`store`]: their SQL;
//! - [`worker`]: send workers (a database queue with leases), [`throttle`]: per-campaign
//!   and per-account pacing, [`pacing`]: sender accounts' limits (rate, daily cap), [`hours`]: business hours, [`channels`]: the adapters built from configuration, [`render`]: clients →
//!   template variables; [`unsubscribe`]: the one-click opt-out link; [`cli`]: `farol campaign`.

pub mod audiences;
pub mod broker;
pub mod campaigns;
pub mod channels;
pub mod checker;
pub mod cli;
pub mod hours;
pub mod pacing;
pub mod policy;
pub mod recorder;
pub mod recurring;
pub mod render;
pub mod store;
pub mod suppressions;
pub mod templates;
pub mod throttle;
pub mod unsubscribe;
pub mod worker;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use channels::Channels;

use crate::config::Config;
use crate::state::AppState;

/// The campaigns API (mounted under `/api/v1`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            templates::list_templates,
            templates::create_template
        ))
        .routes(routes!(
            templates::get_template,
            templates::update_template,
            templates::delete_template
        ))
        .routes(routes!(templates::preview_template))
        .routes(routes!(
            audiences::list_audiences,
            audiences::create_audience
        ))
        .routes(routes!(
            audiences::get_audience,
            audiences::update_audience,
            audiences::delete_audience
        ))
        .routes(routes!(audiences::preview_audience))
        .routes(routes!(
            campaigns::list_campaigns,
            campaigns::create_campaign
        ))
        .routes(routes!(
            campaigns::get_campaign,
            campaigns::update_campaign,
            campaigns::delete_campaign
        ))
        .routes(routes!(campaigns::launch_campaign))
        .routes(routes!(campaigns::pause_campaign))
        .routes(routes!(campaigns::resume_campaign))
        .routes(routes!(campaigns::cancel_campaign))
        .routes(routes!(campaigns::campaign_results))
        .routes(routes!(
            suppressions::list_suppressions,
            suppressions::create_suppression
        ))
        .routes(routes!(suppressions::delete_suppression))
        .routes(routes!(suppressions::import_suppressions))
        .routes(routes!(policy::get_settings, policy::put_settings))
        .routes(routes!(
            unsubscribe::unsubscribe_page,
            unsubscribe::unsubscribe
        ))
}

/// The base URL of links in messages (unsubscribe): `campaign.public_url`, else
/// `http://<server.listen>`.
pub fn public_url(config: &Config) -> String {
    let url = config.campaign.public_url.trim().trim_end_matches('/');
    if url.is_empty() {
        format!("http://{}", config.server.listen)
    } else {
        url.to_owned()
    }
}
