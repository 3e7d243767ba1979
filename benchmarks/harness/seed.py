"""The seed blog's figures (../shared/seed/, "Deep Learning in Rust"), as published.

Its hardware: a 6-core/12-thread CPU and a GTX 1050 GPU; onnxruntime 1.8 (through
onnxruntime-rs in Rust, the Python package in Python); a custom BERT classifier
(bert-base-cased). Its batch script and server select CUDAExecutionProvider, so its
CSV and server inference figures are most likely GPU figures; the blog does not say.
"""

SEED = {
    "source": "seed blog 'Deep Learning in Rust' (haixuanTao), tables as published",
    "hardware": "6-core/12-thread CPU, NVIDIA GTX 1050; onnxruntime 1.8; BERT (bert-base-cased) classifier",
    "inference_per_phrase_ms": {"ONNX CPU (Rust or Python)": 125.0, "ONNX GPU (Rust or Python)": 10.0},
    "tokenizer_us_per_phrase": {
        "Python BertTokenizer": "1000",
        "Python BertTokenizerFast": "200-600",
        "Rust tokenizers": "50-150",
    },
    "csv_10k": {
        "Python": {"boot_s": 4.0, "encode_s": 0.7, "inference_s": 75.0, "total_s": 80.0, "memory_gib": 1.0},
        "Rust": {"boot_s": 1.0, "encode_s": 0.3, "inference_s": 75.0, "total_s": 76.0, "memory_gib": 0.7},
    },
    "server": {
        "Python FastAPI": {"encode_us": 400.0, "inference_ms": 10.0, "overhead_ms": 2.0, "mean_ms": 12.8, "rps": 77.5},
        "Rust Actix Web": {"encode_us": 100.0, "inference_ms": 10.0, "overhead_ms": 1.0, "mean_ms": 10.4, "rps": 95.0},
    },
}
