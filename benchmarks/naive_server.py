"""The naive server the seed blog wrote (its python_alternative.py), for comparison.

Kept deliberately as the seed built it: FastAPI, an ``async def`` endpoint that
tokenizes with BertTokenizerFast, pads to a fixed maximum length and calls ONNX Runtime
once per request. No batching across requests; the blocking ``session.run`` inside
``async def`` holds the event loop, so requests are served one at a time. It takes
the same JSON as ``onnxforge serve`` ({"texts": [...]}) so one load generator drives
both, and returns the same mean-pooled, L2-normalized embeddings.

    python benchmarks/naive_server.py --model ART/model.onnx --tokenizer ART --port 8001
"""

from __future__ import annotations

import argparse


def build_app(model: str, tokenizer_dir: str, max_length: int):
    import numpy as np
    import onnxruntime as rt
    from fastapi import FastAPI
    from transformers import BertTokenizerFast

    app = FastAPI()
    sess = rt.InferenceSession(model, providers=["CPUExecutionProvider"])
    input_names = [i.name for i in sess.get_inputs()]
    tokenizer = BertTokenizerFast.from_pretrained(tokenizer_dir)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/embed")
    async def embed(payload: dict):
        encoding = tokenizer(
            payload["texts"], add_special_tokens=True, max_length=max_length, padding="max_length",
            truncation=True, return_attention_mask=True, return_token_type_ids=True, return_tensors="np",
        )
        hidden = sess.run(None, {name: encoding[name] for name in input_names})[0]
        mask = encoding["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return {"embeddings": pooled.tolist()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an .onnx file")
    parser.add_argument("--tokenizer", required=True, help="folder with vocab.txt / tokenizer.json")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--max-length", type=int, default=128, help="fixed padding length (the seed padded every text to it)")
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(build_app(args.model, args.tokenizer, args.max_length), host=args.host, port=args.port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
