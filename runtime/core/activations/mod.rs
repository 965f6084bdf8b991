//! Activations on disk: harvesting them from a model over a corpus into
//! sharded `.npy` files with a manifest, and reading them back
//! memory-mapped as shuffled training batches.
pub mod harvest;
pub mod harvest_options;
pub mod manifest;
pub mod npy;
mod pipeline;
pub mod sites;
pub mod split;
pub mod store;

pub use harvest::harvest;
pub use harvest_options::HarvestOptions;
pub use npy::Dtype;
pub use sites::SiteInfo;
pub use store::{Manifest, RowInfo, Shuffle, Store};
