//! Collection pause times as a log-linear histogram (HdrHistogram's layout in
//! miniature): any quantile within 12.5% of the true pause, in constant space, so a
//! heap that runs for days keeps its pause profile without growing.

/// Values below this have a bucket each.
const LINEAR: u64 = 16;
/// Sub-buckets per power of two above `LINEAR` (so a bucket spans 1/8 of its octave).
const SUB_BITS: u32 = 3;
const BUCKETS: usize = LINEAR as usize + (64 - LINEAR.trailing_zeros() as usize) * (1 << SUB_BITS);

/// Pause durations in microseconds.
#[derive(Default)]
pub(crate) struct Pauses {
    /// Allocated at the first pause: most heaps (a short task's) never collect.
    counts: Option<Box<[u32; BUCKETS]>>,
    total: u64,
}

impl Pauses {
    pub(crate) fn record(&mut self, us: u64) {
        let counts = self.counts.get_or_insert_with(|| Box::new([0; BUCKETS]));
        let b = &mut counts[bucket(us)];
        *b = b.saturating_add(1);
        self.total += 1;
    }

    /// The pause that fraction `q` of all pauses do not exceed (rounded up to its
    /// bucket's bound), or 0 before the first.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let Some(counts) = &self.counts else { return 0 };
        let want = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &c) in counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= want {
                return upper(i);
            }
        }
        upper(BUCKETS - 1)
    }
}

fn bucket(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros();
    let sub = (us >> (octave - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    LINEAR as usize + ((octave - LINEAR.trailing_zeros()) << SUB_BITS) as usize + sub as usize
}

/// The largest value that lands in bucket `b`.
fn upper(b: usize) -> u64 {
    if b < LINEAR as usize {
        return b as u64;
    }
    let k = b - LINEAR as usize;
    let octave = (k >> SUB_BITS) as u32 + LINEAR.trailing_zeros();
    let sub = (k & ((1 << SUB_BITS) - 1)) as u64;
    let width = 1u64 << (octave - SUB_BITS);
    // In this order so the last bucket's bound, u64::MAX, does not overflow.
    (1u64 << octave) + ((sub + 1) * width - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bound_is_within_an_eighth() {
        for us in (0..5000).chain([u64::MAX / 3, u64::MAX]) {
            let b = bucket(us);
            assert!(b < BUCKETS, "{us}");
            let hi = upper(b);
            assert!(hi >= us, "{us} -> {hi}");
            assert!(hi - us <= us / 8, "{us} -> {hi}");
            assert!(
                b == 0 || upper(b - 1) < us,
                "{us} also fits bucket {}",
                b - 1
            );
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut p = Pauses::default();
        assert_eq!(p.quantile(0.99), 0);
        for us in 1..=1000 {
            p.record(us);
        }
        let p99 = p.quantile(0.99);
        assert!((990..=990 + 990 / 8).contains(&p99), "{p99}");
        assert_eq!(p.quantile(1.0), upper(bucket(1000)));
        assert_eq!(p.quantile(0.001), 1);
    }
}
