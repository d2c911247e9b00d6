//! Farol's segmentation core: no database, no HTTP.
//!
//! Plain data in, plain data out, progress through callbacks, no global
//! state. Everything is blocking and CPU-bound: call it from
//! `spawn_blocking` or a job worker. See `docs/segmentation.md`.
//!
//! | module        | what |
//! |---------------|------|
//! | [`model`]     | [`Transaction`], [`UserRow`] and their vocabularies. |
//! | [`mapping`]   | source columns → fields (synonyms + `"uid=user_id"` overrides). |
//! | [`clean`]     | amounts, timestamps, reject reasons, [`CleanReport`]. |
//! | [`aggregate`] | [`UserAgg`], the per-user accumulator, and the duplicate detector. |
//! | [`etl`]       | [`aggregate_files`]: CSV/Parquet → accumulators on all cores. |
//! | [`incremental`] | [`AggState`]: saved accumulators + file manifest; later runs read only new files. |
//! | [`features`]  | [`UserFeatures`], robust scaling, the clustering [`FeatureMatrix`]. |
//! | [`cluster`]   | KMeans (auto k), DBSCAN, HDBSCAN, quality metrics, ARI. |
//! | [`profile`]   | [`ClusterProfile`]s, pt-BR/English names, [`carry_names`] across runs. |
//! | [`pipeline`]  | [`run`] / [`segment`]: the whole run, [`RunParams`] → [`RunReport`]. |
//! | [`synth`]     | synthetic players with planted segments, CSV/Parquet writers. |
//! | [`table`]     | typed nullable columns to Parquet (exports). |
//!
//! ```no_run
//! use farol_segment::{RunParams, run};
//!
//! let params = RunParams::default();
//! let seg = run(&["lake/transactions".into()], &["users.csv".into()], &params, &[], &|_| {})?;
//! for p in &seg.profiles {
//!     println!("{} {} ({} users)", p.cluster, p.name_pt, p.size);
//! }
//! # Ok::<(), farol_segment::EtlError>(())
//! ```

pub mod aggregate;
pub mod clean;
pub mod cluster;
pub mod etl;
pub mod features;
pub mod incremental;
pub mod mapping;
pub mod model;
pub mod pipeline;
pub mod profile;
pub mod synth;
pub mod table;

pub use aggregate::{UserAgg, aggregate_transactions};
pub use clean::{CleanReport, RejectReason, RejectSample};
pub use etl::{Aggregation, EtlError, EtlParams, EtlProgress, aggregate_files, read_users};
pub use features::{
    FeatureMatrix, FeatureParams, Matrix, TicketBand, UserFeatures, compute_features,
    feature_matrix,
};
pub use incremental::{AggState, IncrementalReport, StateFiles, aggregate_incremental};
pub use model::{Channel, GameType, Transaction, TxKind, UserRow};
pub use pipeline::{
    Algorithm, RunParams, RunReport, Segmentation, Stage, run, run_incremental, segment,
};
pub use profile::{ClusterProfile, Descriptor, PreviousCluster, carry_names, profiles};
