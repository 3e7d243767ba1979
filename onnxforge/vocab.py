"""The project's vocabulary, said once: devices, precisions, engines, variant names, stage keys.

Every stage, CLI and report imports these names from here instead of restating them;
a new precision or engine is added in this file and nowhere else first.
"""

from __future__ import annotations

import re

# Where a model runs. "auto" is resolved to cpu or cuda by ``resolve_device``.
DEVICES = ("cpu", "cuda", "auto")
CONCRETE_DEVICES = ("cpu", "cuda")

# Numeric precisions optimize can produce.
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
# The variant optimize writes for each precision (fp32 is the fused graph).
VARIANT_FOR_PRECISION = {"fp32": "optimized", "fp16": "fp16", "int8": "int8", "bf16": "bf16"}
# The exported, unoptimized graph.
BASE_VARIANT = "base"
# int8 built by NNCF for OpenVINO (``optimize --precision int8 --engine openvino``).
OPENVINO_INT8_VARIANT = "ov-int8"
VARIANTS = (BASE_VARIANT, *VARIANT_FOR_PRECISION.values(), OPENVINO_INT8_VARIANT)

# Inference engines a variant can run on.
ENGINES = ("ort", "openvino")
DEFAULT_ENGINE = "ort"
# Variants that only one engine runs (an OpenVINO IR); others run on DEFAULT_ENGINE unless
# their manifest entry or --engine says otherwise.
ENGINE_OF_VARIANT = {"bf16": "openvino", OPENVINO_INT8_VARIANT: "openvino"}
# Where OpenVINO variants live: the layout optimum-intel and sentence-transformers'
# OpenVINO backend read (``openvino/openvino_model.xml`` + ``.bin``).
OPENVINO_DIR = "openvino"
OPENVINO_FILES = {"bf16": f"{OPENVINO_DIR}/openvino_model.xml",
                  OPENVINO_INT8_VARIANT: f"{OPENVINO_DIR}/openvino_model_qint8_quantized.xml"}

# Exporters: dynamo is torch's path forward; TorchScript is deprecated upstream.
EXPORTERS = ("dynamo", "torchscript")

# Stage names as they appear in the manifest's "stages" table.
EXPORT, OPTIMIZE, VALIDATE, SMOKE, PACKAGE, VERIFY = "export", "optimize", "validate", "smoke", "package", "verify"
PER_VARIANT_STAGES = (OPTIMIZE, VALIDATE, SMOKE)


def stage_key(stage: str, variant: str | None = None) -> str:
    """The manifest key of a stage's record: ``optimize.int8``, or ``export`` for whole-artifact stages."""
    return f"{stage}.{variant}" if variant else stage


def split_stage_key(key: str) -> tuple[str, str | None]:
    """Inverse of ``stage_key``: ``"validate.fp16"`` -> ``("validate", "fp16")``."""
    stage, _, variant = key.partition(".")
    return stage, (variant or None)


def resolve_device(device: str, *, strict: bool = True) -> str:
    """cpu or cuda for ``device`` in DEVICES.

    ``auto`` is cuda when ONNX Runtime can use it here, else cpu. ``cuda`` where CUDA
    cannot run raises CheckFailed when ``strict`` (the user asked for it: a silent CPU
    run would hide that), and is returned as is otherwise (the session then reports
    the fallback itself).
    """
    from .errors import CheckFailed, UserInputError

    if device not in DEVICES:
        raise UserInputError(f"--device {device} is not known", hint=f"choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    from .cuda import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if device == "auto":
        return "cpu" if reason else "cuda"
    if strict and reason:
        raise CheckFailed(f"--device cuda was asked for but ONNX Runtime cannot use CUDA here: {reason}",
                          hint="use --device cpu (or auto), or install onnxruntime-gpu with a working CUDA")
    return "cuda"


def short_error(e: BaseException, limit: int = 400) -> str:
    """First line of an exception, without ORT's status prefix and C++ source location."""
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else ""
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"Status Message: \S+:\d+ .*? was false\. ", "", text)
    return text[:limit] or type(e).__name__

# Batch: where the job runs (this process, or a Ray cluster), and what a row that the
# input format rejects (a CSV quote that never closes) does: stop the job, or go to
# the bad-row report.
BATCH_ENGINES = ("local", "ray")
BAD_ROW_POLICIES = ("fail", "report")
