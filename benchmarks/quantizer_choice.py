"""Which 8-bit flow to ship: the candidates side by side on one model, in one run on this CPU.

Candidates: PyTorch FX int8 (x86 qconfig, fbgemm kernels), ONNX Runtime static int8 (QDQ) and
OpenVINO NNCF int8, each against its own float32 and against PyTorch eager. Every int8 model is
calibrated on the same clips; "cosine" is the cosine similarity of its logits to float32 PyTorch
on held-back clips (a broken flow shows up there before any accuracy run). `sevnet quantize`
uses the flow this table picks; see docs/deployment.md.

    python benchmarks/quantizer_choice.py [--model sevnet_s] [--repeats 5] [--batch 8]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from sevnet.deploy.export import export_onnx, export_openvino
from sevnet.deploy.quantize import quantize_openvino
from sevnet.deploy.runtime import onnx_runner, openvino_runner, torch_runner
from sevnet.models import create_model, model_info
from sevnet.timing import median_seconds

Runner = Callable[[np.ndarray], np.ndarray]


def timed(run: Runner, x: np.ndarray, repeats: int) -> float:
    return median_seconds(lambda: run(x), repeats)


def torch_fx_int8(model: torch.nn.Module, calib: list[np.ndarray]) -> Runner:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    example = (torch.from_numpy(calib[0]),)
    prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), example)
    with torch.inference_mode():
        for clip in calib:
            prepared(torch.from_numpy(clip))
    return torch_runner(convert_fx(prepared))


def ort_int8(onnx_path: Path, calib: list[np.ndarray], out: Path) -> Runner:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{input_name: c} for c in calib])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    prepped = out.with_name(out.stem + "-prep.onnx")
    quant_pre_process(str(onnx_path), str(prepped))
    quantize_static(
        str(prepped), str(out), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip
    return onnx_runner(out)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sevnet_s")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calib", type=int, default=16, help="calibration clips")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=12).eval()
    t, h, w = model_info(args.model).reference_input
    shape = (3, t, h, w)
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, *shape)).astype(np.float32) for _ in range(args.calib)]
    held = rng.standard_normal((4, *shape)).astype(np.float32)
    x1, xb = held[:1], rng.standard_normal((args.batch, *shape)).astype(np.float32)
    reference = torch_runner(model)(held)

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "m.onnx", (t, h, w))
        xml = export_openvino(onnx_path, Path(tmp) / "m.xml")
        builders: dict[str, Callable[[], Runner]] = {
            "pytorch eager fp32": lambda: torch_runner(model),
            "pytorch fx int8": lambda: torch_fx_int8(model, calib),
            "onnxruntime fp32": lambda: onnx_runner(onnx_path),
            "onnxruntime int8 qdq": lambda: ort_int8(onnx_path, calib, Path(tmp) / "m-int8.onnx"),
            "openvino fp32": lambda: openvino_runner(xml),
            "openvino int8 nncf": lambda: openvino_runner(quantize_openvino(xml, calib, Path(tmp) / "m-int8.xml")),
        }
        threads = torch.get_num_threads()
        print(f"{args.model} {t}x{h}x{w}, CPU {threads} threads; latency = median of {args.repeats} at batch 1; "
              f"clips/s at batch {args.batch}; {args.calib} calibration clips\n")  # fmt: skip
        print(f"{'flow':<22}{'latency ms':>11}{'clips/s':>9}{'vs eager':>10}{'cosine':>9}")
        eager_rate = None
        for name, build in builders.items():
            try:
                run = build()
                logits = run(held)
                latency = timed(run, x1, args.repeats)
                rate = args.batch / timed(run, xb, max(2, args.repeats // 2))
            except Exception as err:  # a flow that fails is a result too
                print(f"{name:<22}failed: {type(err).__name__}: {str(err).splitlines()[0][:100]}", flush=True)
                continue
            eager_rate = eager_rate or rate
            print(f"{name:<22}{latency * 1e3:>11.1f}{rate:>9.1f}{rate / eager_rate:>9.2f}x"
                  f"{cosine(logits, reference):>9.4f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
