//! The `.tflite` writer: a [`QuantNet`] serialised as a TFLite FlatBuffer.
//!
//! The writer makes no decisions: every scale, zero point, weight and bias comes from the
//! quantised network. Layout is TFLite's: NHWC activations, conv weights `[O, kh, kw, I]`
//! (per-channel, `quantized_dimension` 0), depthwise weights `[1, kh, kw, C]`
//! (`quantized_dimension` 3), fully connected weights `[O, I]`, int32 biases. Global average
//! pooling is an AVERAGE_POOL_2D over the whole map followed by a RESHAPE to `[1, C]` for the
//! classifier. Convolutions use SAME padding, which is the IR's padding rule.
//!
//! The schema is the public TFLite schema (`schema.fbs`), reduced to the tables written here;
//! field ids (vtable slots) are the schema's. The FlatBuffer is built front to back: each table
//! is written after its vtable and before its children, so every offset points forward.

use super::quant::{QOp, QParams, QuantNet};
use crate::ir::{Activation, LayerKind};

// ---- A minimal FlatBuffer builder -------------------------------------------------------------

/// A FlatBuffer value: a table, a vector or a scalar field.
enum Value {
    I8(i8),
    U8(u8),
    Bool(bool),
    I32(i32),
    U32(u32),
    Table(Table),
    Tables(Vec<Table>),
    Str(String),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
    I64s(Vec<i64>),
    /// Bytes whose first element is aligned to the given power of two.
    Bytes(Vec<u8>, usize),
}

/// A table: `(field id, value)` pairs.
#[derive(Default)]
struct Table(Vec<(u16, Value)>);

impl Table {
    fn with(mut self, id: u16, v: Value) -> Self {
        self.0.push((id, v));
        self
    }
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn align(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }

    /// Pad so that a vector's length prefix lands where its first element is aligned to `n`.
    fn align_vector(&mut self, n: usize) {
        let n = n.max(4);
        while !(self.buf.len() + 4).is_multiple_of(n) {
            self.buf.push(0);
        }
    }

    fn patch_offset(&mut self, at: usize, target: usize) {
        let off = (target - at) as u32;
        self.buf[at..at + 4].copy_from_slice(&off.to_le_bytes());
    }

    fn vector<T: Copy>(&mut self, items: &[T], elem_align: usize, bytes: impl Fn(T) -> Vec<u8>) -> usize {
        self.align_vector(elem_align);
        let start = self.buf.len();
        self.buf.extend_from_slice(&(items.len() as u32).to_le_bytes());
        for &x in items {
            self.buf.extend(bytes(x));
        }
        start
    }

    /// Write `v` (a child object) at the end of the buffer; returns its position.
    fn child(&mut self, v: &Value) -> usize {
        match v {
            Value::Table(t) => self.table(t),
            Value::Tables(ts) => {
                self.align_vector(4);
                let start = self.buf.len();
                self.buf.extend_from_slice(&(ts.len() as u32).to_le_bytes());
                let slots: Vec<usize> = (0..ts.len()).map(|i| start + 4 + 4 * i).collect();
                self.buf.resize(self.buf.len() + 4 * ts.len(), 0);
                for (t, at) in ts.iter().zip(slots) {
                    let pos = self.table(t);
                    self.patch_offset(at, pos);
                }
                start
            }
            Value::Str(s) => {
                let start = self.vector(s.as_bytes(), 1, |b| vec![b]);
                self.buf.push(0);
                start
            }
            Value::I32s(v) => self.vector(v, 4, |x| x.to_le_bytes().to_vec()),
            Value::F32s(v) => self.vector(v, 4, |x| x.to_le_bytes().to_vec()),
            Value::I64s(v) => self.vector(v, 8, |x| x.to_le_bytes().to_vec()),
            Value::Bytes(v, a) => self.vector(v, *a, |x| vec![x]),
            Value::I8(_) | Value::U8(_) | Value::Bool(_) | Value::I32(_) | Value::U32(_) => unreachable!("scalars are inline"),
        }
    }

