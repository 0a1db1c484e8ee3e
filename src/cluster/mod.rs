//! (k, j)-projective clustering of a table's rows (MESSI): k linear subspaces of dimension j
//! minimising the sum of squared distances of each row to its closest subspace.
//!
//! Usage follows linfa: [`FitParams`] -> [`FitParams::check`] -> [`CheckedParams::fit`] with a
//! caller-supplied seeded RNG.

mod fit;
pub(crate) mod linalg;
mod params;

pub use fit::{Clustering, FitEvent};
pub use params::{Budget, CheckedParams, FitParams, check_k};
