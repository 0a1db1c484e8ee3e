//! The sweep's grid: the family's points as settings, labelled.

use crate::pipeline::setting::{Method, Plan, Setting, Subspaces};
use crate::quant::Bits;
use crate::report::Family;
use crate::storage::{HotTier, Precision, Size, Storage};

/// The grid of a sweep. [`SweepGrid::default`] has 39 points with token statistics (the tiers
/// need them), 23 without.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SweepGrid {
    /// Subspace counts (1: the SVD), each at every ratio (default 1, 4, 8).
    pub ks: Vec<usize>,
    /// Fractions of numbers removed (default 0.5, 0.8).
    pub ratios: Vec<f64>,
    /// Precisions of the coefficients (default 8, 4, 2 bits).
    pub bits: Vec<Precision>,
    /// Also the paper's float layout at the first k above 1 and the first ratio (default on).
    pub paper: bool,
    /// Plain storage at these widths (default 8, 4, 2).
    pub plain: Vec<Bits>,
    /// Plain storage with a frequent tier: (rest, frequent) widths (default (2, 4), (4, 8)),
    /// when there are token counts.
    pub tiers: Vec<(Bits, Bits)>,
    /// Clustering of the other rows with a frequent tier stored plain: (k, ratio,
    /// coefficient width, frequent width, share of the counted tokens the tier covers), when
    /// there are token counts (default (4, 0.8, 4, 4, 0.999), (4, 0.8, 2, 4, 0.999), (4, 0.8, 2,
    /// 4, 0.99), (4, 0.5, 4, 8, 0.999)).
    pub tiered: Vec<(usize, f64, Bits, Bits, f64)>,
    /// Product codes of the rows: values per sub-vector, whether in the rows' principal axes
    /// ([`Method::Codes`]), and the frequent tier's width, share of the counted tokens and block
    /// (`None`: the storage's), when there are token statistics (default 4 values alone; 8
    /// values under a 4-bit tier covering 0.98, 0.99 and 0.999; 6 values under a 4-bit tier
    /// covering 0.98, 0.985 and 0.99 in blocks of 64; 8 values in the principal axes under the
    /// same tiers; 4 values under a 4-bit tier covering 0.999).
    ///
    /// (The tier's fitted levels in blocks of 64 store 12 bytes a row less than in blocks of 32
    /// on a 384-value row; on all-MiniLM-L6-v2 under a 0.985 tier, the check's mean cosine moved
    /// from 0.9908 to 0.9904 for 65 KB less, about what covering a larger share costs per byte.
    /// Codes 6 under those tiers in blocks of 32 were on the front too, at 6.11-6.63% of the
    /// table: the codes in the axes took their place, and the sweep's 3 minutes.)
    pub codes: Vec<(usize, bool, Option<(Bits, f64, Option<usize>)>)>,
    /// What every point's storage starts from: the block, and the share of the counted tokens
    /// the plain tiers cover (default [`Storage::default`], 0.999).
    pub storage: Storage,
}

impl Default for SweepGrid {
    fn default() -> Self {
        SweepGrid {
            ks: vec![1, 4, 8],
            ratios: vec![0.5, 0.8],
            bits: vec![Precision::Bits(Bits::B8), Precision::Bits(Bits::B4), Precision::Bits(Bits::B2)],
            paper: true,
            plain: vec![Bits::B8, Bits::B4, Bits::B2],
            tiers: vec![(Bits::B2, Bits::B4), (Bits::B4, Bits::B8)],
            tiered: vec![
                (4, 0.8, Bits::B4, Bits::B4, 0.999),
                (4, 0.8, Bits::B2, Bits::B4, 0.999),
                (4, 0.8, Bits::B2, Bits::B4, 0.99),
                (4, 0.5, Bits::B4, Bits::B8, 0.999),
            ],
            codes: vec![
                (4, false, None),
                (8, false, Some((Bits::B4, 0.98, None))),
                (8, false, Some((Bits::B4, 0.99, None))),
                (8, false, Some((Bits::B4, 0.999, None))),
                (6, false, Some((Bits::B4, 0.98, Some(64)))),
                (6, false, Some((Bits::B4, 0.985, Some(64)))),
                (6, false, Some((Bits::B4, 0.99, Some(64)))),
                (8, true, Some((Bits::B4, 0.98, Some(64)))),
                (8, true, Some((Bits::B4, 0.985, Some(64)))),
                (8, true, Some((Bits::B4, 0.99, Some(64)))),
                (4, false, Some((Bits::B4, 0.999, None))),
            ],
            storage: Storage::default(),
        }
    }
}

