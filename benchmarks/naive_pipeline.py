"""The naive CSV batch job, written the seed blog's way (its python_alternative.py).

pandas reads the CSV in chunks of 256 rows; BertTokenizerFast pads every row to a
fixed maximum length; ONNX Runtime runs once per chunk; the outputs are collected in
a list and written at the end with csv.writer. The outputs are what `onnxforge batch`
writes for an embedding model (mean-pooled, L2-normalized embeddings). It times its
phases the way the seed did (boot, read, encode, inference, write) and prints them as
one JSON line.

    python benchmarks/naive_pipeline.py --model ART/model.onnx --tokenizer ART --csv IN.csv --out OUT.csv
"""

import time

start = time.time()

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as rt  # noqa: E402
import pandas as pd  # noqa: E402
from transformers import BertTokenizerFast  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--column", default="text")
    parser.add_argument("--id-column", default="id")
    parser.add_argument("--rows", type=int, default=None, help="read only the first N rows (the seed read 10,000)")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    sess = rt.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    input_names = [i.name for i in sess.get_inputs()]
    tokenizer = BertTokenizerFast.from_pretrained(args.tokenizer)
    setup = time.time()

    chunks = pd.read_csv(args.csv, nrows=args.rows, chunksize=args.chunk_size)
    delta_read = delta_encoding = delta_onnx = 0.0
    ids, outputs = [], []
    rows = 0
    while True:
        t = time.time()
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        texts = chunk[args.column].fillna("").astype(str).tolist()
        ids.extend(chunk[args.id_column].tolist())
        delta_read += time.time() - t

        t = time.time()
        encoding = tokenizer(
            texts, add_special_tokens=True, max_length=args.max_length, padding="max_length", truncation=True,
            return_attention_mask=True, return_token_type_ids=True, return_tensors="np",
        )
        delta_encoding += time.time() - t

        t = time.time()
        hidden = sess.run(None, {name: encoding[name] for name in input_names})[0]
        mask = encoding["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        outputs.append(pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12))
        delta_onnx += time.time() - t
        rows += len(texts)

    t = time.time()
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        embeddings = np.concatenate(outputs) if outputs else np.zeros((0, 0))
        writer.writerow(["id"] + [f"e{i}" for i in range(embeddings.shape[1])])
        for row_id, vector in zip(ids, embeddings):
            writer.writerow([row_id] + vector.tolist())
    delta_write = time.time() - t
    end = time.time()
    print(json.dumps({
        "rows": rows, "boot_s": setup - start, "read_s": delta_read, "encode_s": delta_encoding,
        "inference_s": delta_onnx, "write_s": delta_write, "total_s": end - start,
        "max_length": args.max_length, "chunk_size": args.chunk_size,
    }))


if __name__ == "__main__":
    main()
