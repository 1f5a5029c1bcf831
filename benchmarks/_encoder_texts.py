"""Synthetic texts for the encoder benchmark: seeded sentences over a fixed word list, sized in tokenizer tokens."""

from __future__ import annotations

import random
from typing import Any

# Fixed vocabulary for the synthetic texts: common English plus some technical words, so the byte-level BPE
# produces a realistic mix of one- and multi-token words. Punctuation is added by the sentence builder
# (commas / periods exercise the document skiplist).
WORDS = """
the of and to in is that for it as was with be by on not he this are or his from at which but have an had they
you were their one all we can her has there been if more when will would who so no she other its may these two
first any time only new some could them into than about then made over did most after also years system model
data retrieval document query token vector index search ranking score language learning neural network
training evaluation embedding attention layer encoder transformer dense sparse late interaction similarity
maximum benchmark corpus passage collection relevance precision recall average memory compute latency
throughput batch sequence window global local position rotary normalisation projection dimension research
paper method results table figure section experiment baseline dataset annotation label question answer article
report review study analysis evidence claim support contradict medical clinical patient protein cell gene
expression disease treatment effect increase decrease level response signal pathway river mountain city
village market harbour bridge garden forest winter summer morning evening history ancient modern century
government policy economy energy climate water carbon emission transport railway library museum theatre music
painting novel poetry science physics chemistry biology mathematics theorem proof function equation number
value variable parameter estimate distribution probability sample error engineer designer student teacher
doctor farmer writer traveller company product customer service price quickly slowly carefully rarely often
always never perhaps certainly together between within without against during before because although however
therefore meanwhile moreover otherwise instead whereas large small early late high low long short strong weak
bright dark simple complex accurate robust stable efficient expensive cheap heavy light warm cold open closed
public private common unusual important
""".split()  # noqa: SIM905 - a word list reads best as text


def _sentence(rng: random.Random) -> str:
    n = rng.randint(6, 16)
    words = [rng.choice(WORDS) for _ in range(n)]
    if rng.random() < 0.3:
        words[rng.randint(1, n - 2)] += ","
    if rng.random() < 0.1:
        words[rng.randint(0, n - 1)] = str(rng.randint(2, 2024))
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice([".", ".", ".", "?", ";"])


def make_text(rng: random.Random, tokenizer: Any, raw_tokens: int) -> str:
    """A text of at least ``raw_tokens`` tokenizer tokens (specials included), built sentence by sentence.

    Sentence token counts are estimated one sentence at a time (byte-level BPE: words carry their leading
    space, so counts are additive to within a token or two per sentence), then the total is checked.
    """
    parts: list[str] = []
    est = 2  # [CLS] ... [SEP]
    while True:
        while est < raw_tokens + 8:
            s = _sentence(rng)
            parts.append(s)
            est += len(tokenizer(" " + s, add_special_tokens=False)["input_ids"])
        text = " ".join(parts)
        if len(tokenizer(text)["input_ids"]) >= raw_tokens:
            return text
        est = raw_tokens  # add a few more sentences
