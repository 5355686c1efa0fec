"""Text generation with a language model folder: streaming, sampling, beam search.

    generator = Generator.load("path/or/owner-repo")        # model + tokenizer
    for piece in generator.stream("ROMEO:", GenerationOptions(temp=0.8)):
        print(piece, end="", flush=True)
    mlxseq.generate("ROMEO:", model=..., temp=0.8, max_tokens=200)  # -> str

The prompt is run through the model once; its state is then carried from token to
token (never recomputed from the prompt), and the step is compiled. Option names
and defaults follow mlx-lm's ``generate`` where they overlap (``temp=0`` is argmax).
An empty prompt starts from the start token. Characters or words outside the
vocabulary encode to ``<unk>``.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import mlx.core as mx

from mlxseq.checkpoint import load_with_tokenizer
from mlxseq.decoding.beams import beam_search
from mlxseq.decoding.search import generate_steps
from mlxseq.decoding.sampling import make_repetition_penalty, make_sampler

BUNDLED_MODEL = Path(__file__).parents[1] / "bundled" / "shakespeare-char"


# Bounds that keep a mistyped option from allocating without limit.
MAX_TOKENS = 1_000_000
MAX_SAMPLES = 1000
# Prompt tokens run through the model per call: a long prompt's graph and logits
# (B, chunk, V) stay this size however long the prompt is.
PROMPT_CHUNK = 512


@dataclass
class GenerationOptions:
    max_tokens: int = 100  # tokens generated per sample
    temp: float = 0.0  # sampling temperature; 0 is argmax
    top_k: int = 0  # keep the k most likely tokens; 0 disables
    top_p: float = 1.0  # nucleus sampling threshold in (0, 1]; 1 disables
    min_p: float = 0.0  # drop tokens below min_p * the top probability; 0 disables
    repetition_penalty: float | None = None  # > 1 discourages repeating recent tokens
    repetition_context_size: int = 20
    seed: int | None = None  # the same seed gives the same text
    num_samples: int = 1  # samples generated in one batch
    stop: tuple = field(default_factory=tuple)  # strings that end generation (not included)
    beam_size: int = 1  # > 1: beam search (deterministic) instead of sampling
    length_penalty: float = 0.0

    def __post_init__(self):
        if not 0 <= self.max_tokens <= MAX_TOKENS:
            raise ValueError(f"max_tokens must be in [0, {MAX_TOKENS}], got {self.max_tokens}")
        if not 0 <= self.temp < math.inf:
            raise ValueError(f"temp must be a finite number >= 0, got {self.temp}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 1 <= self.num_samples <= MAX_SAMPLES:
            raise ValueError(f"num_samples must be in [1, {MAX_SAMPLES}], got {self.num_samples}")
        if not 1 <= self.beam_size <= MAX_SAMPLES:
            raise ValueError(f"beam_size must be in [1, {MAX_SAMPLES}], got {self.beam_size}")
        if self.seed is not None and not 0 <= self.seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {self.seed}")
        self.stop = tuple(self.stop)
        # Built here so that every bad sampling argument fails before any work.
        self.sampler = make_sampler(self.temp, 0.0 if self.top_p == 1.0 else self.top_p, self.min_p, top_k=self.top_k)
        if self.repetition_penalty is not None:
            make_repetition_penalty(self.repetition_penalty, self.repetition_context_size)


class Generator:
    """A language model with its tokenizer."""

    def __init__(self, model, tokenizer, folder=None):
        self.model = model
        self.tokenizer = tokenizer
        self.folder = folder
        self._step = mx.compile(model.step)  # weights are constants of the graph: inference only

    @classmethod
    def load(cls, path_or_repo=None, *, revision: str | None = None) -> "Generator":
        """Load a language-model folder (default: the model bundled with mlxseq)."""
        from mlxseq.data import load_tokenizer

        model, tokenizer, folder = load_with_tokenizer(
            path_or_repo, "lm", load_tokenizer, bundled=BUNDLED_MODEL, job="generation", revision=revision
        )
        return cls(model, tokenizer, folder)

    # --- the StepModel the decoders drive -----------------------------------------

    def init_state(self, batch_size):
        return self.model.init_state(batch_size)

    def step(self, tokens, state):
        return self._step(tokens, state)

    # --- generation ---------------------------------------------------------------

    def _start(self, prompt: str, batch: int):
        """State after all prompt tokens but the last, and that last token."""
        ids = self.tokenizer.encode(prompt) if prompt else []
        ids = [self.model.args.bos_id] + ids if not ids else ids
        state = self.model.init_state(batch)
        context = ids[:-1]
        for start in range(0, len(context), PROMPT_CHUNK):
            _, state = self.model(mx.array([context[start : start + PROMPT_CHUNK]] * batch, dtype=mx.int32), state)
            mx.eval(state)
        return ids, state

    def generate_ids(self, prompt: str, options: GenerationOptions) -> Iterator[mx.array]:
        """Yield the next token of every sample, (num_samples,), step by step."""
        if options.max_tokens == 0:
            return
        ids, state = self._start(prompt, options.num_samples)
        processors = []
        if options.repetition_penalty is not None:
            penalty = make_repetition_penalty(options.repetition_penalty, options.repetition_context_size)
            prompt_ids = mx.array([ids] * options.num_samples, dtype=mx.int32)
            processors.append(lambda seen, logits: penalty(mx.concatenate([prompt_ids, seen], axis=1), logits))
        key = mx.random.key(options.seed) if options.seed is not None else None
        eos = self.tokenizer.eos_id
        steps = generate_steps(
            self,
            state,
            bos_id=ids[-1],
            eos_id=eos,
            max_tokens=options.max_tokens,
            sampler=options.sampler,
            logits_processors=processors,
            banned_ids=[self.tokenizer.pad_id, self.model.args.bos_id],
            key=key,
            batch_size=options.num_samples,
        )
        for step in steps:
            yield mx.where(step.active, step.tokens, -1)

    def stream(self, prompt: str, options: GenerationOptions | None = None, sample: int = 0) -> Iterator[str]:
        """Yield the text of one sample piece by piece as it is generated."""
        options = options or GenerationOptions()
        produced, emitted = [], ""
        for tokens in self.generate_ids(prompt, options):
            token = int(tokens[sample].item())
            if token < 0 or token == self.tokenizer.eos_id:
                break
            produced.append(token)
            text = self.tokenizer.decode(produced)
            cut = _stop_position(text, options.stop)
            if cut is not None:
                if cut > len(emitted):
                    yield text[len(emitted) : cut]
                return
            # Hold back a tail that could still become a stop string.
            safe = len(text) - _longest_stop_prefix(text, options.stop)
            if safe > len(emitted):
                yield text[len(emitted) : safe]
                emitted = text[:safe]
        text = self.tokenizer.decode(produced)
        if len(text) > len(emitted):
            yield text[len(emitted) :]

    def generate(self, prompt: str, options: GenerationOptions | None = None) -> list[str]:
        """The continuation of ``prompt`` for each of ``num_samples`` samples."""
        options = options or GenerationOptions()
        if options.beam_size > 1:
            return self._beam(prompt, options)
        rows = [[] for _ in range(options.num_samples)]
        for tokens in self.generate_ids(prompt, options):
            for row, token in zip(rows, tokens.tolist()):
                if token >= 0 and token != self.tokenizer.eos_id:
                    row.append(token)
        return [_cut_at_stop(self.tokenizer.decode(row), options.stop) for row in rows]

    def predict(self, prompt: str, options: GenerationOptions | None = None) -> str:
        """The continuation of ``prompt`` (the first sample; the pipelines' common interface)."""
        return self.generate(prompt, options)[0]

    def evaluate(self, text: str, chunk: int = PROMPT_CHUNK) -> dict:
        """Nats per token of ``text`` under the model (state carried across chunks), and perplexity."""
        ids = self.tokenizer.encode(text)
        if len(ids) < 2:
            raise ValueError("evaluation needs a text of at least two tokens")
        tokens, total, state = mx.array([ids]), 0.0, None
        for start in range(0, len(ids) - 1, chunk):
            x, y = tokens[:, start : start + chunk], tokens[:, start + 1 : start + chunk + 1]
            logits, state = self.model(x[:, : y.shape[1]], state)
            logits = logits.astype(mx.float32)
            log_probs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            total -= mx.take_along_axis(log_probs, y[..., None], axis=-1).sum().item()
        loss = total / (len(ids) - 1)
        return {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "tokens": len(ids) - 1}

    def _beam(self, prompt, options):
        ids, state = self._start(prompt, 1)
        found = beam_search(
            self,
            state,
            bos_id=ids[-1],
            eos_id=self.tokenizer.eos_id,
            beam_size=options.beam_size,
            max_tokens=options.max_tokens,
            length_penalty=options.length_penalty,
            n_best=min(options.num_samples, options.beam_size),
            banned_ids=[self.tokenizer.pad_id, self.model.args.bos_id],
        )[0]
        return [_cut_at_stop(self.tokenizer.decode(h.tokens), options.stop) for h in found]


def _stop_position(text, stops):
    positions = [text.find(s) for s in stops if s and s in text]
    return min(positions) if positions else None


def _cut_at_stop(text, stops):
    cut = _stop_position(text, stops)
    return text if cut is None else text[:cut]


def _longest_stop_prefix(text, stops):
    """Length of the longest end of ``text`` that begins some stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if stop.startswith(text[-n:]):
                longest = max(longest, n)
                break
    return longest


def generate(prompt: str = "", model=None, **options) -> str | list[str]:
    """Continue ``prompt`` with a language-model folder, Hub repo id or the bundled model.

    Keyword options are :class:`GenerationOptions` fields. Returns the text, or a list
    when ``num_samples > 1``.
    """
    generator = model if isinstance(model, Generator) else Generator.load(model)
    opts = GenerationOptions(**options)
    texts = generator.generate(prompt, opts)
    return texts if opts.num_samples > 1 else texts[0]
