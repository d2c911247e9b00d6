//! The CRM core: clients, their contacts, tags, custom fields, portfolios and timelines.

pub mod clients;
pub mod contacts;
pub mod custom_fields;
pub mod export;
pub mod portfolios;
pub mod search_index;
pub mod tags;
pub mod timeline;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The CRM routes (mounted under `/api/v1`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(clients::list_clients, clients::create_client))
        .routes(routes!(
            clients::get_client,
            clients::update_client,
            clients::delete_client
        ))
        .routes(routes!(timeline::get_timeline, timeline::add_note))
        .routes(routes!(contacts::create_contact))
        .routes(routes!(contacts::list_contacts))
        .routes(routes!(
            contacts::get_contact_route,
            contacts::update_contact,
            contacts::delete_contact
        ))
        .routes(routes!(tags::list_tags, tags::create_tag))
        .routes(routes!(
            tags::get_tag_route,
            tags::update_tag,
            tags::delete_tag
        ))
        .routes(routes!(
            portfolios::list_portfolios,
            portfolios::create_portfolio
        ))
        .routes(routes!(
            portfolios::get_portfolio_route,
            portfolios::update_portfolio,
            portfolios::delete_portfolio
        ))
        .routes(routes!(
            custom_fields::list_fields,
            custom_fields::create_field
        ))
        .routes(routes!(
            custom_fields::get_field_route,
            custom_fields::update_field,
            custom_fields::delete_field
        ))
}