    /// Write vtable, table and then its children; returns the table's position.
    fn table(&mut self, t: &Table) -> usize {
        let size = |v: &Value| match v {
            Value::I8(_) | Value::U8(_) | Value::Bool(_) => 1,
            _ => 4,
        };
        // Inline layout: soffset, then fields in order, each aligned to its size.
        let mut layout = Vec::with_capacity(t.0.len());
        let mut off = 4usize;
        for (_, v) in &t.0 {
            let s = size(v);
            off = off.next_multiple_of(s);
            layout.push(off);
            off += s;
        }
        let table_size = off.next_multiple_of(4);
        let slots = t.0.iter().map(|(id, _)| *id as usize + 1).max().unwrap_or(0);
        self.align(2);
        let vtable = self.buf.len();
        self.buf.extend_from_slice(&((4 + 2 * slots) as u16).to_le_bytes());
        self.buf.extend_from_slice(&(table_size as u16).to_le_bytes());
        let mut entries = vec![0u16; slots];
        for ((id, _), &o) in t.0.iter().zip(&layout) {
            entries[*id as usize] = o as u16;
        }
        for e in entries {
            self.buf.extend_from_slice(&e.to_le_bytes());
        }
        self.align(4);
        let table = self.buf.len();
        self.buf.extend_from_slice(&((table - vtable) as i32).to_le_bytes());
        self.buf.resize(table + table_size, 0);
        let mut pending = Vec::new();
        for ((_, v), &o) in t.0.iter().zip(&layout) {
            let at = table + o;
            match v {
                Value::I8(x) => self.buf[at] = *x as u8,
                Value::U8(x) => self.buf[at] = *x,
                Value::Bool(x) => self.buf[at] = u8::from(*x),
                Value::I32(x) => self.buf[at..at + 4].copy_from_slice(&x.to_le_bytes()),
                Value::U32(x) => self.buf[at..at + 4].copy_from_slice(&x.to_le_bytes()),
                _ => pending.push((at, v)),
            }
        }
        for (at, v) in pending {
            let pos = self.child(v);
            self.patch_offset(at, pos);
        }
        table
    }
}

/// Serialise `root` with a 4-byte file identifier.
fn finish(root: &Table, ident: &[u8; 4]) -> Vec<u8> {
    let mut w = Writer { buf: vec![0; 8] };
    w.buf[4..8].copy_from_slice(ident);
    let pos = w.table(root);
    w.patch_offset(0, pos);
    w.buf
}

// ---- The TFLite schema subset ----------------------------------------------------------------

mod schema {
    pub const TENSOR_INT32: i8 = 2;
    pub const TENSOR_INT8: i8 = 9;

    pub const OP_ADD: i32 = 0;
    pub const OP_AVERAGE_POOL_2D: i32 = 1;
    pub const OP_CONV_2D: i32 = 3;
    pub const OP_DEPTHWISE_CONV_2D: i32 = 4;
    pub const OP_FULLY_CONNECTED: i32 = 9;
    pub const OP_RESHAPE: i32 = 22;

    pub const OPTIONS_CONV_2D: u8 = 1;
    pub const OPTIONS_DEPTHWISE_CONV_2D: u8 = 2;
    pub const OPTIONS_POOL_2D: u8 = 5;
    pub const OPTIONS_FULLY_CONNECTED: u8 = 8;
    pub const OPTIONS_ADD: u8 = 11;
    pub const OPTIONS_RESHAPE: u8 = 17;

    pub const PADDING_SAME: i8 = 0;
    pub const PADDING_VALID: i8 = 1;
    pub const ACT_NONE: i8 = 0;
    pub const ACT_RELU6: i8 = 3;