/// One point of the grid before it is evaluated: its setting and the family it is of.
#[derive(Debug, Clone)]
pub(crate) struct GridPoint {
    pub(crate) family: Family,
    pub(crate) setting: Setting,
}

impl GridPoint {
    /// The fixed k and the ratio of a subspace setting.
    pub(crate) fn k_ratio(&self) -> Option<(usize, f64)> {
        match self.setting.method {
            Method::Subspaces { k: Subspaces::Fixed(k), size: Size::Ratio(r), .. } => Some((k, r)),
            _ => None,
        }
    }

    /// The fit this point needs, which the points of one key share: (k, ratio, the frequent
    /// tier's share when the fit is of the other rows); none without a fit.
    pub(crate) fn fit_key(&self) -> Option<(usize, u64, Option<u64>)> {
        self.k_ratio().map(|(k, r)| (k, r.to_bits(), self.setting.storage.hot.map(|h| h.mass.to_bits())))
    }

    /// Whether this point stores the same fit as `other` (the same [`GridPoint::fit_key`]: the
    /// same subspaces, coefficients and tier rows) at least as precisely everywhere: its
    /// coefficients and its tier rows at no fewer bits, the same block. It then keeps at least
    /// as much of the table as `other`: a search takes `other` to miss a target this point
    /// missed.
    pub(crate) fn refines(&self, other: &GridPoint) -> bool {
        let (a, b) = (&self.setting.storage, &other.setting.storage);
        let tier = match (a.hot, b.hot) {
            (None, None) => true,
            (Some(x), Some(y)) => x.mass == y.mass && width(x.bits) >= width(y.bits),
            _ => false,
        };
        self.fit_key().is_some() && self.fit_key() == other.fit_key() && a.block == b.block && width(a.bits) >= width(b.bits) && tier
    }

    pub(crate) fn label(&self) -> String {
        let storage = &self.setting.storage;
        let b = |p: Precision| match p {
            Precision::Float => "float".to_string(),
            Precision::Bits(b) => format!("{}b", b.count()),
        };
        // A tier's share when it is not the default one.
        let at = |mass: f64| if mass == 0.999 { String::new() } else { format!("@{mass}") };
        match (self.family, self.k_ratio()) {
            (Family::Plain, _) => format!("plain {}", b(storage.bits)),
            (Family::Codes, _) => {
                let (sub, rotated) = match self.setting.method {
                    Method::Codes { sub, rotated } => (sub, rotated),
                    _ => (0, false),
                };
                let hot = storage.hot.map_or(String::new(), |h| format!("+{}{}", b(h.bits), at(h.mass)));
                // (a tier's block when it is not the default one)
                let block = match storage.hot.is_some() && storage.block != Storage::default().block {
                    true => format!(" b{}", storage.block),
                    false => String::new(),
                };
                let axes = if rotated { "rotated " } else { "" };
                format!("{axes}codes {sub}{hot}{block}")
            }
            (Family::Tiers, kr) => {
                let hot = storage.hot.map_or(String::new(), |h| format!("{}{}", b(h.bits), at(h.mass)));
                match kr {
                    Some((k, r)) => format!("k{k} r{r} {}+{hot}", b(storage.bits)),
                    None => format!("tiers {}+{hot}", b(storage.bits)),
                }
            }
            (_, Some((k, r))) => format!("k{k} r{r} {}", b(storage.bits)),
            _ => "?".into(),
        }
    }
}

/// Bits a stored value takes at `p` (floats: 32, more than any quantized width).
pub(super) fn width(p: Precision) -> u32 {
    match p {
        Precision::Float => 32,
        Precision::Bits(b) => b.count() as u32,
    }
}

