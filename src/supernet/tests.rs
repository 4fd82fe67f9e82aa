use super::*;
use crate::arch::Arch;
use crate::ir::{Padding, lower};
use crate::space::SearchSpace;
use burn::module::Module;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A small space with every elastic dimension (width, resolution, depth, kernel, expand).
pub(crate) const TINY_SPACE: &str = r#"
name = "tiny"
input_channels = 1
num_classes = 10
width_multipliers = [0.5, 1.0]
resolutions = [12, 16]
kernel_sizes = [3, 5, 7]
expand_ratios = [2, 3]
channel_divisor = 4
[stem]
channels = 8
kernel = 3
stride = 1
[first_block]
channels = 8
kernel = 3
[[stages]]
channels = 16
stride = 2
depths = [1, 2]
[[stages]]
channels = 24
stride = 2
depths = [1, 2]
"#;

pub(crate) fn tiny_space() -> SearchSpace {
    SearchSpace::from_toml_str(TINY_SPACE, "tiny").unwrap()
}

/// [`TINY_SPACE`] with a fused first stage (dense elastic kernel 3 or 5, expand 1 or 2).
pub(crate) fn tiny_fused_space() -> SearchSpace {
    let text = TINY_SPACE.replacen(
        "[[stages]]\nchannels = 16\nstride = 2\ndepths = [1, 2]",
        "[[stages]]\nblock = \"fused\"\nchannels = 16\nstride = 2\ndepths = [1, 2]\nkernel_sizes = [3, 5]\nexpand_ratios = [1, 2]",
        1,
    );
    assert_ne!(text, TINY_SPACE);
    SearchSpace::from_toml_str(&text.replace("name = \"tiny\"", "name = \"tiny-fused\""), "tiny-fused").unwrap()
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn input(n: usize, c: usize, r: usize, seed: u64, device: &burn::tensor::Device) -> Tensor<4> {
    device.seed(seed);
    Tensor::random([n, c, r, r], Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn gradient_is_zero_outside_the_active_window() {
    let space = tiny_space();
    let device = burn::tensor::Device::flex().autodiff();
    let model = Supernet::new(&space, 1, &device);
    let arch = Arch::smallest(&space);
    let net = lower(&arch, &space);
    model.check(&net).unwrap();
    let logits = model.forward(input(4, 1, 16, 3, &device), &net, &BnMode::Train);
    assert_eq!(logits.dims(), [4, 10]);
    // A loss that depends on every logit with distinct weights.
    let weights = Tensor::<2>::from_data(TensorData::new((0..40).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(), [4, 10]), &device);
    let grads = (logits * weights).sum().backward();

    // Expand of stage 0 block 0: the smallest subnet uses [mid(cin 4, e 2), cin 4] of the full
    // [mid(8, 3), 8] weight.
    let cin = space.first_block_channels(0.5);
    let mid = space.mid_channels(cin, 2);
    let slot = &model.stages[0][0];
    let expand = slot.expand.as_ref().unwrap();
    let g = expand.weight.val().grad(&grads).expect("expand weight has a gradient");
    let [o, i, _, _] = g.dims();
    assert!(mid < o && cin < i, "the smallest subnet must be strictly inside the full weight");
    let gv = values(g);
    let (mut inside, mut outside) = (0f32, 0f32);
    for a in 0..o {
        for b in 0..i {
            let v = gv[a * i + b].abs();
            if a < mid && b < cin { inside += v } else { outside += v }
        }
    }
    assert!(inside > 0.0, "active window gets gradient");
    assert_eq!(outside, 0.0, "inactive weights get exactly zero gradient");

    // Depthwise: kernel 3 of the stored 7x7, first `mid` channels.
    let dw = slot.depthwise.as_ref().unwrap();
    let g = values(dw.weight.val().grad(&grads).unwrap());
    let (c_max, k) = (dw.max_channels(), 7);
    let (mut inside, mut outside) = (0f32, 0f32);
    for ch in 0..c_max {
        for y in 0..k {
            for x in 0..k {
                let v = g[(ch * k + y) * k + x].abs();
                if ch < mid && (2..5).contains(&y) && (2..5).contains(&x) { inside += v } else { outside += v }
            }
        }
    }
    assert!(inside > 0.0);
    assert_eq!(outside, 0.0);
    // The 5->3 transform is used (gets gradient); nothing maps 7->7.
    assert!(dw.transforms[0].val().grad(&grads).is_some());

    // Absent block slot (depth 1 of 2): no gradient at all, or an all-zero one.
    if let Some(g) = model.stages[0][1].project.weight.val().grad(&grads) {
        assert!(values(g).iter().all(|v| *v == 0.0));
    }

    // BN gamma of the stem: width 0.5 uses the first 4 of 8 channels.
    let stem_c = space.stem_channels(0.5);
    let g = model.stem.bn.gamma.val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert!(g[..stem_c].iter().any(|v| *v != 0.0));
    assert!(g[stem_c..].iter().all(|v| *v == 0.0), "{g:?}");

    // Classifier rows beyond the active last width.
    let c_last = space.stage_channels(1, 0.5);
    let g = model.classifier_weight.val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert!(g[..c_last * 10].iter().any(|v| *v != 0.0));
    assert!(g[c_last * 10..].iter().all(|v| *v == 0.0));
}

#[test]
fn recalibration_changes_exactly_the_active_statistics() {
    let space = tiny_space();
    let device = burn::tensor::Device::flex();
    let model = Supernet::new(&space, 2, &device);
    let snapshot = |m: &Supernet| -> Vec<(Vec<f32>, Vec<f32>)> {
        m.batch_norms()
            .iter()
            .map(|bn| {
                (
                    bn.running_mean.value_sync().into_data().try_to_vec::<f32>().unwrap(),
                    bn.running_var.value_sync().into_data().try_to_vec::<f32>().unwrap(),
                )
            })
            .collect()
    };
    let before = snapshot(&model);
    let arch = Arch::smallest(&space);
    let net = lower(&arch, &space);
    // At the subnet's own resolution, so the stem sees the batches unresized.
    let batches: Vec<Tensor<4>> = (0..3).map(|i| input(5, 1, arch.resolution, 10 + i, &device)).collect();
    let seen = recalibrate(&model, &net, batches.clone());
    assert_eq!(seen, 15);
    let after = snapshot(&model);

    // Which BN uses how many channels in this subnet.
    let mut active = std::collections::HashMap::new();
    for layer in &net.layers {
        let c = net.shape(layer.output).c;
        match (layer.kind, layer.site, layer.role) {
            (crate::ir::LayerKind::Conv2d { .. }, crate::ir::Site::Stem, _) => active.insert(model.stem.bn.id, c),
            (crate::ir::LayerKind::DepthwiseConv2d { .. }, crate::ir::Site::FirstBlock, _) => active.insert(model.first_dw.bn.id, c),
            (crate::ir::LayerKind::Conv2d { .. }, crate::ir::Site::FirstBlock, _) => active.insert(model.first_project.bn.id, c),
            (crate::ir::LayerKind::Conv2d { .. }, crate::ir::Site::Block { stage, block }, crate::ir::Role::Expand) => {
                active.insert(model.stages[stage][block].expand.as_ref().unwrap().bn.id, c)
            }
            (crate::ir::LayerKind::DepthwiseConv2d { .. }, crate::ir::Site::Block { stage, block }, _) => {
                active.insert(model.stages[stage][block].depthwise.as_ref().unwrap().bn.id, c)
            }
            (crate::ir::LayerKind::Conv2d { .. }, crate::ir::Site::Block { stage, block }, crate::ir::Role::Project) => {
                active.insert(model.stages[stage][block].project.bn.id, c)
            }
            _ => None,
        };
    }
    assert!(active.len() >= 7, "stem, first dw/project and 2 blocks of 2-3 BNs");
    for (bn, ((m0, v0), (m1, v1))) in model.batch_norms().iter().zip(before.iter().zip(&after)) {
        let c = active.get(&bn.id).copied().unwrap_or(0);
        assert!(c < m0.len(), "the smallest subnet leaves some channels of every BN inactive");
        for j in 0..m0.len() {
            if j < c {
                assert_ne!(m1[j].to_bits(), m0[j].to_bits(), "bn {} mean[{j}] not recalibrated", bn.id);
                assert_ne!(v1[j].to_bits(), v0[j].to_bits(), "bn {} var[{j}] not recalibrated", bn.id);
            } else {
                assert_eq!(m1[j].to_bits(), m0[j].to_bits(), "bn {} mean[{j}] inactive but changed", bn.id);
                assert_eq!(v1[j].to_bits(), v0[j].to_bits(), "bn {} var[{j}] inactive but changed", bn.id);
            }
        }
    }

    // Exact averaging: the stem BN's mean is the mean over all 15 images of the stem conv output.
    let stem_c = space.stem_channels(0.5);
    let all = Tensor::cat(batches, 0);
    let layer = &net.layers[0];
    let crate::ir::LayerKind::Conv2d { stride, padding, .. } = layer.kind else { panic!() };
    let w = model.stem.weight.val().slice([0..stem_c, 0..1, 0..3, 0..3]);
    let y = elastic::conv_padded(all, w, stride, padding, 1);
    let mean: Vec<f32> = y.mean_dims(&[0, 2, 3]).into_data().try_to_vec::<f32>().unwrap();
    let got = &after[0].0[..stem_c];
    for (a, b) in mean.iter().zip(got) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn save_load_round_trip_gives_identical_outputs() {
    let space = tiny_space();
    let device = burn::tensor::Device::flex();
    let model = Supernet::new(&space, 3, &device);
    let arch = Arch::sample(&space, &mut ChaCha8Rng::seed_from_u64(5));
    let net = lower(&arch, &space);
    recalibrate(&model, &net, [input(8, 1, 16, 1, &device)]);
    let x = input(3, 1, 16, 2, &device);
    let before = values(model.forward(x.clone(), &net, &BnMode::Eval).reshape([3, 10, 1, 1]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.bpk");
    model.clone().save_file(&path).unwrap();
    let other = Supernet::new(&space, 99, &device);
    let other_out = values(other.forward(x.clone(), &net, &BnMode::Eval).reshape([3, 10, 1, 1]));
    assert_ne!(before, other_out, "a differently seeded model differs");
    let loaded = other.try_load_file(&path).unwrap();
    let after = values(loaded.forward(x, &net, &BnMode::Eval).reshape([3, 10, 1, 1]));
    assert_eq!(before, after);
}

#[test]
fn every_sampled_arch_runs_with_the_ir_shapes() {
    let space = tiny_space();
    let device = burn::tensor::Device::flex();
    let model = Supernet::new(&space, 4, &device);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for i in 0..6 {
        let arch = if i == 0 { Arch::largest(&space) } else { Arch::sample(&space, &mut rng) };
        let net = lower(&arch, &space);
        model.check(&net).unwrap();
        // Input at the data resolution (16); the forward resizes to arch.resolution.
        let y = model.forward(input(2, 1, 16, i, &device), &net, &BnMode::Train);
        assert_eq!(y.dims(), [2, 10]);
        assert!(values(y.reshape([2, 10, 1, 1])).iter().all(|v| v.is_finite()));
    }
    // A network of another space is rejected, not run.
    let mut big = space.clone();
    big.stages[0].channels = 64;
    let net = lower(&Arch::largest(&big), &big);
    let err = model.check(&net).unwrap_err().to_string();
    assert!(err.contains("does not fit the supernet") && err.contains("s0.b0"), "{err}");
}

#[test]
fn elastic_kernel_is_centre_crop_with_identity_transforms() {
    let device = burn::tensor::Device::flex();
    let dw = elastic::ElasticDepthwise::new(6, &[3, 5, 7], 0, &mut ChaCha8Rng::seed_from_u64(1), &device);
    let full = dw.weight.val();
    assert_eq!(values(dw.kernel(4, 7)), values(full.clone().slice([0..4, 0..1, 0..7, 0..7])));
    assert_eq!(values(dw.kernel(4, 5)), values(full.clone().slice([0..4, 0..1, 1..6, 1..6])));
    assert_eq!(values(dw.kernel(4, 3)), values(full.slice([0..4, 0..1, 2..5, 2..5])));
}

#[test]
fn asymmetric_padding_matches_explicit_conv_padding() {
    let device = burn::tensor::Device::flex();
    let x = input(2, 3, 8, 1, &device);
    device.seed(2);
    let w: Tensor<4> = Tensor::random([3, 1, 3, 3], Distribution::Normal(0.0, 1.0), &device);
    // 8x8, k3, stride 2: TFLite SAME pads 0 before and 1 after.
    let (p, oh, _) = Padding::same(8, 8, 3, 2);
    assert!(!p.is_symmetric());
    let ours = elastic::conv_padded(x.clone(), w.clone(), 2, p, 3);
    assert_eq!(ours.dims(), [2, 3, oh, oh]);
    let reference =
        burn::tensor::module::conv2d(x, w, None, ConvOptions::new_with_padding([2, 2], [(p.top, p.bottom), (p.left, p.right)], [1, 1], 3));
    let (a, b) = (values(ours), values(reference));
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() < 1e-5);
    }
}

#[test]
fn device_errors_name_the_missing_backend() {
    assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
    let err = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
    assert!(err.contains("tpu") && err.contains("cpu, wgpu, vulkan, cuda"), "{err}");
    #[cfg(not(feature = "cuda"))]
    {
        let err = DeviceChoice::Cuda.device().unwrap_err().to_string();
        assert_eq!(err, "this build has no cuda backend: rebuild with --features cuda");
    }
    assert!(DeviceChoice::Cpu.device().is_ok());
}

#[test]
fn fused_block_is_a_dense_centre_cropped_conv_and_trains_only_its_window() {
    let space = tiny_fused_space();
    let device = burn::tensor::Device::flex().autodiff();
    let model = Supernet::new(&space, 2, &device);
    let slot = &model.stages[0][0];
    assert!(slot.depthwise.is_none());
    let expand = slot.expand.as_ref().unwrap();
    // [mid(8 x 2), cin 8, 5, 5] at full width.
    assert_eq!(expand.weight.dims(), [16, 8, 5, 5]);
    let mut arch = Arch::smallest(&space);
    arch.stages[0][0] = crate::arch::BlockChoice { kernel: 3, expand: 2 };
    let net = lower(&arch, &space);
    let layer = net.layers.iter().find(|l| l.name() == "s0.b0.expand").unwrap();
    assert!(matches!(layer.kind, crate::ir::LayerKind::Conv2d { kernel: 3, stride: 2, .. }));
    assert!(!net.layers.iter().any(|l| l.name() == "s0.b0.dw"));
    model.check(&net).unwrap();
    let logits = model.forward(input(2, 1, 16, 3, &device), &net, &BnMode::Train);
    let grads = logits.sum().backward();
    let g = values(expand.weight.val().grad(&grads).unwrap());
    let cin = space.first_block_channels(0.5);
    let mid = space.mid_channels(cin, 2);
    let (mut inside, mut outside) = (0f32, 0f32);
    for o in 0..16 {
        for i in 0..8 {
            for y in 0..5 {
                for x in 0..5 {
                    let v = g[((o * 8 + i) * 5 + y) * 5 + x].abs();
                    if o < mid && i < cin && (1..4).contains(&y) && (1..4).contains(&x) { inside += v } else { outside += v }
                }
            }
        }
    }
    assert!(inside > 0.0, "the centre 3x3 of the active channels is trained");
    assert_eq!(outside, 0.0, "the rim of the 5x5 and inactive channels are not");
    // The crop is the stored weight's centre.
    let w = expand.weight_for(4, 2, 3);
    assert_eq!(values(w), values(expand.weight.val().slice([0..4, 0..2, 1..4, 1..4])));
}

#[test]
fn fused_space_samples_run_and_round_trip() {
    let space = tiny_fused_space();
    let device = burn::tensor::Device::flex();
    let model = Supernet::new(&space, 5, &device);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for i in 0..6 {
        let arch = if i == 0 { Arch::largest(&space) } else { Arch::sample(&space, &mut rng) };
        arch.validate(&space, "t").unwrap();
        let net = lower(&arch, &space);
        model.check(&net).unwrap();
        let y = model.forward(input(2, 1, 16, i, &device), &net, &BnMode::Train);
        assert!(values(y.reshape([2, 10, 1, 1])).iter().all(|v| v.is_finite()));
    }
    // Expand ratio 1 still has the dense expand conv (mid = cin): fused blocks always have one.
    let mut arch = Arch::smallest(&space);
    arch.stages[0] = vec![crate::arch::BlockChoice { kernel: 5, expand: 1 }; 2];
    let net = lower(&arch, &space);
    let expands =
        net.layers.iter().filter(|l| l.site == crate::ir::Site::Block { stage: 0, block: 1 } && l.role == crate::ir::Role::Expand);
    assert_eq!(expands.count(), 1);
    // A kernel of the MBConv stage is not valid in the fused stage.
    arch.stages[0][0].kernel = 7;
    let err = arch.validate(&space, "a.json").unwrap_err().to_string();
    assert!(err.contains("stages[0][0].kernel") && err.contains("[3, 5]"), "{err}");
}
