//! The SRAM arena planner: where every activation and scratch buffer lives, and for how long.
//!
//! Rules (see the memory model reference: TinyEngine and TFLite Micro plan the same way):
//! - execution order is the IR order, step `i` runs layer `i`;
//! - a tensor lives from the step that produces it (step 0 for the network input) to the step
//!   of its last reader (the network output lives to the end), so a residual input stays live
//!   across its whole block;
//! - each layer's scratch buffer (im2col columns, depthwise channel plane, pooling
//!   accumulators) lives during that step only;
//! - every size is rounded up to the engine's alignment;
//! - an in-place depthwise writes its output over its input (allowed when the input dies at
//!   that layer): the two tensors form one buffer, the input's rectangle in (time, address)
//!   followed by the smaller output's, at one base address;
//! - a fused residual add ([`fused_add`]) runs with its block's 1x1 project conv: the project
//!   output and the sum share the shortcut's buffer, and the conv stages its output through a
//!   small scratch chunk of pixels that is added into the shortcut right away;
//! - buffers are placed largest first, each at the lowest address that collides with no
//!   already-placed buffer it shares a step with (first fit).

use super::{EngineProfile, LayerCost};
use crate::ir::{LayerId, LayerKind, Network, TensorId};
use serde::Serialize;

/// What a placed buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BufferKind {
    /// An activation tensor.
    Tensor(TensorId),
    /// The scratch buffer of a layer.
    Scratch(LayerId),
    /// A tensor of a patch stage ([`super::patch`]), sized for its largest tile.
    Tile(TensorId),
}

/// One buffer's address and lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// What is stored.
    pub what: BufferKind,
    /// Byte offset in the arena (a multiple of the alignment).
    pub offset: u64,
    /// Aligned size in bytes.
    pub size: u64,
    /// Size before alignment.
    pub bytes: u64,
    /// First step at which it is live.
    pub first: usize,
    /// Last step at which it is live (inclusive).
    pub last: usize,
}

/// The planned arena.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArenaPlan {
    /// Arena size: the highest end address of any placement.
    pub arena_bytes: u64,
    /// Every tensor and scratch buffer (tensors first, by id, then scratch by layer).
    pub placements: Vec<Placement>,
    /// Per step: bytes of live buffers (an in-place pair counted once).
    pub live_bytes: Vec<u64>,
    /// Per step: highest end address among live buffers.
    pub high_water: Vec<u64>,
    /// Depthwise layers planned in place.
    pub in_place: Vec<LayerId>,
    /// Add layers fused into the 1x1 conv before them ([`fused_add`]).
    pub fused_adds: Vec<LayerId>,
}

impl ArenaPlan {
    /// Placement of tensor `t`.
    pub fn tensor(&self, t: TensorId) -> Option<&Placement> {
        self.placements.iter().find(|p| p.what == BufferKind::Tensor(t))
    }
}

/// Whether layer `i` runs as an in-place depthwise: a depthwise whose input is read by nobody
/// later. `last_use` is [`Network::last_use`].
pub fn is_in_place(net: &Network, last_use: &[Option<usize>], enabled: bool, i: usize) -> bool {
    enabled && matches!(net.layers[i].kind, LayerKind::DepthwiseConv2d { .. }) && last_use[net.layers[i].input.0 as usize] == Some(i)
}

/// The shortcut tensor of add layer `i` when the add can be fused into the layer before it: that
/// layer is a 1x1 stride-1 conv producing one of the add's inputs and read by nothing else, and
/// the other input (the shortcut) dies at the add. The fused step then computes the conv a chunk
/// of pixels at a time into scratch ([`fused_add_chunk`]) and adds each chunk into the shortcut in
/// place, so the conv output never exists as a whole and the sum takes the shortcut's buffer
/// (the element-wise add reads each shortcut byte before writing it).
pub fn fused_add(net: &Network, last_use: &[Option<usize>], enabled: bool, i: usize) -> Option<TensorId> {
    let add = &net.layers[i];
    if !enabled || add.kind != LayerKind::Add || i == 0 {
        return None;
    }
    let conv = &net.layers[i - 1];
    let pointwise = matches!(conv.kind, LayerKind::Conv2d { kernel: 1, stride: 1, .. });
    let other = add.input2?;
    let skip = if add.input == conv.output {
        other
    } else if other == conv.output {
        add.input
    } else {
        return None;
    };
    let dies = |t: TensorId| last_use[t.0 as usize] == Some(i);
    (pointwise && skip != conv.output && dies(conv.output) && dies(skip)).then_some(skip)
}

