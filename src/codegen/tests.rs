//! The generated C, built with the host compiler, against the Rust int8 reference executor.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::arch::Arch;
use crate::cost::{CostModel, EngineProfile};
use crate::export::QuantNet;
use crate::ir::{Activation, Network, Role, Shape, Site, lower};
use crate::space::SearchSpace;

fn space(name: &str) -> SearchSpace {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces").join(format!("{name}.toml"));
    SearchSpace::from_path(&path).unwrap()
}

fn random_inputs(n: usize, size: usize, seed: u64) -> Vec<Vec<i8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| (0..size).map(|_| rng.random_range(-128i32..=127) as i8).collect()).collect()
}

/// Build `model` (generated from `q`) with the host compiler and compare its outputs on `n`
/// random images with the reference, byte for byte; `what` names the build in a failure.
fn host_build_matches_reference(q: &QuantNet, model: &CModel, n: usize, seed: u64, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in model.files() {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let exe = tools::build_host(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let inputs = random_inputs(n, q.net.shape(q.net.input).elems(), seed);
    let got = tools::run_host(&exe, &inputs, q.net.shape(q.net.output).elems()).unwrap();
    for (i, (x, y)) in inputs.iter().zip(&got).enumerate() {
        assert_eq!(&q.run(x), y, "image {i}: {what} differs from the Rust reference");
    }
}

/// Per-layer C of `q` under `engine`'s plan, against the reference.
fn host_matches_reference(q: &QuantNet, engine: EngineProfile, n: usize, seed: u64) {
    let report = CostModel::new(engine).report(&q.net);
    host_build_matches_reference(q, &generate(q, &report.plan, "test").unwrap(), n, seed, "host C");
}

/// The patch-based C of `q` under `schedule`, against the reference; also checks that the step
/// table holds one step per tile and stage layer and the arena is the joint plan's.
fn patched_host_matches_reference(q: &QuantNet, schedule: crate::cost::patch::PatchSchedule, n: usize, seed: u64) {
    let engine = EngineProfile::default();
    let p = crate::cost::patch::plan_patches(&q.net, &crate::cost::layer_costs(&q.net), &engine, schedule).unwrap();
    let model = generate_patched(q, &p, "test").unwrap();
    assert_eq!(model.arena_bytes, p.plan.arena_bytes);
    assert!(model.source.contains(&format!("model_steps[{}]", p.tiles.len() * schedule.split)), "{}", schedule.describe(&q.net));
    host_build_matches_reference(q, &model, n, seed, &format!("patch-based host C ({})", schedule.describe(&q.net)));
}

#[test]
fn patched_host_c_is_bit_exact_on_random_archs() {
    use crate::cost::patch::{PatchSchedule, valid_splits};
    // MBConv (mcunet: kernels 3/5/7, residual adds inside the stage) and fused-MBConv (dense kxk
    // expands) networks, cut at a residual add and at the deepest valid point, 2..4 tiles.
    for (name, seed) in [("mcunet", 3), ("cifar-fused", 4)] {
        let s = space(name);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut arch = Arch::sample(&s, &mut rng);
        arch.resolution = *s.resolutions.iter().min().unwrap();
        let net = lower(&arch, &s);
        let q = QuantNet::synthetic(&net, 30 + seed);
        let splits = valid_splits(&net);
        let at_add = splits.iter().copied().find(|&k| net.layers[k - 1].kind == LayerKind::Add).expect("a residual add");
        let deepest = *splits.iter().filter(|&&k| net.shape(net.layers[k - 1].output).h >= 4).max().unwrap();
        for (k, tiles) in [(at_add, 2), (at_add, 3), (deepest, 4)] {
            patched_host_matches_reference(&q, PatchSchedule { tiles, split: k }, 2, seed);
        }
    }
    // A plan of another network is refused, not indexed out of bounds.
    let s = space("cifar");
    let (a, b) = (lower(&Arch::smallest(&s), &s), lower(&Arch::largest(&s), &s));
    let costs = crate::cost::layer_costs(&a);
    let split = *crate::cost::patch::valid_splits(&a).last().unwrap();
    let p = crate::cost::patch::plan_patches(&a, &costs, &EngineProfile::default(), PatchSchedule { tiles: 2, split }).unwrap();
    assert!(generate_patched(&QuantNet::synthetic(&b, 1), &p, "test").is_err());
}

#[test]
fn host_c_is_bit_exact_on_random_archs() {
    for (name, count) in [("cifar", 3), ("mcunet", 1)] {
        let s = space(name);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for k in 0..count {
            let mut arch = Arch::sample(&s, &mut rng);
            if name == "mcunet" {
                // Keep the host test quick: the smallest resolution.
                arch.resolution = *s.resolutions.iter().min().unwrap();
            }
            let q = QuantNet::synthetic(&lower(&arch, &s), 100 + k);
            host_matches_reference(&q, EngineProfile::default(), 4, k);
        }
    }
}

#[test]
fn host_c_is_bit_exact_without_in_place_and_on_edge_shapes() {
    // Odd sizes everywhere: odd channel counts (DSP tails), odd pixel counts, stride 2 on odd
    // maps, every kernel size, a residual, a kxk conv with many input channels.
    let mut net = Network::new(Shape { h: 7, w: 9, c: 5 });
    let block = Site::Block { stage: 0, block: 0 };
    let c = net
        .wire(
            LayerKind::Conv2d { kernel: 3, stride: 2, padding: crate::ir::Padding::same(7, 9, 3, 2).0, out_channels: 7 },
            Activation::Relu6,
            &[net.input],
            Site::Stem,
            Role::Stem,
        )
        .unwrap();
    let mut x = c;
    for (k, s) in [(3, 1), (5, 2), (7, 1)] {
        let xs = net.shape(x);
        let e = net
            .wire(
                LayerKind::Conv2d { kernel: 1, stride: 1, padding: crate::ir::Padding::same(1, 1, 1, 1).0, out_channels: 13 },
                Activation::Relu6,
                &[x],
                block,
                Role::Expand,
            )
            .unwrap();
        let d = net
            .wire(
                LayerKind::DepthwiseConv2d { kernel: k, stride: s, padding: crate::ir::Padding::same(xs.h, xs.w, k, s).0 },
                Activation::Relu6,
                &[e],
                block,
                Role::Depthwise,
            )
            .unwrap();
        let p = net
            .wire(
                LayerKind::Conv2d { kernel: 1, stride: 1, padding: crate::ir::Padding::same(1, 1, 1, 1).0, out_channels: 7 },
                Activation::None,
                &[d],
                block,
                Role::Project,
            )
            .unwrap();
        x = if s == 1 { net.wire(LayerKind::Add, Activation::None, &[p, x], block, Role::Residual).unwrap() } else { p };
    }
    let g = net.wire(LayerKind::GlobalAvgPool, Activation::None, &[x], Site::Head, Role::Pool).unwrap();
    net.wire(LayerKind::FullyConnected { out_features: 11 }, Activation::None, &[g], Site::Head, Role::Classifier).unwrap();
    let q = QuantNet::synthetic(&net, 9);
    host_matches_reference(&q, EngineProfile::default(), 8, 1);
    host_matches_reference(&q, EngineProfile { in_place_depthwise: false, ..EngineProfile::default() }, 8, 2);
    // Tile by tile, uneven tiles of odd maps: every valid cut (stride-2 k5, residual k7, the
    // stem alone) with 2 and 3 tiles per side where the stage output allows.
    for split in crate::cost::patch::valid_splits(&q.net) {
        let out = q.net.shape(q.net.layers[split - 1].output);
        for tiles in (2..=3).filter(|&t| t <= out.h.min(out.w)) {
            patched_host_matches_reference(&q, crate::cost::patch::PatchSchedule { tiles, split }, 3, split as u64);
        }
    }
}

/// The DSP output stage of `tn_kernels.c` (`tn_fast_out`) rests on two identities; here they are
/// checked with the instructions' exact semantics (SMMULR: high word of a*b + 2^31; QADD:
/// saturating add) against TFLite's requantisation, on random and extreme accumulators, for
/// every channel `tn_fast` admits (multiplier in [2^30, 2^31), right shift 1..23).
#[test]
fn fast_output_stage_equals_the_reference_requantisation() {
    use crate::export::quant::{Requant, multiply_by_quantized_multiplier};
    use rand::{Rng, SeedableRng};
    let smmulr = |a: i32, b: i32| (((a as i64) * (b as i64) + (1i64 << 31)) >> 32) as i32;
    // tn_fast_out before its clamp: the output offset folded into the rounding term.
    let fast = |acc: i32, m: i32, e: i32, offset: i32| {
        let y = smmulr(acc, ((m as u32) << 1) as i32).wrapping_add(acc);
        y.saturating_add((1 << (e - 1)) + (offset << e) + (y >> 31)) >> e
    };
    let clamp = |v: i32, lo: i32, hi: i32| v.clamp(lo, hi);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let edges = [0, 1, -1, 2, -2, i32::MAX, i32::MIN, i32::MAX - 1, i32::MIN + 1, 1 << 30, -(1 << 30), (1 << 30) - 1, 12345, -12345];
    for round in 0..200_000 {
        let m = if round % 7 == 0 { [1 << 30, i32::MAX][round % 2] } else { rng.random_range((1 << 30)..=i32::MAX) };
        let e = rng.random_range(1..=23);
        let acc = if round % 3 == 0 { edges[round % edges.len()] } else { rng.random::<i32>() >> rng.random_range(0..31) };
        let reference = multiply_by_quantized_multiplier(acc, Requant { multiplier: m, shift: -e });
        for (offset, lo, hi) in [(-128, -128, 127), (0, -128, 127), (127, -128, 127), (-128, -128, -52), (5, 5, 127), (-6, -6, 114)] {
            let got = fast(acc, m, e, offset);
            assert_eq!(
                clamp(reference.saturating_add(offset), lo, hi),
                clamp(got, lo, hi),
                "acc {acc}, multiplier {m}, shift -{e}, offset {offset}: reference {reference}, fast {got}"
            );
            // Away from the saturation points the two agree before the clamp too.
            if reference.abs() < (i32::MAX >> e) - 256 {
                assert_eq!(reference + offset, got, "acc {acc}, multiplier {m}, shift -{e}, offset {offset}");
            }
        }
        // tn_fast_rq (the residual add's three requantisations): exact for |x| < 2^29, e in 0..23.
        let (x, e) = (acc >> 3, e - (round % 2) as i32);
        let y = smmulr(x, ((m as u32) << 1) as i32) + x;
        let (rnd, smask) = if e > 0 { (1 << (e - 1), -1) } else { (0, 0) };
        let add_form = (y + rnd + ((y >> 31) & smask)) >> e;
        assert_eq!(add_form, multiply_by_quantized_multiplier(x, Requant { multiplier: m, shift: -e }), "x {x}, m {m}, e {e}");
    }
}
