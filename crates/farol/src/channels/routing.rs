//! Which channel and channel account each recipient of a campaign goes through, decided at
//! launch: one channel (the campaign's account, else the tenant's default account of the
//! channel, else the configuration's SMTP account for e-mail), or `auto` — each client on its
//! preferred channel (the one the active segmentation found for it), then the configured
//! order, falling back in `campaign.auto_order` when it
//! cannot be reached there (no such contact, opted out, invalid, outside the WhatsApp window
//! without a provider template).

use std::collections::{BTreeMap, HashMap};

use farol_channels::whatsapp::meta::within_service_window;
use serde_json::Value;

use super::accounts::{self, Provider};
use crate::api::{ApiError, ApiResult};
use crate::campaign::Channels;
use crate::campaign::store::CampaignRow;
use crate::campaign::templates::{self, Channel};
use crate::db::bulk::{SqlValue, insert_rows};
use crate::db::{Db, DbError, SqlBuilder, Tx, now_ms};

/// Parses `campaign.auto_order`.
pub fn parse_order(order: &[String]) -> Result<Vec<Channel>, String> {
    let mut out = Vec::new();
    for name in order {
        match Channel::parse(name) {
            Some(Channel::Auto) | None => {
                return Err(format!(
                    "unknown channel `{name}`; use whatsapp, sms, email, webhook"
                ));
            }
            Some(Channel::Smartico) => {
                return Err(
                    "smartico is not a channel to a client's own contact: auto never picks it"
                        .into(),
                );
            }
            Some(c) if out.contains(&c) => return Err(format!("`{name}` is listed twice")),
            Some(c) => out.push(c),
        }
    }
    if out.is_empty() {
        return Err("list at least one channel".into());
    }
    Ok(out)
}

/// One way to send: a channel through a channel account (`None`: the configuration's SMTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Channel.
    pub channel: Channel,
    /// Channel account.
    pub account: Option<i64>,
    /// Meta enforces the 24-hour window.
    pub meta: bool,
}

/// The templates of a campaign by channel.
pub fn campaign_templates(c: &CampaignRow) -> BTreeMap<Channel, i64> {
    templates_of(
        Channel::parse(&c.channel).unwrap_or(Channel::Email),
        c.template_id,
        c.channel_templates.as_deref(),
    )
}

/// The templates by channel of a campaign sending by `channel`.
pub fn templates_of(
    channel: Channel,
    template_id: i64,
    channel_templates: Option<&str>,
) -> BTreeMap<Channel, i64> {
    if channel == Channel::Auto {
        channel_templates
            .and_then(|t| serde_json::from_str::<BTreeMap<Channel, i64>>(t).ok())
            .unwrap_or_default()
    } else {
        BTreeMap::from([(channel, template_id)])
    }
}

fn not_configured(channel: Channel) -> ApiError {
    ApiError::field(
        "channel",
        "not_configured",
        format!(
            "no {} channel is configured: create a channel account (POST /api/v1/channel-accounts) and make it the default{}",
            channel.as_str(),
            match channel {
                Channel::Email => {
                    ", or set smtp.url and smtp.from (FAROL_SMTP_URL and FAROL_SMTP_FROM)"
                }
                Channel::Smartico => {
                    ", or set smartico.base_url and smartico.label_token (FAROL_SMARTICO__BASE_URL and FAROL_SMARTICO__LABEL_TOKEN)"
                }
                _ => "",
            }
        ),
    )
}

/// The route of one channel for a tenant: `explicit` account, else the default account, else
/// the configured SMTP for e-mail. `None` when there is none.
async fn route_for(
    conn: &mut sqlx::AnyConnection,
    channels: &Channels,
    account_id: i64,
    channel: Channel,
    explicit: Option<i64>,
) -> ApiResult<Option<Route>> {
    let row = match explicit {
        Some(id) => match accounts::get(conn, account_id, id).await {
            Ok(r) => Some(r),
            Err(DbError::NotFound) => {
                return Err(ApiError::field(
                    "channel_account_id",
                    "not_found",
                    "no such channel account",
                ));
            }
            Err(e) => return Err(e.into()),
        },
        None => accounts::default_for(conn, account_id, channel).await?,
    };
    match row {
        Some(r) => {
            if r.provider().channel() != channel {
                return Err(ApiError::field(
                    "channel_account_id",
                    "wrong_channel",
                    format!(
                        "channel account {} sends by {}, the campaign by {}",
                        r.id,
                        r.channel,
                        channel.as_str()
                    ),
                ));
            }
            if r.enabled == 0 {
                return Err(ApiError::field(
                    "channel_account_id",
                    "disabled",
                    format!("channel account {} is disabled", r.id),
                ));
            }
            Ok(Some(Route {
                channel,
                account: Some(r.id),
                meta: r.provider() == Provider::Meta,
            }))
        }
        None if matches!(channel, Channel::Email | Channel::Smartico)
            && channels.get(channel).is_some() =>
        {
            Ok(Some(Route {
                channel,
                account: None,
                meta: false,
            }))
        }
        None => Ok(None),
    }
}

