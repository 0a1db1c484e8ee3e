//! The Pareto front of a sweep's points, and the point a goal picks.

use crate::report::Point;

/// Marks the Pareto front: a point is on it when no other is at most as large and at least as
/// close, and strictly better in one of the two.
pub(crate) fn mark_front(points: &mut [Point]) {
    let dominated = |p: &Point, q: &Point| {
        q.bytes <= p.bytes && q.mean_cosine >= p.mean_cosine && (q.bytes < p.bytes || q.mean_cosine > p.mean_cosine)
    };
    let flags: Vec<bool> = points.iter().map(|p| !points.iter().any(|q| dominated(p, q))).collect();
    for (p, f) in points.iter_mut().zip(flags) {
        p.on_front = f;
    }
}


/// What to pick from a sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Goal {
    /// The smallest point whose mean cosine reaches this.
    Cosine(f64),
    /// The closest point storing at most this many bytes.
    MaxBytes(u64),
    /// [`Goal::MaxBytes`] as a share of the table's fp32 bytes (rounded down to whole bytes).
    MaxShare(f64),
}

/// The index of the point `goal` picks among `points` (of a table of `fp32_bytes` as fp32):
/// the smallest reaching the cosine, or the closest within the bytes; `None` when none does.
pub(crate) fn pick(points: &[Point], goal: Goal, fp32_bytes: u64) -> Option<usize> {
    let chosen = match goal {
        Goal::Cosine(x) => points.iter().enumerate().filter(|(_, p)| p.meets(x)).min_by_key(|(_, p)| p.bytes),
        Goal::MaxBytes(_) | Goal::MaxShare(_) => {
            let b = max_bytes(goal, fp32_bytes).expect("a byte goal");
            points
                .iter()
                .enumerate()
                .filter(|(_, p)| p.bytes <= b)
                .max_by(|(_, p), (_, q)| p.mean_cosine.total_cmp(&q.mean_cosine).then(q.bytes.cmp(&p.bytes)))
        }
    };
    chosen.map(|(i, _)| i)
}

/// The byte limit of a byte goal, now that the table's size is known.
pub(crate) fn max_bytes(goal: Goal, fp32_bytes: u64) -> Option<u64> {
    match goal {
        Goal::Cosine(_) => None,
        Goal::MaxBytes(b) => Some(b),
        Goal::MaxShare(share) => Some((share * fp32_bytes as f64).floor() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Setting;
    use crate::report::Family;

    fn p(label: &str, bytes: u64, mean_cosine: f64) -> Point {
        Point {
            label: label.into(),
            family: Family::Plain,
            k: None,
            ratio: None,
            setting: Setting::default(),
            bytes,
            share: 0.0,
            mean_cosine,
            min_cosine: mean_cosine,
            on: String::new(),
            screened: false,
            nn_agreement: None,
            top1_agreement: None,
            mean_kl: None,
            seconds: 0.0,
            on_front: true,
        }
    }

    #[test]
    fn dominated_points_are_never_on_the_front() {
        let mut points = vec![
            p("small", 10, 0.90),
            p("dominated: larger and worse", 20, 0.89),
            p("better", 20, 0.95),
            p("dominated: as large, worse", 20, 0.94),
            p("dominated: larger, as good", 30, 0.95),
            p("best", 40, 0.99),
            p("twin", 40, 0.99),
        ];
        mark_front(&mut points);
        let front: Vec<&str> = points.iter().filter(|p| p.on_front).map(|p| p.label.as_str()).collect();
        // Equal points do not dominate each other: both stay.
        assert_eq!(front, ["small", "better", "best", "twin"]);
        for q in points.iter().filter(|q| !q.on_front) {
            assert!(points.iter().any(|o| o.bytes <= q.bytes && o.mean_cosine >= q.mean_cosine && o.label != q.label));
        }
    }

    #[test]
    fn a_screened_point_is_never_picked_for_a_cosine() {
        // A screen's figure is of a part of the text; the point was found below the target.
        let mut screened = p("screened", 10, 0.995);
        screened.screened = true;
        let points = vec![screened, p("checked", 20, 0.991)];
        assert_eq!(pick(&points, Goal::Cosine(0.99), 100), Some(1));
        assert_eq!(pick(&points, Goal::Cosine(0.999), 100), None);
    }
}
