"""``onnxforge batch --engine ray``: the batch job on a Ray cluster, shard by shard, resumable.

The driver reads the input once to cut it into shards (``shards.plan_input``: bad
records are found here, before any model runs), then Ray Data hands the shards to an
actor pool (``ShardWorker``: one runtime per actor, loaded once) that reads, tokenizes,
runs and writes each shard as a Parquet file. The driver collects each shard's counts
as it finishes (the progress bar), checks that every row read was written or reported,
and writes ``_manifest.json`` (counts, the artifact's hash, the shards) and then
``_SUCCESS``. Asked for a single file (``--out x.csv``/``.jsonl``/``.parquet`` or
``--format``), it joins the shards in input order into that file.

Without ``--ray-address`` the job starts a local Ray instance and shuts it down at
the end (no Ray process is left); with one it joins that cluster, whose nodes must
see the artifact folder and the output location (a shared path or a URI).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import OnnxforgeError, UserInputError
from .bad_rows import RowCounts
from .options import BatchOptions
from .output import finish, prepare_output
from .shard_worker import ERROR_COLUMN, ShardWorker
from .shards import FILE_COLUMN, INPUT_SUFFIXES, ROW_COLUMN, InputPlan, Shard, file_system, plan_input

DEFAULT_SHARD_ROWS = 1000


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UserInputError("--engine ray needs Ray Data, which is not installed",
                             hint="pip install 'onnxforge[ray]'") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray instance for the job
    actors: int | None = None  # None: one per CPU (or per GPU share with gpus_per_actor)
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    shard_rows: int = DEFAULT_SHARD_ROWS
    resume: bool = False
    input_format: str | None = None  # None: from the input's suffix
    local_cpus: int | None = None  # CPUs of the local instance (None: all)

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise UserInputError(f"--actors {self.actors} must be at least 1")
        if not 0 <= self.gpus_per_actor <= 8:
            raise UserInputError(f"--gpus-per-actor {self.gpus_per_actor} must be between 0 and 8")
        if not 0 < self.cpus_per_actor <= 64:
            raise UserInputError(f"--cpus-per-actor {self.cpus_per_actor} must be above 0")
        if self.shard_rows < 1:
            raise UserInputError(f"--shard-rows {self.shard_rows} must be at least 1")
        if self.input_format is not None and self.input_format not in set(INPUT_SUFFIXES.values()):
            raise UserInputError(f"--input-format {self.input_format} is not known", hint="choose csv, jsonl or parquet")


@dataclass
class RayBatchReport:
    input: str
    output: str
    format: str  # "shards" (a folder of Parquet shards) or csv / jsonl / parquet
    kind: str
    variant: str
    device: str
    artifact_sha256: str
    actors: int = 0
    shards: int = 0
    shards_skipped: int = 0
    row_counts: RowCounts = field(default_factory=lambda: RowCounts(0, 0, 0, 0))
    error_count: int = 0
    truncated_count: int = 0
    bad_rows_path: str | None = None
    seconds: float = 0.0
    plan_seconds: float = 0.0
    cluster_seconds: float = 0.0

    def counts(self) -> RowCounts:
        """Rows read, written, reported, and with a result (the same contract as the local report)."""
        return self.row_counts

    def __bool__(self) -> bool:
        return self.row_counts.without_result == 0

    @property
    def rows(self) -> int:
        return self.row_counts.read

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"passed": bool(self), "engine": "ray", "input": self.input, "output": self.output, "format": self.format,
                "kind": self.kind, "variant": self.variant, "device": self.device, "artifact_sha256": self.artifact_sha256,
                "actors": self.actors, "shards": self.shards, "shards_skipped": self.shards_skipped,
                "rows": self.row_counts.to_dict(), "error_rows": self.error_count, "truncated_rows": self.truncated_count,
                "bad_rows_report": self.bad_rows_path, "seconds": round(self.seconds, 3),
                "plan_seconds": round(self.plan_seconds, 3), "cluster_seconds": round(self.cluster_seconds, 3),
                "rows_per_s": round(self.rows_per_s, 1)}


@contextmanager
def ray_cluster(address: str | None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Join ``address``, or start a local instance; shut down (or disconnect) at the end."""
    ray = import_ray()
    owned = not ray.is_initialized()
    if owned:
        # Ray's start-up notices (and the workers' logs) stay in Ray's log files; errors
        # still reach the driver as exceptions.
        quiet = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
        try:
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(address="local", num_cpus=num_cpus, **quiet)
        except ConnectionError as e:
            raise UserInputError(f"cannot join the Ray cluster at {address}: {e}",
                                 hint="check `ray status` there, or leave out --ray-address to run on this machine") from None
    try:
        yield ray
    finally:
        if owned:
            ray.shutdown()