/// The routes of a campaign, in fallback order (one for a single-channel campaign).
pub async fn routes(
    conn: &mut sqlx::AnyConnection,
    channels: &Channels,
    c: &CampaignRow,
    order: &[Channel],
) -> ApiResult<Vec<Route>> {
    let channel = Channel::parse(&c.channel).unwrap_or(Channel::Email);
    if channel != Channel::Auto {
        return match route_for(conn, channels, c.account_id, channel, c.channel_account_id).await? {
            Some(r) => Ok(vec![r]),
            None => Err(not_configured(channel)),
        };
    }
    let templates = campaign_templates(c);
    let mut out = Vec::new();
    // The configured order first, then any other channel the campaign has a template for.
    let mut wanted: Vec<Channel> = order.to_vec();
    for ch in templates.keys() {
        if !wanted.contains(ch) {
            wanted.push(*ch);
        }
    }
    for ch in wanted {
        if !templates.contains_key(&ch) {
            continue;
        }
        if let Some(r) = route_for(conn, channels, c.account_id, ch, None).await? {
            out.push(r);
        }
    }
    if out.is_empty() {
        return Err(ApiError::field(
            "channel",
            "not_configured",
            "none of the campaign's channels has a channel account (or, for e-mail, smtp.url)",
        ));
    }
    Ok(out)
}

/// A contact as read for routing.
#[derive(Debug, Clone, sqlx::FromRow)]
struct RawContact {
    client_id: i64,
    kind: String,
    value: String,
    opted_out: i64,
    invalid_at: Option<i64>,
    last_inbound_at: Option<i64>,
}

impl From<RawContact> for ContactRow {
    fn from(r: RawContact) -> Self {
        ContactRow {
            kind: r.kind,
            value: r.value,
            opted_out: r.opted_out != 0,
            invalid: r.invalid_at.is_some(),
            last_inbound_at: r.last_inbound_at,
        }
    }
}

#[derive(Debug, Clone)]
struct ContactRow {
    kind: String,
    value: String,
    opted_out: bool,
    invalid: bool,
    last_inbound_at: Option<i64>,
}

/// The recipient written for one client.
type Decision = Result<(Route, String), &'static str>;

