#!/usr/bin/env python3
"""PyTorch twin of `nas bench train`: the same subnets, the same steps, timed the same way.

`nas bench train --against-torch` writes a spec (JSON: full-size parameter shapes of the
weight-shared supernet, and every subnet as the layer list of tinynas's IR) and runs this script
on it; the script prints one JSON object with images per second and peak memory. Weight sharing
is reproduced: every layer slices the first channels of one full-size parameter, elastic kernels
are centre crops times the learned kernel-transform matrices, BatchNorm uses batch statistics
sliced to the active width, TFLite-SAME padding (asymmetric where it is) as explicit zero pads.

Usage: torch_twin.py SPEC.json   (threads, batch and steps come from the spec)
"""

import json
import resource
import sys
import time

import torch
import torch.nn.functional as F


def build_params(spec):
    """Full-size parameters, keyed by layer name, PyTorch layouts."""
    g = torch.Generator().manual_seed(0)
    params = {}
    for name, p in spec["params"].items():
        shape = p["weight"]
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        bound = (6.0 / fan_in) ** 0.5
        entry = {"weight": torch.nn.Parameter((torch.rand(shape, generator=g) * 2 - 1) * bound)}
        if p.get("bn"):
            c = p["bn"]
            entry["gamma"] = torch.nn.Parameter(torch.ones(c))
            entry["beta"] = torch.nn.Parameter(torch.zeros(c))
            entry["mean"] = torch.zeros(c)
            entry["var"] = torch.ones(c)
        if p.get("bias"):
            entry["bias"] = torch.nn.Parameter(torch.zeros(p["bias"]))
        entry["transforms"] = {k: torch.nn.Parameter(torch.eye(k * k)) for k in p.get("kernels", [])[:-1]}
        entry["kernels"] = p.get("kernels", [])
        params[name] = entry
    return params


def trainable(params):
    out = []
    for e in params.values():
        out.append(e["weight"])
        for key in ("gamma", "beta", "bias"):
            if key in e:
                out.append(e[key])
        out.extend(e["transforms"].values())
    return out


def dw_kernel(e, c, k):
    """Elastic kernel: centre crops of the largest kernel through the transform chain."""
    w = e["weight"][:c]
    cur = w.shape[-1]
    for size in reversed(e["kernels"][:-1]):
        if size < k:
            break
        s = (cur - size) // 2
        crop = w[:, :, s:s + size, s:s + size].reshape(c, size * size)
        w = (crop @ e["transforms"][size]).reshape(c, 1, size, size)
        cur = size
    return w


def conv(x, w, stride, pad, groups):
    t, l, b, r = pad
    if t == b == l == r:
        return F.conv2d(x, w, None, stride, t, 1, groups)
    return F.conv2d(F.pad(x, (l, r, t, b)), w, None, stride, 0, 1, groups)


def bn(x, e, train):
    c = x.shape[1]
    if train:
        return F.batch_norm(x, None, None, e["gamma"][:c], e["beta"][:c], True, 0.0, 1e-5)
    return F.batch_norm(x, e["mean"][:c], e["var"][:c], e["gamma"][:c], e["beta"][:c], False, 0.0, 1e-5)


def forward(net, params, x, train):
    ih, iw = net["input"][1], net["input"][2]
    if x.shape[2:] != (ih, iw):
        x = F.interpolate(x, size=(ih, iw), mode="bilinear", align_corners=False)
    t = {net["input_id"]: x}
    for layer in net["layers"]:
        a = t[layer["in"]]
        op = layer["op"]
        e = params.get(layer["name"])
        if op in ("conv", "pointwise"):
            w = e["weight"][: layer["cout"], : a.shape[1]]
            y = bn(conv(a, w, layer["s"], layer["pad"], 1), e, train)
        elif op == "depthwise":
            c = a.shape[1]
            y = bn(conv(a, dw_kernel(e, c, layer["k"]), layer["s"], layer["pad"], c), e, train)
        elif op == "add":
            y = a + t[layer["in2"]]
        elif op == "avgpool":
            y = a.mean(dim=(2, 3), keepdim=True)
        elif op == "fc":
            c = a.shape[1]
            return F.linear(a.flatten(1), e["weight"][: layer["cout"], :c], e["bias"][: layer["cout"]])
        else:
            raise SystemExit(f"unknown op {op}")
        if layer["act"] == "relu6":
            y = F.relu6(y)
        t[layer["out"]] = y
    return t[net["output_id"]].flatten(1)


def timed(steps, fn):
    fn(0)
    start = time.perf_counter()
    for i in range(steps):
        fn(i + 1)
    return (time.perf_counter() - start) / steps


def main():
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    params = build_params(spec)
    opt = torch.optim.SGD(trainable(params), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=3e-5)
    b, steps = spec["batch"], spec["steps"]
    c, r = spec["channels"], spec["resolution"]
    x = torch.randn(b, c, r, r)
    y = torch.arange(b) % spec["classes"]
    nets = spec["nets"]

    def step_alone(net):
        def run(_):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(forward(net, params, x, True), y, label_smoothing=0.1).backward()
            opt.step()
        return run

    def sandwich(i):
        opt.zero_grad(set_to_none=True)
        logits = forward(nets["largest"], params, x, True)
        teacher = F.softmax(logits.detach(), 1)
        F.cross_entropy(logits, y, label_smoothing=0.1).backward()
        for net in nets["sandwich"][i % len(nets["sandwich"])]:
            out = forward(net, params, x, True)
            (-(teacher * F.log_softmax(out, 1)).sum(1).mean()).backward()
        opt.step()

    xe = torch.randn(spec["eval_batch"], c, r, r)

    def eval_forward(_):
        with torch.no_grad():
            forward(nets["largest"], params, xe, False)

    res = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "sandwich": b / timed(steps, sandwich),
        "largest": b / timed(steps, step_alone(nets["largest"])),
        "small": b / timed(steps, step_alone(nets["small"])),
        "eval": spec["eval_batch"] / timed(steps, eval_forward),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