/// The points of `grid` for a `[n, d]` table, those whose size does not fit dropped (those
/// under a frequent tier are checked when the tier is known).
pub(crate) fn settings(grid: &SweepGrid, base: &Storage, counts: bool, n: usize, d: usize) -> Vec<GridPoint> {
    let storage = |bits: Precision, hot: Option<HotTier>| Storage { bits, hot, ..*base };
    let subspaces = |k: usize, ratio: f64| Method::subspaces(k, Size::Ratio(ratio));
    let mut out = Vec::new();
    for &k in &grid.ks {
        for &ratio in &grid.ratios {
            if Plan::of(&Setting::new(subspaces(k, ratio), storage(Precision::Float, None)), d, n).is_err() {
                continue;
            }
            let family = if k == 1 { Family::Svd } else { Family::Clustering };
            let mut bits = grid.bits.clone();
            let first_clustering = grid.ks.iter().find(|&&k| k > 1) == Some(&k) && grid.ratios.first() == Some(&ratio);
            if grid.paper && first_clustering && !bits.contains(&Precision::Float) {
                bits.push(Precision::Float);
            }
            for b in bits {
                out.push(GridPoint { family, setting: Setting::new(subspaces(k, ratio), storage(b, None)) });
            }
        }
    }
    for &b in &grid.plain {
        out.push(GridPoint { family: Family::Plain, setting: Setting::plain(storage(Precision::Bits(b), None)) });
    }
    let mass = base.hot.map_or(0.999, |h| h.mass);
    for &(sub, rotated, hot) in &grid.codes {
        if hot.is_some() && !counts {
            continue;
        }
        let block = hot.and_then(|(_, _, block)| block).unwrap_or(base.block);
        let hot = hot.map(|(b, mass, _)| HotTier { bits: Precision::Bits(b), mass });
        let storage = Storage { block, ..storage(Precision::Bits(Bits::B8), hot) };
        out.push(GridPoint { family: Family::Codes, setting: Setting::new(Method::Codes { sub, rotated }, storage) });
    }
    if counts {
        for &(rest, hot) in &grid.tiers {
            let hot = Some(HotTier { bits: Precision::Bits(hot), mass });
            out.push(GridPoint { family: Family::Tiers, setting: Setting::plain(storage(Precision::Bits(rest), hot)) });
        }
        for &(k, ratio, rest, hot, mass) in &grid.tiered {
            let hot = Some(HotTier { bits: Precision::Bits(hot), mass });
            out.push(GridPoint { family: Family::Tiers, setting: Setting::new(subspaces(k, ratio), storage(Precision::Bits(rest), hot)) });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_has_each_family_and_drops_sizes_that_do_not_fit() {
        let all = settings(&SweepGrid::default(), &Storage::default(), true, 30522, 384);
        assert_eq!(all.len(), 39);
        let coarse = all.iter().find(|p| p.label() == "codes 6+4b@0.985 b64").expect("a tier in blocks of 64");
        assert_eq!(coarse.setting.storage.block, 64);
        for f in [Family::Plain, Family::Tiers, Family::Svd, Family::Clustering, Family::Codes] {
            assert!(all.iter().any(|s| s.family == f), "{f:?}");
        }
        assert_eq!(settings(&SweepGrid::default(), &Storage::default(), false, 30522, 384).len(), 23);
        // A tiny table: k = 8 at ratio 0.8 cannot fit.
        let tiny = settings(&SweepGrid::default(), &Storage::default(), false, 100, 8);
        assert!(tiny.iter().all(|s| s.k_ratio() != Some((8, 0.8))));
        assert_eq!(all[0].setting, Setting::new(Method::subspaces(1, Size::Ratio(0.5)), Storage::default()));
    }

    #[test]
    fn a_point_refines_the_points_of_its_fit_at_fewer_bits_only() {
        let all = settings(&SweepGrid::default(), &Storage::default(), true, 30522, 384);
        let find = |label: &str| all.iter().find(|p| p.label() == label).unwrap_or_else(|| panic!("{label}"));
        let refines = |a: &str, b: &str| find(a).refines(find(b));
        // the same fit, fewer bits
        assert!(refines("k4 r0.8 8b", "k4 r0.8 4b") && refines("k4 r0.8 8b", "k4 r0.8 2b") && refines("k4 r0.8 4b", "k4 r0.8 2b"));
        assert!(refines("k4 r0.5 float", "k4 r0.5 8b") && refines("k4 r0.8 4b", "k4 r0.8 4b"));
        assert!(!refines("k4 r0.8 2b", "k4 r0.8 4b"));
        // other fits: another k, another ratio, another tier (its fit is of the other rows)
        assert!(!refines("k8 r0.8 8b", "k4 r0.8 2b") && !refines("k4 r0.5 8b", "k4 r0.8 2b") && !refines("k4 r0.8 8b", "k4 r0.8 2b+4b"));
        // under one tier: the coefficients and the tier rows at no fewer bits
        assert!(refines("k4 r0.8 4b+4b", "k4 r0.8 2b+4b") && !refines("k4 r0.8 4b+4b", "k4 r0.8 2b+4b@0.99"));
        // no fit, no chain: plain rows, tiers of plain rows, codes
        assert!(!refines("plain 8b", "plain 4b") && !refines("tiers 4b+8b", "tiers 2b+4b") && !refines("codes 4", "codes 4"));
        // another block
        let mut other = find("k4 r0.8 4b").clone();
        other.setting.storage.block = 16;
        assert!(!find("k4 r0.8 8b").refines(&other));
    }
}
