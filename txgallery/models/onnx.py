"""ONNX export of sequence classifiers, and an ONNX Runtime session that answers like a transformers model.

`OnnxSequenceClassifier(**batch).logits` behaves like `model(**batch).logits`, so the model store can serve an
exported directory (`model.onnx` + config + tokenizer) to any demo that uses a text classifier.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from txgallery.limits import InputError

ONNX_FILE = "model.onnx"


class OnnxExportError(InputError):
    """The chosen model could not be exported; the message says why (shown to the user)."""


def export_classifier(model, tokenizer, out_dir: str | Path, opset: int = 17) -> Path:
    """Export a transformers sequence classifier to `out_dir/model.onnx` (dynamic batch and length), with its
    config and tokenizer beside it so that the directory loads like any local model."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()  # tracing leaves state behind that changes the original's outputs

    class Logits(torch.nn.Module):  # positional inputs in tokenizer order, one named output
        def __init__(self, names: list[str]) -> None:
            super().__init__()
            self.model, self.names = model, names

        def forward(self, *inputs):
            return self.model(**dict(zip(self.names, inputs))).logits

    # Tracing records what it sees: inference-mode tensors (from a caller's `torch.inference_mode()`) trace wrong,
    # so the sample inputs are made, and the trace runs, with inference mode off.
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            sample = tokenizer(["an example sentence", "another one, a little longer"], padding=True,
                               return_tensors="pt")
            names = list(sample.keys())
            torch.onnx.export(Logits(names), tuple(sample[n] for n in names), str(out_dir / ONNX_FILE),
                              input_names=names, output_names=["logits"], opset_version=opset, dynamo=False,
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names} | {"logits": {0: "batch"}})
    except Exception as exc:
        raise OnnxExportError(f"This model cannot be exported to ONNX: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    model.config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir / ONNX_FILE


def quantize_onnx(onnx_path: str | Path, out_dir: str | Path, exclude: str = "/output/dense/") -> Path:
    """Dynamic int8 quantization of an exported model with ONNX Runtime, one weight scale per output channel.

    MatMul nodes whose name contains `exclude` but not `attention` (BERT's FFN down-projections, whose inputs have
    outliers) stay in fp32, as in the PyTorch int8 variant.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, out_dir = Path(onnx_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keep_fp32 = [node.name for node in onnx.load(str(source)).graph.node
                 if node.op_type == "MatMul" and exclude in node.name and "attention" not in node.name]
    quantize_dynamic(str(source), str(out_dir / ONNX_FILE), weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_exclude=keep_fp32)
    for extra in source.parent.iterdir():  # config and tokenizer travel along
        if extra.name != ONNX_FILE and extra.is_file():
            (out_dir / extra.name).write_bytes(extra.read_bytes())
    return out_dir / ONNX_FILE


class OnnxSequenceClassifier:
    """An ONNX Runtime session with the parts of a transformers classifier that demos use."""

    training = False
    txgallery_inference_only = True  # an optimised variant: CPU only, no gradients (the store and demos check this)

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from transformers import AutoConfig

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        self.session = ort.InferenceSession(str(Path(directory) / ONNX_FILE), options,
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = AutoConfig.from_pretrained(str(directory))
        self.device = torch.device("cpu")

    def __call__(self, **batch) -> SequenceClassifierOutput:
        feed = {name: batch[name].cpu().numpy() for name in self.input_names}
        return SequenceClassifierOutput(logits=torch.from_numpy(self.session.run(["logits"], feed)[0]))

    def to(self, device) -> "OnnxSequenceClassifier":
        if str(device) != "cpu":
            raise ValueError("this ONNX model runs on the CPU execution provider only")
        return self

    def eval(self) -> "OnnxSequenceClassifier":
        return self

    def parameters(self):
        return iter(())


def is_onnx_directory(path: str | Path) -> bool:
    """Whether `path` holds an exported ONNX classifier."""
    return (Path(path) / ONNX_FILE).is_file()