    /// Field ids of the tables written.
    pub mod model {
        pub const VERSION: u16 = 0;
        pub const OPERATOR_CODES: u16 = 1;
        pub const SUBGRAPHS: u16 = 2;
        pub const DESCRIPTION: u16 = 3;
        pub const BUFFERS: u16 = 4;
    }
    pub mod subgraph {
        pub const TENSORS: u16 = 0;
        pub const INPUTS: u16 = 1;
        pub const OUTPUTS: u16 = 2;
        pub const OPERATORS: u16 = 3;
        pub const NAME: u16 = 4;
    }
    pub mod tensor {
        pub const SHAPE: u16 = 0;
        pub const TYPE: u16 = 1;
        pub const BUFFER: u16 = 2;
        pub const NAME: u16 = 3;
        pub const QUANTIZATION: u16 = 4;
    }
    pub mod quantization {
        pub const SCALE: u16 = 2;
        pub const ZERO_POINT: u16 = 3;
        pub const QUANTIZED_DIMENSION: u16 = 6;
    }
    pub mod buffer {
        pub const DATA: u16 = 0;
    }
    pub mod operator {
        pub const OPCODE_INDEX: u16 = 0;
        pub const INPUTS: u16 = 1;
        pub const OUTPUTS: u16 = 2;
        pub const BUILTIN_OPTIONS_TYPE: u16 = 3;
        pub const BUILTIN_OPTIONS: u16 = 4;
    }
    pub mod operator_code {
        pub const DEPRECATED_BUILTIN_CODE: u16 = 0;
        pub const VERSION: u16 = 2;
        pub const BUILTIN_CODE: u16 = 3;
    }
    /// Conv2DOptions and DepthwiseConv2DOptions share the first three fields.
    pub mod conv {
        pub const PADDING: u16 = 0;
        pub const STRIDE_W: u16 = 1;
        pub const STRIDE_H: u16 = 2;
        pub const CONV_ACTIVATION: u16 = 3;
        pub const CONV_DILATION_W: u16 = 4;
        pub const CONV_DILATION_H: u16 = 5;
        pub const DW_DEPTH_MULTIPLIER: u16 = 3;
        pub const DW_ACTIVATION: u16 = 4;
        pub const DW_DILATION_W: u16 = 5;
        pub const DW_DILATION_H: u16 = 6;
    }
    pub mod pool {
        pub const PADDING: u16 = 0;
        pub const STRIDE_W: u16 = 1;
        pub const STRIDE_H: u16 = 2;
        pub const FILTER_W: u16 = 3;
        pub const FILTER_H: u16 = 4;
        pub const ACTIVATION: u16 = 5;
    }
    pub mod fully_connected {
        pub const ACTIVATION: u16 = 0;
        pub const KEEP_NUM_DIMS: u16 = 2;
    }
    pub mod add {
        pub const ACTIVATION: u16 = 0;
    }
    pub mod reshape {
        pub const NEW_SHAPE: u16 = 0;
    }
}

use schema::*;

/// Collects tensors, buffers, operator codes and operators of the one subgraph.
struct Graph {
    tensors: Vec<Table>,
    buffers: Vec<Table>,
    codes: Vec<(i32, i32)>,
    operators: Vec<Table>,
}

fn quant_table(scales: &[f32], zero_points: &[i64], dim: i32) -> Table {
    Table::default()
        .with(quantization::SCALE, Value::F32s(scales.to_vec()))
        .with(quantization::ZERO_POINT, Value::I64s(zero_points.to_vec()))
        .with(quantization::QUANTIZED_DIMENSION, Value::I32(dim))
}

impl Graph {
    fn tensor(&mut self, name: String, shape: &[usize], ty: i8, data: Option<Vec<u8>>, quant: Table) -> i32 {
        let buffer = match data {
            Some(bytes) => {
                self.buffers.push(Table::default().with(buffer::DATA, Value::Bytes(bytes, 16)));
                (self.buffers.len() - 1) as u32
            }
            None => 0,
        };
        self.tensors.push(
            Table::default()
                .with(tensor::SHAPE, Value::I32s(shape.iter().map(|&d| d as i32).collect()))
                .with(tensor::TYPE, Value::I8(ty))
                .with(tensor::BUFFER, Value::U32(buffer))
                .with(tensor::NAME, Value::Str(name))
                .with(tensor::QUANTIZATION, Value::Table(quant)),
        );
        (self.tensors.len() - 1) as i32
    }

    fn activation(&mut self, name: String, shape: &[usize], q: QParams) -> i32 {
        self.tensor(name, shape, TENSOR_INT8, None, quant_table(&[q.scale], &[q.zero_point as i64], 0))
    }

    fn weights(&mut self, name: String, shape: &[usize], w: &[i8], scales: &[f32], dim: i32) -> i32 {
        let data = w.iter().map(|&v| v as u8).collect();
        self.tensor(name, shape, TENSOR_INT8, Some(data), quant_table(scales, &vec![0; scales.len()], dim))
    }

