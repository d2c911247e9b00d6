//! Farol's segmentation core: no database, no HTTP.
//!
//! Plain data in, plain data out, progress through callbacks, no global state:
//!
//! | module        | what |
//! |---------------|------|
//! | [`model`]     | [`Transaction`], [`UserRow`] and their vocabularies. |
//! | [`mapping`]   | source columns → fields (synonyms + `"uid=user_id"` overrides). |
//! | [`clean`]     | amounts, timestamps, reject reasons, [`CleanReport`]. |
//! | [`aggregate`] | [`UserAgg`], the per-user accumulator, and the duplicate detector. |
//! | [`etl`]       | [`aggregate_files`]: CSV/Parquet → accumulators on all cores. |
pub mod aggregate;
pub mod clean;
pub mod etl;
pub mod mapping;
pub mod model;

pub use aggregate::{UserAgg, aggregate_transactions};
pub use clean::{CleanReport, RejectReason, RejectSample};
pub use etl::{Aggregation, EtlError, EtlParams, EtlProgress, aggregate_files, read_users};
pub use model::{Channel, GameType, Transaction, TxKind, UserRow};
pub mod cluster;
pub mod features;

pub use features::{
    FeatureMatrix, FeatureParams, Matrix, TicketBand, UserFeatures, compute_features,
    feature_matrix,
};
pub mod profile;

pub use profile::{ClusterProfile, Descriptor, PreviousCluster, carry_names, profiles};
pub mod pipeline;

pub use pipeline::{Algorithm, RunParams, RunReport, Segmentation, Stage, run, segment};
pub mod synth;
