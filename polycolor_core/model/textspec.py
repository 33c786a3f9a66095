"""What a model records about its text encoder (``TextEncoderSpec``) and the encoder names: no torch here.

Split from ``text.py`` (which needs torch) so ``modelinfo`` can describe a model folder without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

CLIP_HUB_ID = "openai/clip-vit-base-patch32"
DEFAULT_TEXT_ENCODER = "minilm-l6"
TEXT_ENCODER_NAMES = ("clip-vit-b32", "minilm-l6", "test-tiny-random")
DEFAULT_SEQ_LEN = 8  # colour names are 1-4 tokens; 8 leaves room for BOS/EOS and multi-word CSS names


@dataclass(frozen=True)
class TextEncoderSpec:
    """What a checkpoint records about its encoder: enough to rebuild the same embeddings."""

    name: str  # one of TEXT_ENCODER_NAMES
    source: str = ""  # hub id or local folder for clip-vit-b32; "" otherwise
    dim: int = 0
    seq_len: int = DEFAULT_SEQ_LEN

    @property
    def spec_string(self) -> str:
        return f"{self.name}:{self.source}" if self.source and self.source != CLIP_HUB_ID else self.name


PROMPT_TEMPLATES = {"bare": "{}", "sentence": "a polygon filled with {}"}  # the two measured (issue 16)


def check_template(template: str) -> str:
    """A prompt template is text with exactly one ``{}`` where the colour name goes ("{}" = the bare name)."""
    template = PROMPT_TEMPLATES.get(template, template)
    if not isinstance(template, str) or template.count("{}") != 1 or template.replace("{}", "").count("{") \
            or template.replace("{}", "").count("}"):
        raise ValueError(f"prompt template {template!r} must hold exactly one {{}} for the colour name and no other "
                         "braces, e.g. 'a polygon filled with {}' (or bare / sentence)")
    return template


def prompt_text(name, template: str = "{}") -> str:
    """What the text encoder reads for a colour name: the name lower-cased and stripped, in ``template``."""
    return template.format(str(name).strip().lower())
