//! Import: spreadsheets of clients in, normalized, deduplicated, reported.
//!
//! - [`rows`]: one record → a normalized candidate or its problems (pure, parallel).
//! - [`writer`]: one batch → clients, in one transaction, deduplicated by external id,
//!   CPF/CNPJ, phone and e-mail under a per-account lock.
//! - [`pipeline`]: reader thread + rayon normalization + batch writer with checkpoints.
//! - [`store`]: the import tables; [`worker`]: background jobs; [`routes`]: the API
//!   (chunked uploads, preview, start, progress, cancel, report); [`cli`]: `farol import`.
//!
//! Reading files (CSV/XLSX sniffing, encodings, mapping proposals) lives in the `farol-import`
//! crate; the normalizers in `farol-normalize`. See docs/import.md.

pub mod cli;
pub mod pipeline;
pub mod presets;
pub mod report;
pub mod routes;
pub mod rows;
pub mod store;
pub mod worker;
pub mod writer;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The imports API.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::list_imports, routes::create_import))
        .routes(routes!(routes::get_import))
        .routes(routes!(routes::upload_chunk, routes::upload_offset))
        .routes(routes!(routes::preview_import))
        .routes(routes!(routes::start_import))
        .routes(routes!(routes::cancel_import))
        .routes(routes!(routes::import_report))
        .routes(routes!(routes::import_issues_csv))
        .routes(routes!(presets::list_presets, presets::save_preset))
        .routes(routes!(presets::delete_preset))
}
