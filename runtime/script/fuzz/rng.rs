//! SplitMix64 (Steele, Lea and Flood 2014): program `i` of seed `s` comes
//! from its own generator, so any program is reproduced without the others.
pub struct Rng(u64);

impl Rng {
    /// The generator of program `index` of run `seed`.
    pub fn for_program(seed: u64, index: u64) -> Self {
        let mut rng = Rng(seed ^ 0x5eed_5ae1_ab00_0000);
        rng.0 ^= rng
            .next_u64()
            .wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_s_generator_depends_only_on_the_seed_and_its_index() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_program(7, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_program(7, 3).next_u64(),
            Rng::for_program(7, 4).next_u64()
        );
    }
}
