//! One seed for every source of randomness: libtorch's generators and the
//! Rust-side RNG used for shuffling and sampling.
use std::cell::RefCell;

thread_local! {
    static SEED: RefCell<u64> = const { RefCell::new(0) };
}

/// Seeds libtorch (CPU and CUDA) and remembers the seed for Rust-side RNGs.
pub fn seed(seed: u64) {
    tch::manual_seed(seed as i64);
    if tch::Cuda::is_available() {
        tch::Cuda::manual_seed_all(seed);
    }
    SEED.with(|s| *s.borrow_mut() = seed);
}

/// The last seed set, for components that derive their own RNG from it.
pub fn current_seed() -> u64 {
    SEED.with(|s| *s.borrow())
}