fn reach(
    route: &Route,
    client_id: i64,
    contacts: &[ContactRow],
    provider_template: bool,
    now: jiff::Timestamp,
) -> Decision {
    if route.channel == Channel::Webhook {
        return Ok((*route, format!("client:{client_id}")));
    }
    let kind = if route.channel == Channel::Email {
        "email"
    } else {
        "phone"
    };
    // Preferred first, then the oldest (contacts come in that order).
    let mut first_err = None;
    for c in contacts.iter().filter(|c| c.kind == kind) {
        let err = if c.opted_out {
            Some("opted_out")
        } else if c.invalid {
            Some("contact_invalid")
        } else if route.meta
            && !provider_template
            && !within_service_window(
                c.last_inbound_at
                    .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()),
                now,
            )
        {
            Some("outside_whatsapp_window")
        } else {
            None
        };
        match err {
            None => return Ok((*route, c.value.clone())),
            Some(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or("no_address"))
}

/// Fixes the recipients of a campaign: one row per client of the audience with its channel,
/// channel account and address resolved now. Clients that cannot be reached are recorded as
/// skipped with the reason, so the snapshot accounts for every member of the audience.
pub async fn snapshot(
    db: &Db,
    tx: &mut Tx,
    channels: &Channels,
    c: &CampaignRow,
    order: &[Channel],
) -> ApiResult<u64> {
    let backend = db.backend();
    let routes = routes(tx, channels, c, order).await?;
    let auto = Channel::parse(&c.channel) == Some(Channel::Auto);
    let provider_template = has_provider_template(tx, c).await?;
    let ids =
        crate::campaign::audiences::client_ids(tx, backend, c.account_id, c.audience_id).await?;
    let now = now_ms();
    let now_ts = jiff::Timestamp::now();
    let mut written = 0;
    // Recurring campaigns with skip_previous: clients the previous occurrence reached.
    let previous = crate::campaign::recurring::previously_sent(tx, c).await?;
    for chunk in ids.chunks(1000) {
        let mut q = SqlBuilder::new(
            "select client_id, kind, value, opted_out, invalid_at, last_inbound_at from contacts where client_id in ",
        );
        q.bind_list(chunk.iter().copied())
            .push(" order by client_id, preferred desc, id");
        let rows: Vec<RawContact> = q.query_as().fetch_all(&mut **tx).await?;
        let mut contacts: HashMap<i64, Vec<ContactRow>> = HashMap::new();
        for r in rows {
            contacts.entry(r.client_id).or_default().push(r.into());
        }
        let segment = if auto {
            segment_channels(tx, c.account_id, chunk).await?
        } else {
            HashMap::new()
        };
        let external_ids = if routes[0].channel == Channel::Smartico {
            external_ids(tx, c.account_id, chunk).await?
        } else {
            HashMap::new()
        };
        let rows: Vec<Vec<SqlValue>> = chunk
            .iter()
            .map(|client| {
                let empty = Vec::new();
                let cs = contacts.get(client).unwrap_or(&empty);
                let decision = if auto {
                    let preferred = preferred_channel(segment.get(client).copied());
                    let candidates = candidates(&routes, preferred);
                    let mut first_err = None;
                    let mut found = None;
                    for r in candidates {
                        match reach(r, *client, cs, provider_template, now_ts) {
                            Ok(d) => {
                                found = Some(d);
                                break;
                            }
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                    found.ok_or(first_err.unwrap_or("no_address"))
                } else if routes[0].channel == Channel::Smartico {
                    // Smartico knows the client by its id in the operator's system.
                    match external_ids.get(client) {
                        Some(id) => Ok((routes[0], id.clone())),
                        None => Err("no_external_id"),
                    }
                } else {
                    // One channel: the WhatsApp window is checked when sending (it may open
                    // before then).
                    reach(&routes[0], *client, cs, true, now_ts)
                };
                let (route, address, status, error) = match decision {
                    Ok((r, a)) if previous.contains(client) => (
                        r,
                        Some(a),
                        "skipped",
                        Some("previous_occurrence".to_owned()),
                    ),
                    Ok((r, a)) => (r, Some(a), "queued", None),
                    Err(reason) => (routes[0], None, "skipped", Some(reason.to_owned())),
                };
                vec![
                    SqlValue::from(c.id),
                    SqlValue::from(c.account_id),
                    SqlValue::from(*client),
                    SqlValue::from(route.channel.as_str().to_owned()),
                    SqlValue::from(route.account),
                    SqlValue::from(address),
                    SqlValue::from(status),
                    SqlValue::from(now),
                    SqlValue::from(error),
                    SqlValue::from(format!("campaign:{}:client:{client}", c.id)),
                    SqlValue::from(uuid::Uuid::new_v4().simple().to_string()),
                    SqlValue::from(now),
                    SqlValue::from(now),
                ]
            })
            .collect();
        written += insert_rows(
            tx,
            backend,
            "insert into campaign_recipients (campaign_id, account_id, client_id, channel, channel_account_id, address, status, \
             next_attempt_at, error, idempotency_key, unsubscribe_token, created_at, updated_at) values ",
            "",
            rows,
        )
        .await?;
    }
    Ok(written)
}

/// The external ids (Smartico's `user_ext_id`) of clients that have one.
async fn external_ids(
    conn: &mut sqlx::AnyConnection,
    account_id: i64,
    clients: &[i64],
) -> ApiResult<HashMap<i64, String>> {
    let mut q = SqlBuilder::new("select id, external_id from clients where account_id = ");
    q.bind(account_id)
        .push(" and external_id is not null and external_id <> '' and id in ")
        .bind_list(clients.iter().copied());
    let rows: Vec<(i64, String)> = q.query_as().fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().collect())
}

/// Whether the campaign's WhatsApp template has a provider template (the window does not
/// stop it).
async fn has_provider_template(conn: &mut sqlx::AnyConnection, c: &CampaignRow) -> ApiResult<bool> {
    for (ch, tid) in campaign_templates(c) {
        if ch == Channel::Whatsapp {
            match templates::get(conn, c.account_id, tid).await {
                Ok(t) => return Ok(t.provider_template.is_some()),
                Err(DbError::NotFound) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(false)
}

/// A client's routes in the order they are tried: its preferred channel first, then the
/// campaign's order.
fn candidates(routes: &[Route], preferred: Option<Channel>) -> Vec<&Route> {
    let mut out: Vec<&Route> = Vec::new();
    if let Some(p) = preferred
        && let Some(r) = routes.iter().find(|r| r.channel == p)
    {
        out.push(r);
    }
    for r in routes {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// An `auto` recipient that cannot be reached on `current` at send time (opted out or
/// invalid since launch, outside the WhatsApp window by the provider's account): the next
/// channel of its order that reaches it, with the address. `None`: no other channel does.
pub async fn reroute(
    db: &Db,
    channels: &Channels,
    campaign_id: i64,
    client_id: i64,
    current: Channel,
) -> anyhow::Result<Option<(Route, String)>> {
    let mut conn = db.pool().acquire().await?;
    let c = crate::campaign::store::get_any(&mut conn, campaign_id).await?;
    let order = channels.auto_order();
    let routes = routes(&mut conn, channels, &c, order)
        .await
        .map_err(|e| anyhow::anyhow!("routes of campaign {campaign_id}: {e}"))?;
    let provider_template = has_provider_template(&mut conn, &c)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows: Vec<RawContact> = sqlx::query_as(
        "select client_id, kind, value, opted_out, invalid_at, last_inbound_at from contacts \
         where client_id = $1 order by preferred desc, id",
    )
    .bind(client_id)
    .fetch_all(&mut *conn)
    .await?;
    let contacts: Vec<ContactRow> = rows.into_iter().map(Into::into).collect();
    let segment = segment_channels(&mut conn, c.account_id, &[client_id])
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let preferred = preferred_channel(segment.get(&client_id).copied());
    let list = candidates(&routes, preferred);
    let Some(pos) = list.iter().position(|r| r.channel == current) else {
        return Ok(None);
    };
    let now = jiff::Timestamp::now();
    Ok(list[pos + 1..]
        .iter()
        .find_map(|r| reach(r, client_id, &contacts, provider_template, now).ok()))
}

/// The client's preferred channel: the one the active segmentation found for it. (A contact's
/// `preferred` flag is per kind — every client has a preferred phone and a preferred e-mail
/// when it has both — so it picks the address within a channel, not the channel.)
fn preferred_channel(segment: Option<Channel>) -> Option<Channel> {
    segment
}

/// The preferred channel the active segmentation run found for each client (the users
/// file's `preferred_channel`, kept in the members' features).
async fn segment_channels(
    conn: &mut sqlx::AnyConnection,
    account_id: i64,
    clients: &[i64],
) -> ApiResult<HashMap<i64, Channel>> {
    let mut q = SqlBuilder::new(
        "select m.client_id, m.features from segment_members m join segment_runs r on r.id = m.run_id \
         where r.active = 1 and r.account_id = ",
    );
    q.bind(account_id)
        .push(" and m.client_id in ")
        .bind_list(clients.iter().copied());
    let rows: Vec<(Option<i64>, String)> = q.query_as().fetch_all(&mut *conn).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(client, features)| {
            let v: Value = serde_json::from_str(&features).ok()?;
            let ch = Channel::parse(v.get("channel")?.as_str()?)?;
            Some((client?, ch))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auto_order_takes_contact_channels_only_once_each() {
        let order =
            |names: &[&str]| parse_order(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            order(&["sms", "email"]).unwrap(),
            vec![Channel::Sms, Channel::Email]
        );
        assert!(
            order(&["smartico"])
                .unwrap_err()
                .contains("auto never picks it")
        );
        assert!(order(&["auto"]).is_err());
        assert!(order(&["sms", "sms"]).is_err());
        assert!(order(&[]).is_err());
    }
}