    fn bias(&mut self, name: String, b: &[i32], scales: Vec<f32>) -> i32 {
        let data = b.iter().flat_map(|v| v.to_le_bytes()).collect();
        let zeros = vec![0; scales.len()];
        self.tensor(name, &[b.len()], TENSOR_INT32, Some(data), quant_table(&scales, &zeros, 0))
    }

    fn operator(&mut self, code: i32, version: i32, inputs: Vec<i32>, outputs: Vec<i32>, options_type: u8, options: Table) {
        let index = match self.codes.iter().position(|&(c, _)| c == code) {
            Some(i) => i,
            None => {
                self.codes.push((code, version));
                self.codes.len() - 1
            }
        };
        self.operators.push(
            Table::default()
                .with(operator::OPCODE_INDEX, Value::U32(index as u32))
                .with(operator::INPUTS, Value::I32s(inputs))
                .with(operator::OUTPUTS, Value::I32s(outputs))
                .with(operator::BUILTIN_OPTIONS_TYPE, Value::U8(options_type))
                .with(operator::BUILTIN_OPTIONS, Value::Table(options)),
        );
    }
}

fn fused(act: Activation) -> i8 {
    match act {
        Activation::None => ACT_NONE,
        Activation::Relu6 => ACT_RELU6,
    }
}

