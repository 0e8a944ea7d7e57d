//! Where the generator's choices come from: a seeded PRNG for reproducible stand-alone runs,
//! or a fuzzer's bytes (`arbitrary`), behind one small trait so the generator is the same
//! code in both.

/// A source of choices. Running dry must keep answering (with 0): the generator treats
/// choice 0 as the simplest option everywhere, so a source that only says 0 still ends.
pub trait Source {
    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u32) -> u32;
}

/// SplitMix64 (Steele, Lea and Flood): tiny, fast, and every seed gives a good stream, so
/// consecutive seeds are independent programs.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Source for SplitMix {
    fn below(&mut self, n: u32) -> u32 {
        // Multiply-shift: no modulo bias worth caring about for n < 2^32.
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }
}

#[cfg(feature = "arbitrary")]
impl Source for arbitrary::Unstructured<'_> {
    fn below(&mut self, n: u32) -> u32 {
        self.int_in_range(0..=n - 1).unwrap_or(0)
    }
}
