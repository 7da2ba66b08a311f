use std::hash::{DefaultHasher, Hash, Hasher};

/// Virtual nodes per instance: enough for an even spread over a few dozen instances.
const VIRTUAL_NODES: u32 = 160;

/// A consistent-hash ring over instance indexes.
#[derive(Debug)]
pub(super) struct Ring {
    points: Vec<(u64, usize)>,
}

pub(super) fn hash(value: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

impl Ring {
    /// A ring over `ids` (the position in the slice is what lookups return).
    pub(super) fn new<'a>(ids: impl Iterator<Item = (usize, &'a str)>) -> Self {
        let mut points = Vec::new();
        for (index, id) in ids {
            for node in 0..VIRTUAL_NODES {
                points.push((hash(format!("{id}#{node}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The instances clockwise from `key`'s point, first owner first.
    pub(super) fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|&(point, _)| point < key);
        self.points[start..]
            .iter()
            .chain(&self.points[..start])
            .map(|&(_, index)| index)
    }
}
