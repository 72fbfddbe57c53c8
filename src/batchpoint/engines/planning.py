"""Mini-batch planning and the job's retry settings, shared by all engines (the decisions made on a
failure are :mod:`batchpoint.engines.policy`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from batchpoint.outputs import OutputWriter, writer_for
from batchpoint.outputs.append_row import APPEND_ROW


@dataclass(frozen=True)
class FileRef:
    """One input file: ``source`` names the input's storage spec, ``path`` is relative to it."""

    source: str
    path: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class MiniBatch:
    index: int
    files: tuple[FileRef, ...]
    sub: int = 0  # > 0 for the single-file pieces of a mini-batch that failed as a whole
    attempt: int = 1
    pieces: int = 1  # how many pieces the mini-batch was split into
    platform_failures: int = 0  # platform failures in a row (worker lost, storage fault), see policy.py
    #: its worker was killed inside run() on every platform retry: a further kill there is the
    #: scoring code's failure at once (policy.py, ``death_in_run``)
    kills_run: bool = False

    @property
    def key(self) -> str:
        return f"{self.index:08d}-{self.sub:04d}"

    def retry(self) -> MiniBatch:
        """The next attempt after a user, input or timeout failure (counts toward max_retries)."""
        return MiniBatch(self.index, self.files, self.sub, self.attempt + 1, self.pieces, kills_run=self.kills_run)

    def retry_platform(self) -> MiniBatch:
        """The same attempt again after a platform failure (not a retry of the user's code)."""
        return MiniBatch(self.index, self.files, self.sub, self.attempt, self.pieces, self.platform_failures + 1,
                         self.kills_run)

    def split(self, final_attempt: int) -> list[MiniBatch]:
        """One mini-batch per file, so a failing file is named and the others still scored."""
        return [MiniBatch(self.index, (f,), i + 1, final_attempt, len(self.files), kills_run=self.kills_run)
                for i, f in enumerate(self.files)]


@dataclass
class MiniBatchOutcome:
    batch: MiniBatch
    rows: int = 0
    #: set when the files of this batch finally failed: type, message, where, traceback and ``kind``
    #: (user | input | timeout | platform, see policy.py)
    error: dict[str, Any] | None = None
    seconds: float = 0.0
    #: a success whose ``run()`` returned fewer results than the mini-batch has files: how many files
    #: are missing (Azure counts them as failed against ``error_threshold``; policy.py)
    missing: int = 0
    #: a success whose rows a worker appended to its segment (the local pool, ``outputs/base.py``
    #: ``Segment``): ``(segment file in parts/, offset, length)``; None: a part file of its own
    segment: tuple[str, int, int] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RetryPolicy:
    """The deployment's retry settings; what they lead to is ``engines/policy.py``."""

    max_retries: int = 3
    timeout_s: float = 30.0
    error_threshold: int = -1

    def threshold_exceeded(self, files_failed: int) -> bool:
        return self.error_threshold >= 0 and files_failed > self.error_threshold


def plan_minibatches(files: Iterator[FileRef], size: int, start: int = 0) -> Iterator[MiniBatch]:
    """Group files lazily into mini-batches of ``size`` (the listing is never held in memory)."""
    chunk: list[FileRef] = []
    index = start
    for ref in files:
        chunk.append(ref)
        if len(chunk) == size:
            yield MiniBatch(index, tuple(chunk))
            index += 1
            chunk = []
    if chunk:
        yield MiniBatch(index, tuple(chunk))


@dataclass
class EngineJob:
    """Everything an engine needs to run one job's mini-batches."""

    name: str
    workers: int
    scorer: dict[str, Any]  # model_dir, code_dir, scoring_script
    sources: dict[str, Any]  # source key -> StorageSpec
    policy: RetryPolicy
    parts_dir: str
    logs_dir: str
    #: the job's output action: the name its output writer is registered under (``outputs/``,
    #: ``append_row``, ``summary_only``, …), sent to the workers, which pick their writer by it
    output_action: str = APPEND_ROW
    logging_level: str = "info"
    environment: dict[str, str] = field(default_factory=dict)
    #: the interpreter of the deployment's own environment (``batchpoint.environments``); None: the
    #: server's (the forkserver's fast path)
    python_exe: str | None = None
    #: where the workers write their parts themselves when the job's output store is remote and the
    #: engine's nodes share no disk with the server (the Ray engine): ``source`` (the key of the
    #: output store's delegated, writable spec among the sources) and ``prefix`` (``<prefix>/<part name>``
    #: on it, the part named by the job's writer, ``jobs/assembly.py``); None: parts go to ``parts_dir``
    parts_store: dict[str, str] | None = None
    #: where the workers upload what the scoring script writes to ``AZUREML_BI_OUTPUT_PATH``
    #: themselves (the same engines, a remote output store): ``source`` as above and ``prefix`` (the
    #: job's ``score`` output folder on it); None: the server's folder for them (``jobs/bi_output.py``)
    bi_output_store: dict[str, str] | None = None
    #: ``settings.init_timeout``: seconds a worker's ``init()`` may take before it is killed (policy.py)
    init_timeout_s: float = 600.0
    #: the most bytes of a worker's log before it is cut (one older copy kept: ``worker-<n>.log.1``)
    log_max_bytes: int = 20 << 20
    #: ``on_phase(state, message, **data)``: a step inside ``Running`` (``init()`` while workers start),
    #: shown by ``job stream`` (``lifecycle.phase``); None: not reported
    on_phase: Callable[..., None] | None = None
    #: how the workers are fenced (``engines/sandbox.py``): ``mode`` ("bwrap" | "none"), ``bwrap``
    #: (the program), ``run_as``/``uid``/``gid`` (the workers' user), ``home`` (the server's home,
    #: which no worker may see), ``shared`` (folders every worker may write); None: bubblewrap with
    #: its defaults
    isolation: dict[str, Any] | None = None
    #: ``<endpoint>/<deployment>`` of the job: warm workers (``engines/warm.py``) serve only jobs of
    #: the deployment they were started for; None: a job of no deployment (tests)
    deployment: str | None = None
    #: the deployment's compute as warm workers read it: ``name``, ``min_instances`` and
    #: ``per_instance`` (its max_concurrency_per_instance); up to min_instances × per_instance of the
    #: deployment's parked workers are kept past the idle timeout. None: no compute (none kept past it)
    warm_compute: dict[str, Any] | None = None

    def writer(self) -> OutputWriter:
        """The job's output writer (``outputs/``, by :attr:`output_action`, as its workers pick it from
        their start message): it names the parts (:meth:`~batchpoint.outputs.OutputWriter.part_name`)
        and says whether there are any."""
        return writer_for(self.output_action)
