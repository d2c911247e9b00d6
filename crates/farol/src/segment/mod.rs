//! Segmentation: players' transactions from the data lake → behavioral clusters named in
//! words, served by the API and linked to CRM clients.
//!
//! The computation (streaming ETL, features, KMeans/DBSCAN/HDBSCAN, profiles, names,
//! cross-run matching) is the `farol-segment` crate; this module stores runs
//! ([`store`]), runs them and links players to clients through the importer's dedupe
//! ([`service`]), and serves them ([`routes`], [`cli`]). See docs/segmentation.md.

pub mod cache;
pub mod cli;
pub mod lake;
pub mod routes;
pub mod schedule;
pub mod service;
pub mod smartico;
pub mod state;
pub mod store;
pub mod worker;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The segmentation API.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::start_run))
        .routes(routes!(routes::get_run))
        .routes(routes!(routes::list_clusters))
        .routes(routes!(routes::get_cluster, routes::rename_cluster))
        .routes(routes!(routes::cluster_users))
        .routes(routes!(routes::cluster_analytics))
        .routes(routes!(routes::player_segment))
        .routes(routes!(routes::player_behavior))
        .routes(routes!(smartico::push_run, smartico::list_syncs))
}
