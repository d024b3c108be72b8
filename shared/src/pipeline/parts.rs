//! Multipart part sizing: parts start small (bounded memory) and grow so an upload never needs part 10,001.
//!
//! S3 allows at most 10,000 parts, each at least 5 MiB (but the last) and at most 5 GiB. The dump's size is not
//! known up front, so the size doubles every 1,000 parts: 6 MiB parts carry the first 5.9 GiB, and the 10,000
//! parts together reach about 5.9 TiB, past S3's 5 TiB object limit. Memory grows only for dumps that need it:
//! a backup holds at most three parts (one filling, two uploading or waiting for their upload), so the part size
//! is most of its memory, and 6 MiB is the smallest start that still reaches 5 TiB (5 MiB would stop at 4.9 TiB).

pub const S3_MAX_PARTS: u32 = 10_000;
pub const S3_MIN_PART_SIZE: usize = 5 * 1024 * 1024;
pub const S3_MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSizer {
    pub initial: usize,
    pub parts_per_doubling: u32,
}

impl Default for PartSizer {
    fn default() -> Self {
        Self { initial: 6 * 1024 * 1024, parts_per_doubling: 1_000 }
    }
}

impl PartSizer {
    /// Size of part `number` (1-based).
    pub fn size_of(&self, number: u32) -> usize {
        let doublings = (number.saturating_sub(1) / self.parts_per_doubling).min(30);
        self.initial.saturating_mul(1usize << doublings).min(S3_MAX_PART_SIZE)
    }

    /// The most bytes `parts` parts can hold under this policy.
    pub fn capacity(&self, parts: u32) -> u128 {
        (1..=parts).map(|n| self.size_of(n) as u128).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_start_above_the_s3_minimum_and_double_every_thousand() {
        let s = PartSizer::default();
        assert!(s.size_of(1) >= S3_MIN_PART_SIZE);
        assert_eq!(s.size_of(1000), s.size_of(1));
        assert_eq!(s.size_of(1001), 2 * s.size_of(1));
        assert!(s.size_of(S3_MAX_PARTS) <= S3_MAX_PART_SIZE);
    }

    #[test]
    fn ten_thousand_parts_hold_more_than_s3s_largest_object() {
        const FIVE_TIB: u128 = 5 * 1024 * 1024 * 1024 * 1024;
        assert!(PartSizer::default().capacity(S3_MAX_PARTS) > FIVE_TIB);
    }
}