/// Pixels per chunk of a fused add's conv over `pixels` output pixels of `channels` channels:
/// about 1 KiB of staging, at least 8 pixels (the conv's per-call set-up is paid per chunk), an
/// even count (the kernel's pixel pairs), at most the whole map.
pub fn fused_add_chunk(pixels: usize, channels: usize) -> usize {
    let n = (1024 / channels.max(1)).max(8) & !1;
    n.min(pixels)
}

/// Scratch bytes of a fused add's conv (layer `i - 1` for add layer `i`).
pub fn fused_add_scratch(net: &Network, i: usize) -> u64 {
    let y = net.shape(net.layers[i].output);
    (fused_add_chunk(y.h * y.w, y.c) * y.c) as u64
}

/// A rectangle in (time, address): one tensor or scratch of a buffer.
#[derive(Debug, Clone, Copy)]
struct Rect {
    first: usize,
    last: usize,
    size: u64,
    bytes: u64,
    buf: u32,
    /// Next rect of the same buffer, or `NONE`.
    next: u32,
    what: BufferKind,
}

#[derive(Debug, Clone, Copy)]
struct Buf {
    head: u32,
    tail: u32,
    max_size: u64,
    first: usize,
    base: u64,
}

const NONE: u32 = u32::MAX;

/// Reusable memory for [`plan_arena_into`].
#[derive(Debug, Default)]
pub struct PlanWorkspace {
    rects: Vec<Rect>,
    bufs: Vec<Buf>,
    order: Vec<u32>,
    /// Per step, the placed rects live at that step.
    live: Vec<Vec<u32>>,
    /// Forbidden open intervals (start, end) for a buffer's base address.
    forbidden: Vec<(i64, i64)>,
    seen: Vec<u32>,
    stamp: u32,
    last_use: Vec<Option<usize>>,
    rect_of_tensor: Vec<u32>,
}

/// Plan the arena of `net` with a fresh workspace.
pub fn plan_arena(net: &Network, costs: &[LayerCost], engine: &EngineProfile) -> ArenaPlan {
    plan_arena_into(net, costs, engine, &mut PlanWorkspace::default(), true)
}

/// Plan the arena of `net` reusing `ws`. `costs[i]` gives layer i's scratch size. With
/// `detail == false` only `arena_bytes` is filled (the search's fast path).
pub fn plan_arena_into(net: &Network, costs: &[LayerCost], engine: &EngineProfile, ws: &mut PlanWorkspace, detail: bool) -> ArenaPlan {
    let align = engine.align.max(1) as u64;
    let round = |b: u64| b.div_ceil(align) * align;
    let steps = net.layers.len() + 1;
    collect_rects(net, costs, engine, ws, round);
    let (in_place, fused_adds): (Vec<LayerId>, Vec<LayerId>) = if !detail {
        (Vec::new(), Vec::new())
    } else {
        let fused = (0..net.layers.len())
            .filter(|&i| fused_add(net, &ws.last_use, engine.fused_add, i).is_some())
            .map(|i| LayerId(i as u32))
            .collect();
        let in_place = net
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                let r = ws.rect_of_tensor[l.output.0 as usize];
                let buf = ws.rects[r as usize].buf as usize;
                matches!(l.kind, LayerKind::DepthwiseConv2d { .. }) && ws.bufs[buf].head != r
            })
            .map(|(i, _)| LayerId(i as u32))
            .collect();
        (in_place, fused)
    };

    let arena = place(ws, steps);
    let mut plan = ArenaPlan { arena_bytes: arena, in_place, fused_adds, ..Default::default() };
    if detail {
        fill_detail(ws, steps, &mut plan);
    }
    plan
}

/// A buffer for [`plan_requests`]: one rectangle in (step, address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferRequest {
    /// First step at which it is live.
    pub first: usize,
    /// Last step at which it is live (inclusive).
    pub last: usize,
    /// Size before alignment.
    pub bytes: u64,
    /// What it holds.
    pub what: BufferKind,
    /// Index of an earlier request whose buffer this one shares (an in-place pair: same base).
    pub join: Option<usize>,
}