def artifact_fingerprint(artifact, variant: str) -> str:
    """sha256 over the variant's model files and the tokenizer: what makes the values."""
    from ..artifact import model_files, sha256_file

    h = hashlib.sha256()
    files = model_files(artifact.variant_path(variant)) + [p for p in [artifact.root / "tokenizer.json"] if p.is_file()]
    for path in files:
        h.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return h.hexdigest()


def _single_file_format(out: str, fmt: str | None) -> str | None:
    if fmt is not None:
        return fmt
    return {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}.get(
        Path(out).suffix.lower())


def _beside(out: str, suffix: str) -> str:
    """A hidden sibling of ``out`` (a path or a URI): ``dir/.name<suffix>``."""
    folder, slash, name = out.rstrip("/").rpartition("/")
    return f"{folder}{slash}.{name}{suffix}"


def _unwrap(e: BaseException) -> BaseException:
    """The onnxforge error inside Ray's wrappers (RayTaskError, UserCodeException), if any."""
    seen = set()
    stack = [e]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OnnxforgeError):
            return cur
        stack += [getattr(cur, "cause", None), cur.__cause__, cur.__context__]
    return e


def ray_batch(artifact_dir: str | Path, input_uri: str, out: str, options: BatchOptions = BatchOptions(),
              ray_options: RayOptions = RayOptions(), *, progress: Callable[[int, int], None] | None = None) -> RayBatchReport:
    """Run ``options.column`` of every row of ``input_uri`` through the model on Ray; see the module doc.

    ``options``: the batch job's options, shared with the local engine (``chunk_rows``
    aside: shards are ``ray_options.shard_rows``). ``progress(rows_done, rows_total)``
    is called as shards finish.
    """
    from ..artifact import Artifact
    from ..runtime import choose_variant, default_variant, result_kind
    from ..runtime.prompts import prompt_prefix

    started = time.perf_counter()
    import_ray()
    input_uri, out = str(input_uri), str(out)
    artifact = Artifact.open(artifact_dir)
    if options.device == "cuda" and ray_options.gpus_per_actor <= 0:
        raise UserInputError("--device cuda with --engine ray needs --gpus-per-actor (Ray gives GPUs only to actors that ask)",
                             hint="e.g. --gpus-per-actor 0.5 for two actors per GPU")
    # Actors run where Ray puts them: a GPU share means CUDA, none means CPU (auto included).
    device = "cuda" if ray_options.gpus_per_actor > 0 else "cpu"
    variant = options.variant or choose_variant(artifact.variants, device, default_variant(artifact, device))
    prompt_prefix(artifact, options.prompt_name)  # an unknown prompt: exit 2 before any actor starts
    artifact_hash = artifact_fingerprint(artifact, variant)
    kind = result_kind(artifact.spec)
    single = _single_file_format(out, options.format)

    plan = plan_input(input_uri, ray_options.input_format, shard_rows=ray_options.shard_rows, delimiter=options.delimiter)
    options.bad_rows.refuse(plan.bad, input_uri)
    keep = _carried_columns(plan, options, artifact.spec)
    with_file = len(plan.files) > 1
    job = _job_fingerprint(plan, artifact_hash, variant, device, options, ray_options, keep)
    shard_dir = out if single is None else _beside(out, ".parts")
    fs, shard_path = file_system(shard_dir)
    if "://" not in shard_dir:
        shard_dir = shard_path  # absolute: actors may run in another working directory
    bare = [(f, f.split("://", 1)[-1]) for f in plan.files]  # URIs as their file system's paths
    inside = [f for f, p in bare if p == shard_path or p.startswith(shard_path.rstrip("/") + "/")]
    if inside:
        raise UserInputError(f"--out {out} holds the input {inside[0]}; the job replaces the shards it finds there",
                             hint="write the results to another folder")
    done = prepare_output(fs, shard_path, plan, job, ray_options.resume)
    report = RayBatchReport(input=input_uri, output=out, format=single or "shards", kind=kind, variant=variant,
                            device=device, artifact_sha256=artifact_hash, shards=len(plan.shards), shards_skipped=len(done))
    report.plan_seconds = time.perf_counter() - started
    pending = [s for s in plan.shards if s.name not in done]
    total = plan.rows
    rows_done = sum(s.rows for s in plan.shards if s.name in done)
    if progress is not None:
        progress(rows_done, total)
    summaries = dict(done)
    if pending:
        cluster_started = time.perf_counter()
        with ray_cluster(ray_options.address, num_cpus=ray_options.local_cpus) as ray:
            actors = _actor_count(ray, ray_options, len(pending))
            report.actors = actors
            worker_args = dict(artifact_dir=str(Path(artifact_dir).resolve()), variant=variant, device=device,
                               engine=options.runtime_engine, prompt_name=options.prompt_name, max_length=options.max_length,
                               threads=options.threads or max(1, int(ray_options.cpus_per_actor)),
                               batch_size=options.batch_size, normalize=options.normalize, out=shard_dir, job=job,
                               columns=plan.columns, text_column=options.column, keep=keep, delimiter=options.delimiter,
                               with_file=with_file)
            try:
                for summary in _run_shards(ray, pending, worker_args, actors, ray_options):
                    summaries[summary["name"]] = summary
                    rows_done += summary["rows"]
                    if progress is not None:
                        progress(rows_done, total)
            except OnnxforgeError:
                raise
            except Exception as e:
                inner = _unwrap(e)
                if inner is not e:
                    raise inner from None
                raise
        report.cluster_seconds = time.perf_counter() - cluster_started
    finish(report, fs, shard_path, plan, summaries, job, single)
    report.seconds = time.perf_counter() - started
    return report