/// Serialise `q` as a `.tflite` model (int8 input `[1, H, W, C]`, int8 logits `[1, classes]`).
pub fn to_tflite(q: &QuantNet, description: &str) -> Vec<u8> {
    let net = &q.net;
    let mut g = Graph { tensors: Vec::new(), buffers: vec![Table::default()], codes: Vec::new(), operators: Vec::new() };
    let mut ids = vec![-1i32; net.tensors.len()];
    let input_shape = net.shape(net.input);
    ids[net.input.0 as usize] =
        g.activation("input".into(), &[1, input_shape.h, input_shape.w, input_shape.c], q.tensors[net.input.0 as usize]);
    for (layer, op) in net.layers.iter().zip(&q.ops) {
        let name = layer.name();
        let xs = net.shape(layer.input);
        let ys = net.shape(layer.output);
        let qi = q.tensors[layer.input.0 as usize];
        let qo = q.tensors[layer.output.0 as usize];
        let x = ids[layer.input.0 as usize];
        let out_shape: Vec<usize> = match layer.kind {
            LayerKind::FullyConnected { .. } => vec![1, ys.c],
            _ => vec![1, ys.h, ys.w, ys.c],
        };
        let y = g.activation(name.clone(), &out_shape, qo);
        ids[layer.output.0 as usize] = y;
        let bias_scales = |s: &[f32]| s.iter().map(|&sw| (qi.scale as f64 * sw as f64) as f32).collect::<Vec<f32>>();
        match (layer.kind, op) {
            (LayerKind::Conv2d { kernel: k, stride, .. }, QOp::Conv { weight, weight_scales, bias, .. }) => {
                let w = g.weights(format!("{name}.weight"), &[ys.c, k, k, xs.c], weight, weight_scales, 0);
                let b = g.bias(format!("{name}.bias"), bias, bias_scales(weight_scales));
                let options = Table::default()
                    .with(conv::PADDING, Value::I8(PADDING_SAME))
                    .with(conv::STRIDE_W, Value::I32(stride as i32))
                    .with(conv::STRIDE_H, Value::I32(stride as i32))
                    .with(conv::CONV_ACTIVATION, Value::I8(fused(layer.act)))
                    .with(conv::CONV_DILATION_W, Value::I32(1))
                    .with(conv::CONV_DILATION_H, Value::I32(1));
                g.operator(OP_CONV_2D, 3, vec![x, w, b], vec![y], OPTIONS_CONV_2D, options);
            }
            (LayerKind::DepthwiseConv2d { kernel: k, stride, .. }, QOp::Conv { weight, weight_scales, bias, .. }) => {
                let w = g.weights(format!("{name}.weight"), &[1, k, k, xs.c], weight, weight_scales, 3);
                let b = g.bias(format!("{name}.bias"), bias, bias_scales(weight_scales));
                let options = Table::default()
                    .with(conv::PADDING, Value::I8(PADDING_SAME))
                    .with(conv::STRIDE_W, Value::I32(stride as i32))
                    .with(conv::STRIDE_H, Value::I32(stride as i32))
                    .with(conv::DW_DEPTH_MULTIPLIER, Value::I32(1))
                    .with(conv::DW_ACTIVATION, Value::I8(fused(layer.act)))
                    .with(conv::DW_DILATION_W, Value::I32(1))
                    .with(conv::DW_DILATION_H, Value::I32(1));
                g.operator(OP_DEPTHWISE_CONV_2D, 3, vec![x, w, b], vec![y], OPTIONS_DEPTHWISE_CONV_2D, options);
            }
            (LayerKind::Add, QOp::Add { .. }) => {
                let x2 = ids[layer.input2.expect("Add has two inputs").0 as usize];
                let options = Table::default().with(add::ACTIVATION, Value::I8(fused(layer.act)));
                g.operator(OP_ADD, 2, vec![x, x2], vec![y], OPTIONS_ADD, options);
            }
            (LayerKind::GlobalAvgPool, QOp::AvgPool) => {
                let options = Table::default()
                    .with(pool::PADDING, Value::I8(PADDING_VALID))
                    .with(pool::STRIDE_W, Value::I32(1))
                    .with(pool::STRIDE_H, Value::I32(1))
                    .with(pool::FILTER_W, Value::I32(xs.w as i32))
                    .with(pool::FILTER_H, Value::I32(xs.h as i32))
                    .with(pool::ACTIVATION, Value::I8(ACT_NONE));
                g.operator(OP_AVERAGE_POOL_2D, 2, vec![x], vec![y], OPTIONS_POOL_2D, options);
            }
            (LayerKind::FullyConnected { .. }, QOp::FullyConnected { weight, weight_scale, bias, .. }) => {
                let flat = g.activation(format!("{name}.flatten"), &[1, xs.c], qi);
                let shape_data = [1i32, xs.c as i32].iter().flat_map(|v| v.to_le_bytes()).collect();
                let shape = g.tensor(format!("{name}.flatten.shape"), &[2], TENSOR_INT32, Some(shape_data), Table::default());
                let options = Table::default().with(reshape::NEW_SHAPE, Value::I32s(vec![1, xs.c as i32]));
                g.operator(OP_RESHAPE, 1, vec![x, shape], vec![flat], OPTIONS_RESHAPE, options);
                let w = g.weights(format!("{name}.weight"), &[ys.c, xs.c], weight, &[*weight_scale], 0);
                let b = g.bias(format!("{name}.bias"), bias, bias_scales(&[*weight_scale]));
                let options = Table::default()
                    .with(fully_connected::ACTIVATION, Value::I8(fused(layer.act)))
                    .with(fully_connected::KEEP_NUM_DIMS, Value::Bool(false));
                g.operator(OP_FULLY_CONNECTED, 4, vec![flat, w, b], vec![y], OPTIONS_FULLY_CONNECTED, options);
            }
            (kind, op) => unreachable!("{kind:?} quantised as {op:?}"),
        }
    }
    let codes = g
        .codes
        .iter()
        .map(|&(code, version)| {
            Table::default()
                .with(operator_code::DEPRECATED_BUILTIN_CODE, Value::I8(code.min(127) as i8))
                .with(operator_code::VERSION, Value::I32(version))
                .with(operator_code::BUILTIN_CODE, Value::I32(code))
        })
        .collect();
    let subgraph = Table::default()
        .with(subgraph::TENSORS, Value::Tables(g.tensors))
        .with(subgraph::INPUTS, Value::I32s(vec![ids[net.input.0 as usize]]))
        .with(subgraph::OUTPUTS, Value::I32s(vec![ids[net.output.0 as usize]]))
        .with(subgraph::OPERATORS, Value::Tables(g.operators))
        .with(subgraph::NAME, Value::Str("main".into()));
    let model = Table::default()
        .with(model::VERSION, Value::U32(3))
        .with(model::OPERATOR_CODES, Value::Tables(codes))
        .with(model::SUBGRAPHS, Value::Tables(vec![subgraph]))
        .with(model::DESCRIPTION, Value::Str(description.into()))
        .with(model::BUFFERS, Value::Tables(g.buffers));
    finish(&model, b"TFL3")
}
