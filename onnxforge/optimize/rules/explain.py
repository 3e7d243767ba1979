"""Why ORT's EmbedLayerNormalization fusion did not match, read off the final graph
(the TorchScript route's explanation; the dynamo route has its own rule)."""

from __future__ import annotations


def _describe_producer(name: str, producers: dict, inputs: set[str], inits: set[str], depth: int = 3) -> str:
    if name in inputs:
        return name
    if name in inits:
        return f"<{name}>"
    node = producers.get(name)
    if node is None:
        return "?"
    if depth == 0:
        return f"{node.op_type}(...)"
    args = [_describe_producer(i, producers, inputs, inits, depth - 1) for i in node.input if i]
    return f"{node.op_type}({', '.join(args)})"


def explain_embed(model) -> str:
    """Why ORT's EmbedLayerNormalization fusion did not match, read off the graph."""
    graph = model.graph
    inputs = {i.name for i in graph.input}
    inits = {t.name for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    word = [n for n in graph.node if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == "input_ids"]
    if not word:
        return "input_ids does not feed an embedding Gather directly, so the embedding pattern cannot start"
    # Walk Add nodes from the word-embedding lookup to the first normalization.
    frontier, adds, norm = [word[0].output[0]], [], None
    for _ in range(4):
        nxt = []
        for t in frontier:
            for c in consumers.get(t, []):
                if c.op_type == "Add":
                    adds.append(c)
                    nxt.append(c.output[0])
                elif c.op_type in ("LayerNormalization", "SkipLayerNormalization"):
                    norm = norm or c
        frontier = nxt
    if norm is None:
        return "no LayerNormalization over the summed embeddings (word + position [+ token type])"
    others = []
    for add in adds:
        for i in add.input:
            p = producers.get(i)
            if p is not None and p.op_type == "Gather" and p is not word[0]:
                others.append(f"{p.input[0]} indexed by {_describe_producer(p.input[1], producers, inputs, inits)}")
    return (
        "ORT matches position ids built as Slice(position_ids, 0, Unsqueeze(Gather(Shape(input_ids), 1))) "
        "(or Expand(Range) over input_ids' length) feeding an Attention; this graph has "
        + ("; ".join(others) if others else "no position-embedding Gather next to the word embedding")
    )
