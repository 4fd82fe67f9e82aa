"""Run an int8 .tflite model with the LiteRT interpreter and print its int8 outputs as JSON.

Usage: litert_run.py MODEL.tflite INPUTS.bin [ref|builtin|auto] [--dump]

INPUTS.bin holds N int8 images back to back, each in the model input's NHWC shape. Prints
{"input": {...}, "output": {...}, "outputs": [[...], ...]} on stdout; with --dump also
"tensors": {name: [...]}, every int8 tensor of the first image (to locate a mismatch). Exit 3 when the LiteRT
package (ai-edge-litert) or numpy is not installed.
"""

import json
import sys

try:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except ImportError as e:  # the Rust test turns this into a loud skip
    print(f"missing python package: {e}", file=sys.stderr)
    sys.exit(3)

RESOLVERS = {
    "ref": OpResolverType.BUILTIN_REF,
    "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    "auto": OpResolverType.AUTO,
}


def main():
    model, inputs = sys.argv[1], sys.argv[2]
    resolver = RESOLVERS[sys.argv[3] if len(sys.argv) > 3 else "ref"]
    dump = "--dump" in sys.argv[4:]
    interp = Interpreter(model_path=model, experimental_op_resolver_type=resolver, experimental_preserve_all_tensors=dump)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    shape = [int(d) for d in inp["shape"]]
    data = np.fromfile(inputs, dtype=np.int8)
    per = int(np.prod(shape))
    outputs = []
    tensors = {}
    for i in range(len(data) // per):
        interp.set_tensor(inp["index"], data[i * per:(i + 1) * per].reshape(shape))
        interp.invoke()
        outputs.append(interp.get_tensor(out["index"]).reshape(-1).astype(int).tolist())
        if dump and i == 0:
            for d in interp.get_tensor_details():
                if d["dtype"] == np.int8 and not d["name"].endswith(".weight"):
                    tensors[d["name"]] = interp.get_tensor(d["index"]).reshape(-1).astype(int).tolist()

    def describe(d):
        scale, zero_point = d["quantization"]
        return {"shape": [int(x) for x in d["shape"]], "dtype": str(np.dtype(d["dtype"])), "scale": float(scale), "zero_point": int(zero_point)}

    report = {"input": describe(inp), "output": describe(out), "outputs": outputs}
    if dump:
        report["tensors"] = tensors
    print(json.dumps(report))


if __name__ == "__main__":
    main()
