//! Fixtures shared by the integration tests.

use std::path::Path;

/// Write the quadrant dataset and its space into `d`: 160 grey 12x12 images of 4 classes
/// (class = which quadrant is bright) as IDX files under `data/`, and `quad.toml`, a 2-stage
/// space small enough to train in seconds.
#[allow(dead_code)]
pub fn write_quad(d: &Path) {
    use rand::{Rng, SeedableRng};
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (n, s) = (160, 12);
    let mut pixels = Vec::with_capacity(n * s * s);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = (i % 4) as u8;
        labels.push(c);
        for y in 0..s {
            for x in 0..s {
                let q = (y >= s / 2) as u8 * 2 + (x >= s / 2) as u8;
                pixels.push(if q == c { 200 } else { 40 } + rng.random_range(0..30u8));
            }
        }
    }
    for (img, lab) in [("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")] {
        tinynas::data::idx::write_idx_images(&data.join(img), n, s, s, &pixels).unwrap();
        tinynas::data::idx::write_idx_labels(&data.join(lab), &labels).unwrap();
    }
    std::fs::write(
        d.join("quad.toml"),
        "name = \"quad\"\ninput_channels = 1\nnum_classes = 10\nwidth_multipliers = [0.5, 1.0]\nresolutions = [8, 12]\n\
         kernel_sizes = [3, 5]\nexpand_ratios = [2, 3]\nchannel_divisor = 4\n[stem]\nchannels = 8\nkernel = 3\nstride = 1\n\
         [first_block]\nchannels = 8\nkernel = 3\n[[stages]]\nchannels = 12\nstride = 2\ndepths = [1, 2]\n\
         [[stages]]\nchannels = 16\nstride = 2\ndepths = [1, 2]\n",
    )
    .unwrap();
}