def _carried_columns(plan: InputPlan, options, spec) -> list[str]:
    columns = plan.columns
    if plan.format != "jsonl" and options.column not in columns:
        raise UserInputError(f"{plan.files[0]} has no column {options.column!r}; its columns are {columns}",
                             hint="pass --column NAME with one of those")
    if plan.format == "csv" and columns.count(options.column) > 1:
        raise UserInputError(f"{plan.files[0]} has {columns.count(options.column)} columns named {options.column!r}",
                             hint="rename one of them")
    if options.keep is None:
        keep = [c for c in columns if c != options.column]
    else:
        missing = [k for k in options.keep if k not in columns]
        if missing:
            raise UserInputError(f"--keep names {missing}, which the input does not have; its columns are {columns}")
        keep = list(options.keep)
    from ..runtime.results import result_columns

    results = result_columns(spec)
    reserved = set(results) | {ERROR_COLUMN, ROW_COLUMN} | ({FILE_COLUMN} if len(plan.files) > 1 else set())
    clash = sorted(set(keep) & reserved)
    if clash:
        raise UserInputError(f"input column(s) {clash} would clash with the columns the job adds {sorted(reserved)}",
                             hint="leave them out with --keep (list the columns to carry)")
    if len(set(keep)) != len(keep):
        raise UserInputError(f"the carried columns repeat a name ({keep}); Parquet needs unique names",
                             hint="choose the columns with --keep")
    return keep


def _job_fingerprint(plan: InputPlan, artifact_hash: str, variant: str, device: str, options, ray_options: RayOptions,
                     keep: list[str]) -> str:
    """What a written shard must match to be reused by --resume: model, options and the input files."""
    inputs = []
    for path in plan.files:
        fs, p = file_system(path)
        info = fs.get_file_info(p)
        inputs.append([path, info.size, info.mtime_ns])
    facts = {"artifact": artifact_hash, "variant": variant, "device": device, "normalize": options.normalize,
             "max_length": options.max_length, "column": options.column, "keep": keep, "delimiter": options.delimiter,
             "inputs": inputs, "shard_rows": ray_options.shard_rows}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def _actor_count(ray, ray_options: RayOptions, shards: int) -> int:
    resources = ray.cluster_resources()
    if ray_options.gpus_per_actor > 0:
        gpus = resources.get("GPU", 0)
        if gpus < ray_options.gpus_per_actor:
            raise UserInputError(f"--gpus-per-actor {ray_options.gpus_per_actor:g} but the Ray cluster has {gpus:g} GPU(s)",
                                 hint="leave out --gpus-per-actor to run on CPUs")
        fit = int(gpus // ray_options.gpus_per_actor)
    else:
        fit = max(1, int(resources.get("CPU", 1) // ray_options.cpus_per_actor))
    return max(1, min(ray_options.actors or fit, shards))


def _run_shards(ray, pending: list[Shard], worker_args: dict, actors: int, ray_options: RayOptions) -> Iterator[dict]:
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ds = ray.data.from_items([{"shard": s.to_json()} for s in pending], override_num_blocks=len(pending))
    # The job's settings ride on a subclass, not as constructor arguments: Ray keeps those
    # in the object store and warns that a restarted actor could lose them.
    worker = type("JobShardWorker", (ShardWorker,), {"settings": worker_args})
    ds = ds.map_batches(worker, batch_size=1, batch_format="numpy",
                        compute=ActorPoolStrategy(size=actors), num_cpus=ray_options.cpus_per_actor,
                        num_gpus=ray_options.gpus_per_actor or None)
    for row in ds.iter_rows():
        yield json.loads(row["summary"])
