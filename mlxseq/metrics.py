"""Translation quality with sacrebleu: BLEU and chrF with their signatures."""

from dataclasses import dataclass


@dataclass
class TranslationScores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str

    def lines(self) -> list[str]:
        return [f"BLEU {self.bleu:.2f}  {self.bleu_signature}", f"chrF {self.chrf:.2f}  {self.chrf_signature}"]


def score_translations(hypotheses: list[str], references: list[str], *, tokenize: str = "13a", lowercase: bool = False) -> TranslationScores:
    """Corpus BLEU and chrF of detokenized hypotheses against one reference each."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu = BLEU(tokenize=tokenize, lowercase=lowercase)
    chrf = CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return TranslationScores(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()))
