"""`rung label`: send prompts to one model, grade each answer against its reference, and append
the outcomes in the shared data's JSONL format.

Concurrent, and resumable: every outcome is appended (and flushed) as soon as it is graded, and
a restart skips the prompts this model already has, so after an interruption nothing is lost
but the answers in flight, and nothing is labelled twice.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from tqdm import tqdm

from rung.classifiers.grading import grade_choice, grade_exact, grade_number
from rung.classifiers.outcomes import Outcome, read_outcomes, read_rows
from rung.confidence.signals import answer_signals, token_scores

TEMPLATES = {
    "number": "{prompt}\n\nSolve the problem step by step. End with a line of the form "
    "'Answer: <number>'.",
    "choice": "{prompt}\n\nThink step by step, then end with 'The answer is (X)' where X is the "
    "letter of the correct option.",
    "exact": "{prompt}",
}
TOP_LOGPROBS = 5
PREFIX_TOKENS = 64
"""Per-token scores kept with each outcome, so stream-probe signals (the first K tokens) can be
recomputed offline for any K up to this."""
JUDGE = (
    "You grade answers. Question:\n{prompt}\n\nReference answer:\n{reference}\n\nCandidate "
    "answer:\n{answer}\n\nIs the candidate answer correct and consistent with the reference? "
    "Reply with one word: yes or no."
)


def grader_for(dataset: str) -> str:
    if dataset.startswith(("gsm8k", "math")):
        return "number"
    if dataset.startswith("mmlu"):
        return "choice"
    return "exact"


GRADERS: dict[str, Callable[[str, str], float]] = {
    "number": grade_number,
    "choice": grade_choice,
    "exact": grade_exact,
}


@dataclass(frozen=True)
class Endpoint:
    url: str
    """Base URL of an OpenAI-compatible API (…/v1): a rung gateway, vLLM, llama.cpp."""
    model: str
    """Sent as `model` (a tier's name pins that tier on a rung gateway)."""
    api_key: str | None = None


@dataclass
class Summary:
    labelled: int = 0
    skipped: int = 0
    failed: int = 0
    scores: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    tokens: int = 0

    def text(self, label: str) -> str:
        if not self.scores:
            return (
                f"{label}: nothing new labelled ({self.skipped} already done, {self.failed} failed)"
            )
        return (
            f"{label}: labelled {self.labelled} (skipped {self.skipped} already done, "
            f"{self.failed} failed), accuracy {statistics.mean(self.scores):.3f}, mean latency "
            f"{statistics.mean(self.seconds):.1f}s, {self.tokens} completion tokens"
        )


async def _ask(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    content: str,
    max_tokens: int,
    logprobs: bool = False,
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    payload: dict[str, Any] = {
        "model": endpoint.model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 0,
    }
    if logprobs:
        payload |= {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
    async with session.post(
        endpoint.url.rstrip("/") + "/chat/completions", json=payload, headers=headers
    ) as response:
        body: dict[str, Any] = await response.json(content_type=None)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {str(body)[:200]}")
        return body


async def _judge(
    session: aiohttp.ClientSession, judge: Endpoint, outcome: Outcome, answer: str
) -> float:
    body = await _ask(
        session,
        judge,
        JUDGE.format(prompt=outcome.prompt, reference=outcome.reference, answer=answer),
        4,
    )
    verdict = (body["choices"][0]["message"]["content"] or "").strip().lower()
    return float(verdict.startswith("yes"))


def already_labelled(out: Path, label: str) -> set[str]:
    if not out.exists():
        return set()
    return {row["id"] for row in read_rows(out) if label in row.get("results", {})}


def _repair_torn_tail(out: Path) -> None:
    """An interrupted append can leave half a line; cut it so the next append starts clean."""
    if not out.exists() or out.stat().st_size == 0:
        return
    data = out.read_bytes()
    if not data.endswith(b"\n"):
        out.write_bytes(data[: data.rfind(b"\n") + 1])


async def label(
    prompts: Iterable[Outcome],
    endpoint: Endpoint,
    out: Path,
    *,
    name: str,
    concurrency: int = 2,
    max_tokens: int = 512,
    grader: str = "auto",
    judge: Endpoint | None = None,
    timeout_s: float = 600,
    progress: bool = True,
    logprobs: bool = True,
) -> Summary:
    """Label every prompt not yet labelled for `name` in `out`; append outcomes as they come."""
    summary = Summary()
    done = already_labelled(out, name)
    todo = []
    for outcome in prompts:
        if outcome.id in done:
            summary.skipped += 1
        else:
            todo.append(outcome)
    _repair_torn_tail(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    queue: asyncio.Queue[Outcome] = asyncio.Queue()
    for outcome in todo:
        queue.put_nowait(outcome)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    with (
        out.open("a", encoding="utf-8") as sink,
        tqdm(
            total=len(todo),
            desc=f"labelling {name}",
            unit="prompt",
            file=sys.stderr,
            disable=None if progress else True,
        ) as bar,
    ):
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def worker() -> None:
                while not queue.empty():
                    outcome = queue.get_nowait()
                    kind = grader_for(outcome.dataset) if grader == "auto" else grader
                    template = TEMPLATES.get(kind, TEMPLATES["exact"])
                    started = time.perf_counter()
                    try:
                        body = await _ask(
                            session,
                            endpoint,
                            template.format(prompt=outcome.prompt),
                            max_tokens,
                            logprobs,
                        )
                        choice = body["choices"][0]
                        answer = choice["message"]["content"] or ""
                        if kind == "judge":
                            if judge is None:
                                raise RuntimeError("grader 'judge' needs a judge endpoint")
                            score = await _judge(session, judge, outcome, answer)
                        else:
                            score = GRADERS[kind](answer, outcome.reference)
                    except (aiohttp.ClientError, TimeoutError, RuntimeError, KeyError) as exc:
                        summary.failed += 1
                        bar.write(f"{outcome.id}: {type(exc).__name__}: {exc}"[:200])
                        bar.update(1)
                        continue
                    seconds = time.perf_counter() - started
                    usage = body.get("usage") or {}
                    result = {
                        "score": score,
                        "output_chars": len(answer),
                        "text": answer,  # what `rung train` fits the answer verifier on
                        "completion_tokens": usage.get("completion_tokens"),
                        "latency_s": round(seconds, 3),
                        "finish_reason": choice.get("finish_reason"),
                        "grader": kind,
                    }
                    if logprobs:
                        scores = token_scores((choice.get("logprobs") or {}).get("content"))
                        signals = answer_signals(answer, choice.get("finish_reason"), scores)
                        result["signals"] = signals.to_dict()
                        result["token_scores"] = [
                            [
                                round(t.logprob, 4),
                                None if t.entropy is None else round(t.entropy, 4),
                            ]
                            for t in scores[:PREFIX_TOKENS]
                        ]
                    row = {
                        "id": outcome.id,
                        "dataset": outcome.dataset,
                        "prompt": outcome.prompt,
                        "reference": outcome.reference,
                        "results": {name: result},
                    }
                    if outcome.category is not None:
                        row["category"] = outcome.category
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    summary.labelled += 1
                    summary.scores.append(score)
                    summary.seconds.append(seconds)
                    summary.tokens += int(usage.get("completion_tokens") or 0)
                    bar.update(1)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summary


def select(paths: list[Path], limit: int | None, datasets: list[str] | None) -> list[Outcome]:
    """Prompts to label: in file order, optionally only some data sets, at most `limit` each."""
    chosen: list[Outcome] = []
    counts: dict[str, int] = {}
    for outcome in read_outcomes(paths):
        if datasets and outcome.dataset not in datasets:
            continue
        if limit is not None and counts.get(outcome.dataset, 0) >= limit:
            continue
        counts[outcome.dataset] = counts.get(outcome.dataset, 0) + 1
        chosen.append(outcome)
    return chosen