/// Plan an arbitrary list of buffers over `steps` steps with the same placement rules as
/// [`plan_arena`] (largest first, first fit, joined requests at one base). `in_place` is copied
/// into the plan as given.
pub fn plan_requests(requests: &[BufferRequest], steps: usize, align: usize, in_place: Vec<LayerId>) -> ArenaPlan {
    let align = align.max(1) as u64;
    let round = |b: u64| b.div_ceil(align) * align;
    let mut ws = PlanWorkspace::default();
    for (i, r) in requests.iter().enumerate() {
        assert!(r.join.is_none_or(|j| j < i) && r.first <= r.last && r.last < steps, "malformed buffer request {i}: {r:?}");
        push_rect(&mut ws, r.first, r.last, r.bytes, r.what, r.join.map(|j| j as u32), &round);
    }
    let arena = place(&mut ws, steps);
    let mut plan = ArenaPlan { arena_bytes: arena, in_place, ..Default::default() };
    fill_detail(&ws, steps, &mut plan);
    plan
}

/// Place every buffer of `ws` (largest first, first fit); returns the arena size.
fn place(ws: &mut PlanWorkspace, steps: usize) -> u64 {
    ws.order.clear();
    ws.order.extend(0..ws.bufs.len() as u32);
    let bufs = &ws.bufs;
    ws.order.sort_by(|&a, &b| {
        let (x, y) = (&bufs[a as usize], &bufs[b as usize]);
        y.max_size.cmp(&x.max_size).then(x.first.cmp(&y.first)).then(a.cmp(&b))
    });
    for v in ws.live.iter_mut() {
        v.clear();
    }
    if ws.live.len() < steps {
        ws.live.resize_with(steps, Vec::new);
    }
    ws.seen.clear();
    ws.seen.resize(ws.rects.len(), 0);

    let mut arena = 0;
    for k in 0..ws.order.len() {
        let b = ws.order[k] as usize;
        let base = first_fit(ws, b);
        ws.bufs[b].base = base;
        let mut r = ws.bufs[b].head;
        while r != NONE {
            let rect = ws.rects[r as usize];
            arena = arena.max(base + rect.size);
            for s in rect.first..=rect.last {
                ws.live[s].push(r);
            }
            r = rect.next;
        }
    }
    arena
}

/// Build one rect per tensor and per scratch, grouping in-place depthwise pairs into one buffer.
fn collect_rects(net: &Network, costs: &[LayerCost], engine: &EngineProfile, ws: &mut PlanWorkspace, round: impl Fn(u64) -> u64) {
    ws.rects.clear();
    ws.bufs.clear();
    net.last_use_into(&mut ws.last_use);
    ws.rect_of_tensor.clear();
    ws.rect_of_tensor.resize(net.tensors.len(), NONE);
    let input = net.input.0 as usize;
    let r = push_rect(
        ws,
        0,
        ws.last_use[input].unwrap_or(0),
        net.tensors[input].shape.elems() as u64,
        BufferKind::Tensor(net.input),
        None,
        &round,
    );
    ws.rect_of_tensor[input] = r;
    // Whether layer i is a fused add, carried from the previous layer's look-ahead.
    let mut fused_here = None;
    for (i, layer) in net.layers.iter().enumerate() {
        let out = layer.output.0 as usize;
        let last = ws.last_use[out].unwrap_or(i).max(i);
        // A fused add's conv (layer i, the add at i + 1) and the add itself join the shortcut.
        let fused_conv = (i + 1 < net.layers.len()).then(|| fused_add(net, &ws.last_use, engine.fused_add, i + 1)).flatten();
        let fused = fused_conv.or(std::mem::replace(&mut fused_here, fused_conv));
        let join = match fused {
            Some(skip) => Some(ws.rect_of_tensor[skip.0 as usize]),
            None => is_in_place(net, &ws.last_use, engine.in_place_depthwise, i).then(|| ws.rect_of_tensor[layer.input.0 as usize]),
        };
        let r = push_rect(ws, i, last, net.tensors[out].shape.elems() as u64, BufferKind::Tensor(layer.output), join, &round);
        ws.rect_of_tensor[out] = r;
        let scratch = if fused_conv.is_some() { fused_add_scratch(net, i + 1) } else { costs[i].scratch_bytes };
        if scratch > 0 {
            push_rect(ws, i, i, scratch, BufferKind::Scratch(LayerId(i as u32)), None, &round);
        }
    }
}

