//! What provider webhooks change: delivery statuses on the recipient rows (matched by
//! `provider_message_id` within the channel account), invalid contacts (hard bounces,
//! complaints, invalid numbers), inbound replies on the client's timeline with the contact's
//! last inbound time (the WhatsApp 24-hour window), opt-outs by reply ("SAIR", "STOP"), and
//! the engagement counts of campaign results. Every event is applied once: its key goes into
//! `webhook_events` in the same transaction, so a provider's retry changes nothing.

use std::collections::BTreeMap;

use farol_channels::{DeliveryEvent, DeliveryStatus, InboundMessage};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::registry::Built;
use crate::audit::{self, Actor};
use crate::campaign::campaigns::{MinuteCount, Results};
use crate::campaign::suppressions::Kind;
use crate::campaign::templates::Channel;
use crate::crm::timeline::{self, NewItem, Origin};
use crate::db::{Db, DbResult, Tx, format_ms, now_ms};

/// What providers reported after the sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Engagement {
    /// Delivered to the device or mailbox (read implies delivered).
    pub delivered: i64,
    /// Read (WhatsApp) or opened (e-mail).
    pub read: i64,
    /// Bounced or failed after the provider accepted it.
    pub bounced: i64,
    /// The client answered.
    pub replied: i64,
    /// The client opted out by replying (SAIR, STOP...) or complaining.
    pub opted_out: i64,
}

impl Engagement {
    fn add(&mut self, other: &Engagement) {
        self.delivered += other.delivered;
        self.read += other.read;
        self.bounced += other.bounced;
        self.replied += other.replied;
        self.opted_out += other.opted_out;
    }
}

/// Adds engagement per channel and per minute to a campaign's results.
pub async fn add_engagement(
    conn: &mut AnyConnection,
    campaign_id: i64,
    out: &mut Results,
) -> DbResult<()> {
    let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "select channel, count(delivered_at), count(read_at), count(bounced_at), count(replied_at), count(opted_out_at) \
         from campaign_recipients where campaign_id = $1 group by channel",
    )
    .bind(campaign_id)
    .fetch_all(&mut *conn)
    .await?;
    for (channel, delivered, read, bounced, replied, opted_out) in rows {
        let e = Engagement {
            delivered,
            read,
            bounced,
            replied,
            opted_out,
        };
        out.counts.engagement.add(&e);
        out.by_channel
            .entry(channel)
            .or_default()
            .engagement
            .add(&e);
    }
    let mut minutes: BTreeMap<i64, MinuteCount> = BTreeMap::new();
    for (i, column) in [
        "sent_at",
        "delivered_at",
        "read_at",
        "bounced_at",
        "replied_at",
        "opted_out_at",
    ]
    .into_iter()
    .enumerate()
    {
        let extra = if i == 0 { " and status = 'sent'" } else { "" };
        let rows: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select ({column} / 60000) * 60000 as minute, count(*) from campaign_recipients \
             where campaign_id = $1 and {column} is not null{extra} group by 1"
        )))
        .bind(campaign_id)
        .fetch_all(&mut *conn)
        .await?;
        for (minute, n) in rows {
            let m = minutes.entry(minute).or_insert_with(|| MinuteCount {
                minute: format_ms(minute),
                sent: 0,
                engagement: Engagement::default(),
            });
            match i {
                0 => m.sent += n,
                1 => m.engagement.delivered += n,
                2 => m.engagement.read += n,
                3 => m.engagement.bounced += n,
                4 => m.engagement.replied += n,
                _ => m.engagement.opted_out += n,
            }
        }
    }
    out.over_time = minutes.into_values().collect();
    Ok(())
}

/// Records an event key; false when it was already applied.
async fn first_time(tx: &mut Tx, channel_account_id: i64, key: &str) -> DbResult<bool> {
    Ok(sqlx::query(
        "insert into webhook_events (channel_account_id, event_key, created_at) values ($1, $2, $3) on conflict do nothing",
    )
    .bind(channel_account_id)
    .bind(key.to_owned())
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

fn status_name(s: &DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::Deferred => "deferred",
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Read => "read",
        DeliveryStatus::Opened => "opened",
        DeliveryStatus::Clicked => "clicked",
        DeliveryStatus::Bounced { permanent: true } => "hard_bounce",
        DeliveryStatus::Bounced { permanent: false } => "soft_bounce",
        DeliveryStatus::Dropped => "dropped",
        DeliveryStatus::Complained => "complained",
        DeliveryStatus::Unsubscribed => "unsubscribed",
        DeliveryStatus::Failed { permanent: true } => "failed_permanent",
        DeliveryStatus::Failed { permanent: false } => "failed",
    }
}

fn label(channel: &str) -> &'static str {
    match channel {
        "email" => "E-mail",
        "whatsapp" => "WhatsApp message",
        "sms" => "SMS",
        _ => "Message",
    }
}

