"""Explainers: turn a :class:`~isthmus.interp.explain.records.LatentRecord` into an :class:`Explanation`.

* :class:`TokenStatsExplainer` (offline, deterministic): statistics of the tokens at activating positions
  (and of the tokens just before them) against the background unigram frequencies; the explanation is a
  lexical predicate ("the token is one of {...}", "the token after one of {...}") rendered as text and kept
  machine-readable in ``Explanation.predicate`` so the offline simulator can score it exactly.
* :class:`OpenAICompatibleExplainer`: any ``/v1/chat/completions`` server (vLLM, llama.cpp, ...). The API key
  is read from an environment variable *by name* at request time; it is never stored on the object, logged,
  put in ``repr`` or in exception messages. Retries with exponential backoff on timeouts, connection errors,
  429 and 5xx; a per-request timeout; a concurrency limit for :meth:`explain_many`; an on-disk JSON cache of
  responses keyed by the SHA-256 of the request payload.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from isthmus.interp.explain.records import LatentRecord, render_window

__all__ = [
    "Explanation",
    "Explainer",
    "TokenStatsExplainer",
    "OpenAICompatibleExplainer",
    "ExplainerError",
    "ExplainerTimeout",
    "explain_prompt",
]

log = logging.getLogger(__name__)


@dataclass
class Explanation:
    text: str
    predicate: dict[str, Any] | None = None  # {"cur"/"prev"/"ctx": ids, "ctx_min", "seen"}: predicate_mask
    meta: dict[str, Any] = field(default_factory=dict)


class Explainer(ABC):
    @abstractmethod
    def explain(self, record: LatentRecord) -> Explanation: ...

    def explain_many(self, records: Sequence[LatentRecord]) -> list[Explanation]:
        return [self.explain(r) for r in records]


# ---------------------------------------------------------------- offline: token statistics ----------------
class TokenStatsExplainer(Explainer):
    """Explain by the tokens (or preceding tokens) that are enriched at activating positions.

    For the train windows, each token id gets its share of active positions ``p(t | active)`` and its lift
    ``p(t | active) / p_bg(t)``. Tokens with lift >= ``min_lift`` are added by decreasing share until they
    cover ``coverage`` of the active positions (at most ``max_tokens``). The same is done for the previous
    token; the candidate predicates (current set, previous set, both) are compared by F1 on the positions of
    the train windows, and the best one is the explanation.
    """

    def __init__(
        self,
        background: Mapping[int, int],
        vocab: Sequence[str] | None = None,
        *,
        min_lift: float = 2.0,
        coverage: float = 0.9,
        max_tokens: int = 16,
    ) -> None:
        total = sum(background.values())
        self.p_bg = {int(t): c / total for t, c in background.items()}
        self.vocab, self.min_lift, self.coverage, self.max_tokens = vocab, min_lift, coverage, max_tokens

    def _name(self, t: int, record: LatentRecord) -> str:
        voc = record.vocab or self.vocab
        return voc[t] if voc else str(t)

    def _pick(self, counts: Counter, n_active: int) -> list[int]:
        out: list[int] = []
        covered = 0
        for t, c in counts.most_common():
            if len(out) >= self.max_tokens or covered >= self.coverage * n_active:
                break
            lift = (c / n_active) / max(self.p_bg.get(int(t), 0.0), 1e-9)
            if lift >= self.min_lift:
                out.append(int(t))
                covered += c
        return out

    def candidates(self, record: LatentRecord) -> list[dict[str, Any]]:
        """The lexical predicates mined from the train windows (current set, previous set, both)."""
        cur: Counter[int] = Counter()
        prev: Counter[int] = Counter()
        n_active = 0
        for ex in record.train:
            for i, (t, fires) in enumerate(zip(ex.tokens, ex.active(record.threshold))):
                if fires:
                    n_active += 1
                    cur[t] += 1
                    if i > 0:
                        prev[ex.tokens[i - 1]] += 1
        if n_active == 0:
            return []
        s_cur, s_prev = self._pick(cur, n_active), self._pick(prev, n_active)
        cands: list[dict[str, Any]] = []
        if s_cur:
            cands.append({"cur": s_cur, "prev": None})
        if s_prev:
            cands.append({"cur": None, "prev": s_prev})
        if s_cur and s_prev:
            cands.append({"cur": s_cur, "prev": s_prev})
        if not cands:  # nothing enriched: fall back to the most common activating tokens
            cands.append({"cur": [t for t, _ in cur.most_common(self.max_tokens)], "prev": None})
        return cands

    @staticmethod
    def train_f1(pred: Mapping[str, Any], record: LatentRecord) -> float:
        """F1 of ``pred`` against the active positions of the train windows and of the explainer's own
        non-activating windows, if the record has any (what the explainer may see; never the test windows)."""
        tp = fp = fn = 0
        for ex in list(record.train) + list(record.train_non_activating):
            mask, on = predicate_mask(pred, ex.tokens), ex.active(record.threshold)
            tp += sum(p and o for p, o in zip(mask, on))
            fp += sum(p and not o for p, o in zip(mask, on))
            fn += sum(o and not p for p, o in zip(mask, on))
        return 2 * tp / max(2 * tp + fp + fn, 1)

    def explain(self, record: LatentRecord) -> Explanation:
        cands = self.candidates(record)
        if not cands:
            return Explanation("no activating examples", None, {"train_f1": 0.0})
        best, best_f1 = cands[0], -1.0
        for c in cands:  # first best wins ties: candidates come simplest first
            f1 = self.train_f1(c, record)
            if f1 > best_f1:
                best, best_f1 = c, f1
        return Explanation(self.render(best, record), best, {"train_f1": best_f1})

    def render(self, pred: dict, record: LatentRecord) -> str:
        fmt = lambda ids: "{" + ", ".join(f'"{self._name(t, record)}"' for t in ids) + "}"  # noqa: E731
        if pred["cur"] and pred["prev"]:
            return f"the token is one of {fmt(pred['cur'])} and follows one of {fmt(pred['prev'])}"
        if pred["prev"]:
            return f"the token right after one of {fmt(pred['prev'])}"
        return f"the token is one of {fmt(pred['cur'])}"


def predicate_mask(pred: Mapping[str, Any] | None, tokens: Sequence[int]) -> list[bool]:
    """Per-token truth of a predicate over one window, the conjunction of the parts it sets:

    * ``"cur"``: the token is in the set; ``"prev"``: the token before it (in the window) is in the set;
    * ``"ctx"`` (+ ``"ctx_min"``, default 2): the window holds at least ``ctx_min`` tokens of the set — a
      context ("a passage about ...") read from the whole window, as an LLM scorer reads the window it is shown;
    * ``"seen"``: ``True`` — the same token occurs earlier in the window (a repeat); ``False`` — it does not.
    A predicate that sets no part is false everywhere."""
    if not pred:
        return [False] * len(tokens)
    cur = set(pred["cur"]) if pred.get("cur") else None
    prev = set(pred["prev"]) if pred.get("prev") else None
    ctx = set(pred["ctx"]) if pred.get("ctx") else None
    seen = pred.get("seen")
    if cur is None and prev is None and ctx is None and seen is None:
        return [False] * len(tokens)
    if ctx is not None and sum(t in ctx for t in tokens) < int(pred.get("ctx_min", 2)):
        return [False] * len(tokens)
    out = []
    before: set[int] = set()
    for i, t in enumerate(tokens):
        ok = cur is None or t in cur
        if prev is not None:
            ok = ok and i > 0 and tokens[i - 1] in prev
        if seen is not None:
            ok = ok and (t in before) == bool(seen)
        before.add(t)
        out.append(bool(ok))
    return out


# ---------------------------------------------------------------- online: OpenAI-compatible HTTP ------------
SYSTEM_PROMPT = (
    "You are analysing one latent of a neural network. You will see text windows in which the tokens "
    "where the latent is active are marked <<like this>>. Reply with one short line that describes "
    "what the marked tokens have in common. Do not add anything else."
)


def explain_prompt(record: LatentRecord, max_examples: int = 20) -> list[dict[str, str]]:
    """Chat messages for one record (delphi-style ``<<tok>>`` highlighting)."""
    lines = [
        f"Example {i + 1}: " + render_window(record.decode(ex.tokens), ex.active(record.threshold))
        for i, ex in enumerate(record.train[:max_examples])
    ]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(lines) + "\n\nExplanation:"},
    ]


class ExplainerError(RuntimeError):
    """A request failed for good (after retries, or with a non-retryable status)."""


class ExplainerTimeout(ExplainerError):
    """Every attempt timed out."""


_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAICompatibleExplainer(Explainer):
    """Explanations from an OpenAI-compatible chat-completions server.

    ``base_url`` is the API root (``http://127.0.0.1:8000/v1``); the request goes to
    ``{base_url}/chat/completions``. ``api_key_env`` names the environment variable holding the key; when it
    is unset no ``Authorization`` header is sent (local servers). The key is never kept on the object.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_concurrency: int = 4,
        cache_dir: str | Path | None = None,
        temperature: float = 0.0,
        max_tokens: int = 128,
        max_examples: int = 20,
    ) -> None:
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("max_concurrency >= 1, max_retries >= 0 and timeout > 0 are required")
        self.base_url, self.model, self.api_key_env = base_url.rstrip("/"), model, api_key_env
        self.timeout, self.max_retries, self.backoff, self.max_backoff = timeout, max_retries, backoff, max_backoff
        self.max_concurrency, self.temperature, self.max_tokens = max_concurrency, temperature, max_tokens
        self.max_examples = max_examples
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._sem = threading.Semaphore(max_concurrency)
        self.stats: Counter[str] = Counter()  # requests, retries, cache_hits

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r}, timeout={self.timeout}, max_retries={self.max_retries}, "
            f"max_concurrency={self.max_concurrency}, "
            f"cache_dir={str(self.cache_dir) if self.cache_dir else None!r})"
        )

    # -- wire ------------------------------------------------------------------------------------------
    def _payload(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    @staticmethod
    def cache_key(payload: Mapping[str, Any]) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "***") if key else text

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = "Bearer " + key
        req = urllib.request.Request(
            self.base_url + "/chat/completions", data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        del key
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - user-chosen server
            return json.loads(resp.read().decode())

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant text for ``messages`` (cached; retried; at most ``max_concurrency`` in flight)."""
        payload = self._payload(messages)
        key = self.cache_key(payload)
        path = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if path is not None and path.exists():
            try:
                self.stats["cache_hits"] += 1
                return json.loads(path.read_text())["text"]
            except (OSError, ValueError, KeyError):
                self.stats["cache_hits"] -= 1  # unreadable entry: refetch and overwrite
        last: str = ""
        timed_out = True
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats["retries"] += 1
                time.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            try:
                with self._sem:
                    self.stats["requests"] += 1
                    body = self._post(payload)
                text = body["choices"][0]["message"]["content"]
                break
            except urllib.error.HTTPError as e:
                timed_out = False
                last = f"HTTP {e.code} from {self.base_url}"
                if e.code not in _RETRY_STATUS:
                    raise ExplainerError(self._scrub(last)) from None
            except (TimeoutError, socket.timeout) as e:
                last = f"timed out after {self.timeout}s ({type(e).__name__})"
            except urllib.error.URLError as e:
                if isinstance(e.reason, (TimeoutError, socket.timeout)):
                    last = f"timed out after {self.timeout}s"
                else:
                    timed_out = False
                    last = f"connection error: {type(e.reason).__name__}"
            except (http.client.HTTPException, ConnectionError) as e:
                timed_out = False
                last = f"connection error: {type(e).__name__}"
            except (ValueError, KeyError, IndexError, TypeError) as e:
                timed_out = False
                last = f"malformed response ({type(e).__name__})"
            log.warning(
                "explainer request attempt %d/%d failed: %s", attempt + 1, self.max_retries + 1, self._scrub(last)
            )
        else:
            cls = ExplainerTimeout if timed_out else ExplainerError
            raise cls(
                self._scrub(f"request to {self.base_url} failed after {self.max_retries + 1} attempt(s): {last}")
            ) from None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_text(json.dumps({"text": text, "model": self.model}))
            tmp.replace(path)
        return text

    def explain(self, record: LatentRecord) -> Explanation:
        text = self.complete(explain_prompt(record, self.max_examples)).strip().splitlines()
        return Explanation(text[0].strip() if text else "", None, {"model": self.model})

    def explain_many(self, records: Sequence[LatentRecord]) -> list[Explanation]:
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            return list(pool.map(self.explain, records))
