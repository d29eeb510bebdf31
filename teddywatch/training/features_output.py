"""Give an exported ONNX classifier a second output: the features its last layer reads.

`teddywatch learn` (teddywatch/teach/) adapts a model to a user's corrections in the lean runtime by
fitting a small head on these features, so every model teddywatch writes carries them. The
probabilities are untouched: the graph computes exactly what it did, it only also returns the
input of its final Gemm/MatMul (for the default model the 1280 pooled EfficientNet features; for
a fastai `vision_learner` the 512 features before its last Linear).

    add_features_output(onnx_path) -> int   (the feature width; rewrites the file in place)

Needs the `onnx` package (the `[fastai]` extra); the lean runtime only reads the result.
"""

from __future__ import annotations

from pathlib import Path

from teddywatch.engines.onnx import FEATURES_OUTPUT

_LINEAR_OPS = ("Gemm", "MatMul")


def final_linear_input(graph) -> str:  # noqa: ANN001
    """The tensor the last Gemm/MatMul on the way to the first graph output reads."""
    producers = {out: node for node in graph.node for out in node.output}
    wanted = [graph.output[0].name]
    seen: set[str] = set()
    while wanted:  # breadth-first back from the output: the nearest linear layer wins
        name = wanted.pop(0)
        node = producers.get(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        if node.op_type in _LINEAR_OPS:
            return node.input[0]
        wanted.extend(node.input)
    raise ValueError("no Gemm or MatMul leads to the model's output")


def add_features_output(onnx_path: Path) -> int:
    """Expose the final linear layer's input as output `features`; returns its width."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(onnx_path))
    graph = model.graph
    existing = [o for o in graph.output if o.name == FEATURES_OUTPUT]
    if existing:
        return existing[0].type.tensor_type.shape.dim[1].dim_value
    source = final_linear_input(graph)
    inferred = shape_inference.infer_shapes(model)
    width = 0
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        if info.name == source:
            dims = info.type.tensor_type.shape.dim
            width = dims[-1].dim_value if dims else 0
    if width <= 0:
        raise ValueError(f"cannot tell the width of {source}")
    graph.node.append(onnx.helper.make_node("Identity", [source], [FEATURES_OUTPUT],
                                            name="teddywatch_features"))
    graph.output.append(onnx.helper.make_tensor_value_info(
        FEATURES_OUTPUT, onnx.TensorProto.FLOAT, ["batch", width]))
    onnx.save(model, str(onnx_path))
    return width


def main(argv: list[str] | None = None) -> int:
    """Add the output to models written before it existed, and update their metadata."""
    import argparse
    import json

    from teddywatch.engines import file_sha256

    parser = argparse.ArgumentParser(prog="python -m teddywatch.training.features_output",
                                     description=main.__doc__)
    parser.add_argument("models", nargs="+", type=Path, metavar="MODEL.onnx")
    for path in parser.parse_args(argv).models:
        width = add_features_output(path)
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["features"] = {"output": FEATURES_OUTPUT, "size": width}
        meta["sha256"] = file_sha256(path)
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
        print(f"{path}: output '{FEATURES_OUTPUT}' ({width} features); {meta_path} updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