fn kind_of(channel: &str) -> &'static str {
    if channel == "email" { "email" } else { "phone" }
}

/// Opts a contact out (once): the contact, a timeline item, an audit entry. True when it was
/// not opted out before.
async fn opt_out(
    tx: &mut Tx,
    account_id: i64,
    client_id: i64,
    kind: &str,
    value: &str,
    why: &str,
    metadata: serde_json::Value,
) -> DbResult<bool> {
    let changed = sqlx::query(
        "update contacts set opted_out = 1, updated_at = $1 where account_id = $2 and client_id = $3 and kind = $4 and value = $5 and opted_out = 0",
    )
    .bind(now_ms())
    .bind(account_id)
    .bind(client_id)
    .bind(kind.to_owned())
    .bind(value.to_owned())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0;
    if changed {
        timeline::add(
            tx,
            NewItem {
                account_id,
                client_id,
                kind: "opted_out",
                origin: Origin::System,
                text: why,
                metadata: metadata.clone(),
                author_id: None,
            },
        )
        .await?;
        audit::record(
            tx,
            &Actor::system(account_id, "webhook"),
            "contact.opt_out",
            "client",
            client_id,
            audit::NONE,
            Some(&metadata),
        )
        .await?;
    }
    Ok(changed)
}

/// Applies one delivery event of channel account `built`. False when it was already applied
/// (or concerns no message of ours).
pub async fn apply_status(db: &Db, built: &Built, ev: &DeliveryEvent) -> anyhow::Result<bool> {
    let status = status_name(&ev.status);
    let key = match &ev.event_id {
        Some(id) => format!("ev:{id}"),
        None => format!("st:{}:{status}", ev.provider_message_id),
    };
    let mut tx = db.begin().await?;
    if !first_time(&mut tx, built.id, &key).await? {
        tx.commit().await?;
        return Ok(false);
    }
    let recipient: Option<(i64, i64, i64, String, Option<String>)> = sqlx::query_as(
        "select id, campaign_id, client_id, channel, address from campaign_recipients \
         where provider_message_id = $1 and channel_account_id = $2 limit 1",
    )
    .bind(ev.provider_message_id.clone())
    .bind(built.id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((rid, campaign_id, client_id, channel, address)) = recipient else {
        // Not ours, or not recorded yet (a status racing the send's commit): the key is not
        // kept, so a provider retry can still apply it.
        tx.rollback().await?;
        return Ok(false);
    };
    let at = ev
        .occurred_at
        .map(|t| t.as_millisecond())
        .unwrap_or_else(now_ms);
    // One column per fact, set once: a repeated or late status changes nothing.
    let update = match &ev.status {
        DeliveryStatus::Delivered => Some(
            "update campaign_recipients set delivered_at = $1, \
             delivery_status = case when delivery_status is null then 'delivered' else delivery_status end \
             where id = $2 and delivered_at is null",
        ),
        DeliveryStatus::Read | DeliveryStatus::Opened | DeliveryStatus::Clicked => Some(
            "update campaign_recipients set read_at = $1, delivered_at = coalesce(delivered_at, $1), \
             delivery_status = case when delivery_status in ('bounced', 'failed') then delivery_status else 'read' end \
             where id = $2 and read_at is null",
        ),
        DeliveryStatus::Bounced { .. } | DeliveryStatus::Dropped => Some(
            "update campaign_recipients set bounced_at = $1, delivery_status = 'bounced' where id = $2 and bounced_at is null",
        ),
        DeliveryStatus::Failed { .. } => Some(
            "update campaign_recipients set bounced_at = $1, delivery_status = 'failed' where id = $2 and bounced_at is null",
        ),
        DeliveryStatus::Complained | DeliveryStatus::Unsubscribed => Some(
            "update campaign_recipients set opted_out_at = $1 where id = $2 and opted_out_at is null",
        ),
        DeliveryStatus::Sent | DeliveryStatus::Deferred => None,
    };
    let changed = match update {
        Some(sql) => {
            sqlx::query(sql)
                .bind(at)
                .bind(rid)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0
        }
        // A delay changes no fact about the recipient; the timeline still tells it, once per
        // message (the event key).
        None => ev.status == DeliveryStatus::Deferred,
    };
    let metadata = serde_json::json!({
        "campaign_id": campaign_id,
        "recipient_id": rid,
        "channel": channel,
        "channel_account_id": built.id,
        "provider_message_id": ev.provider_message_id,
        "status": status,
        "code": ev.code,
        "reason": ev.reason,
    });
    if changed {
        timeline::add(
            &mut tx,
            NewItem {
                account_id: built.account_id,
                client_id,
                kind: "delivery_status",
                origin: Origin::System,
                text: &format!("{} {}", label(&channel), status.replace('_', " ")),
                metadata: metadata.clone(),
                author_id: None,
            },
        )
        .await?;
    }
    if let Some(address) = address {
        let kind = kind_of(&channel);
        if ev.contact_invalid() || ev.status == DeliveryStatus::Complained {
            sqlx::query(
                "update contacts set invalid_at = $1, invalid_reason = $2 where account_id = $3 and client_id = $4 and kind = $5 and value = $6 and invalid_at is null",
            )
            .bind(now_ms())
            .bind(format!(
                "{status}{}",
                ev.code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
            ))
            .bind(built.account_id)
            .bind(client_id)
            .bind(kind)
            .bind(address.clone())
            .execute(&mut *tx)
            .await?;
            // Enforced at send time whatever the audience says, even if the contact is
            // later edited or imported again.
            let (suppression, source) = if ev.status == DeliveryStatus::Complained {
                (Kind::Complaint, "complaint")
            } else {
                (Kind::HardBounce, "bounce")
            };
            crate::campaign::suppressions::record_from_provider(
                &mut tx,
                built.account_id,
                kind,
                &address,
                suppression,
                &format!(
                    "{status}{}",
                    ev.code
                        .as_deref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                ),
                source,
            )
            .await?;
        }
        if ev.opted_out() {
            opt_out(
                &mut tx,
                built.account_id,
                client_id,
                kind,
                &address,
                &format!("Opted out through the provider ({status})"),
                metadata,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(changed)
}

/// `5511987654321` or `+5511987654321` → `+5511987654321`.
fn e164(from: &str) -> String {
    let digits: String = from.chars().filter(char::is_ascii_digit).collect();
    format!("+{digits}")
}

/// Applies one inbound message to channel account `built`. False when it was already applied
/// or no contact has the sender's number.
pub async fn apply_inbound(db: &Db, built: &Built, msg: &InboundMessage) -> anyhow::Result<bool> {
    let channel = built.provider.channel();
    let mut tx = db.begin().await?;
    if !first_time(
        &mut tx,
        built.id,
        &format!("in:{}", msg.provider_message_id),
    )
    .await?
    {
        tx.commit().await?;
        return Ok(false);
    }
    let phone = e164(&msg.from);
    let contact: Option<(i64, i64)> = sqlx::query_as(
        "select id, client_id from contacts where account_id = $1 and kind = 'phone' and value = $2",
    )
    .bind(built.account_id)
    .bind(phone.clone())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((contact_id, client_id)) = contact else {
        tracing::info!(
            channel_account = built.id,
            "inbound message from a number no contact has"
        );
        tx.commit().await?;
        return Ok(false);
    };
    let at = msg
        .received_at
        .map(|t| t.as_millisecond())
        .unwrap_or_else(now_ms);
    sqlx::query(
        "update contacts set last_inbound_at = $1 where id = $2 and (last_inbound_at is null or last_inbound_at < $1)",
    )
    .bind(at)
    .bind(contact_id)
    .execute(&mut *tx)
    .await?;
    // The reply answers the latest message this account sent the client.
    let recipient: Option<(i64, i64)> = sqlx::query_as(
        "select id, campaign_id from campaign_recipients where account_id = $1 and client_id = $2 and channel_account_id = $3 \
         and status = 'sent' order by sent_at desc, id desc limit 1",
    )
    .bind(built.account_id)
    .bind(client_id)
    .bind(built.id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((rid, _)) = recipient {
        sqlx::query(
            "update campaign_recipients set replied_at = $1 where id = $2 and replied_at is null",
        )
        .bind(at)
        .bind(rid)
        .execute(&mut *tx)
        .await?;
    }
    let text = msg
        .text
        .clone()
        .unwrap_or_else(|| format!("[{}]", msg.kind));
    let metadata = serde_json::json!({
        "channel": channel.as_str(),
        "channel_account_id": built.id,
        "from": phone,
        "provider_message_id": msg.provider_message_id,
        "campaign_id": recipient.map(|r| r.1),
        "recipient_id": recipient.map(|r| r.0),
    });
    timeline::add(
        &mut tx,
        NewItem {
            account_id: built.account_id,
            client_id,
            kind: "inbound_message",
            origin: Origin::System,
            text: &format!(
                "{} received: {text}",
                if channel == Channel::Sms {
                    "SMS"
                } else {
                    "WhatsApp message"
                }
            ),
            metadata: metadata.clone(),
            author_id: None,
        },
    )
    .await?;
    if msg.is_opt_out()
        && opt_out(
            &mut tx,
            built.account_id,
            client_id,
            "phone",
            &phone,
            &format!("Opted out by replying \"{text}\""),
            metadata,
        )
        .await?
        && let Some((rid, _)) = recipient
    {
        sqlx::query(
            "update campaign_recipients set opted_out_at = $1 where id = $2 and opted_out_at is null",
        )
        .bind(at)
        .bind(rid)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}