/// Append a rect, either as a new buffer or joined to the buffer of rect `join`.
fn push_rect(
    ws: &mut PlanWorkspace,
    first: usize,
    last: usize,
    bytes: u64,
    what: BufferKind,
    join: Option<u32>,
    round: &impl Fn(u64) -> u64,
) -> u32 {
    let id = ws.rects.len() as u32;
    let size = round(bytes);
    let buf = match join {
        Some(other) => {
            let b = ws.rects[other as usize].buf;
            let bb = &mut ws.bufs[b as usize];
            let tail = bb.tail;
            bb.tail = id;
            bb.max_size = bb.max_size.max(size);
            ws.rects[tail as usize].next = id;
            b
        }
        None => {
            ws.bufs.push(Buf { head: id, tail: id, max_size: size, first, base: 0 });
            (ws.bufs.len() - 1) as u32
        }
    };
    ws.rects.push(Rect { first, last, size, bytes, buf, next: NONE, what });
    id
}

/// Lowest base address for buffer `b` that collides with no placed rect sharing a step.
fn first_fit(ws: &mut PlanWorkspace, b: usize) -> u64 {
    ws.forbidden.clear();
    let mut r = ws.bufs[b].head;
    while r != NONE {
        let rect = ws.rects[r as usize];
        ws.stamp = ws.stamp.wrapping_add(1);
        if ws.stamp == 0 {
            ws.seen.iter_mut().for_each(|s| *s = 0);
            ws.stamp = 1;
        }
        for s in rect.first..=rect.last {
            for &q in &ws.live[s] {
                if ws.seen[q as usize] == ws.stamp {
                    continue;
                }
                ws.seen[q as usize] = ws.stamp;
                let placed = ws.rects[q as usize];
                let base_q = ws.bufs[placed.buf as usize].base as i64;
                // Base x is forbidden when [x, x+size) meets [base_q, base_q+size_q).
                ws.forbidden.push((base_q - rect.size as i64, base_q + placed.size as i64));
            }
        }
        r = rect.next;
    }
    ws.forbidden.sort_unstable_by_key(|f| f.0);
    // Sweeping by interval start, x only moves while it sits inside an interval; once x is at
    // or below a start it is at or below every later start, so the sweep is exact.
    let mut x: i64 = 0;
    for &(start, end) in &ws.forbidden {
        if x > start && x < end {
            x = end;
        }
    }
    x as u64
}

fn fill_detail(ws: &PlanWorkspace, steps: usize, plan: &mut ArenaPlan) {
    let mut tensors: Vec<Placement> = Vec::new();
    let mut scratch: Vec<Placement> = Vec::new();
    plan.live_bytes = vec![0; steps];
    plan.high_water = vec![0; steps];
    for rect in &ws.rects {
        let base = ws.bufs[rect.buf as usize].base;
        let p = Placement { what: rect.what, offset: base, size: rect.size, bytes: rect.bytes, first: rect.first, last: rect.last };
        match rect.what {
            BufferKind::Tensor(_) | BufferKind::Tile(_) => tensors.push(p),
            BufferKind::Scratch(_) => scratch.push(p),
        }
        for s in rect.first..=rect.last {
            plan.high_water[s] = plan.high_water[s].max(base + rect.size);
        }
    }
    // Live bytes: per buffer, the largest of its rects live at each step (in-place pairs share).
    for buf in &ws.bufs {
        let mut per_step: Vec<(usize, u64)> = Vec::new();
        let mut r = buf.head;
        while r != NONE {
            let rect = ws.rects[r as usize];
            for s in rect.first..=rect.last {
                match per_step.iter_mut().find(|(t, _)| *t == s) {
                    Some((_, v)) => *v = (*v).max(rect.size),
                    None => per_step.push((s, rect.size)),
                }
            }
            r = rect.next;
        }
        for (s, v) in per_step {
            plan.live_bytes[s] += v;
        }
    }
    tensors.sort_by_key(|p| match p.what {
        BufferKind::Tensor(t) | BufferKind::Tile(t) => t.0,
        BufferKind::Scratch(l) => l.0,
    });
    tensors.extend(scratch);
    plan.placements = tensors;
}
