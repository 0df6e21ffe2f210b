"""What a user may ask for, with the documented ranges, and the payloads sent to 302.ai."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any, Literal, get_args

from core.config import ApiExtras, Watermark
from core.errors import InvalidInput

MAX_PROMPT_CHARS = 800
SEED_MAX = 2**31 - 1
SCALE_RANGE = (1.0, 10.0)
STEPS_RANGE = (1, 50)  # the API takes up to 200; above 50 is slow and no better
STRENGTH_RANGE = (0.0, 1.0)
SIDE_RANGE = (256, 768)
REFERENCE_TYPES = ("image/png", "image/jpeg", "image/webp")


class Command(StrEnum):
    DRAW = "draw"
    CHARACTER = "character"


# Aspect ratio presets; every side is inside the API's 256..768 and a multiple of 16.
SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "1:1": (768, 768),
    "4:3": (768, 576),
    "3:4": (576, 768),
    "16:9": (768, 432),
    "9:16": (432, 768),
    "3:2": (768, 512),
    "2:3": (512, 768),
}
DEFAULT_SIZE = "1:1"

# The model versions and rendering styles offered; as Literal types, the command options get them as choices.
Model = Literal["general_v2.1_L", "general_v2.0_L", "general_v2.0"]
MODELS: tuple[Model, ...] = get_args(Model)
DEFAULT_MODEL: Model = "general_v2.1_L"
Style = Literal["standard", "aesthetic"]
STYLES: dict[Style, str] = {"standard": "general_v20_9B_rephraser", "aesthetic": "general_v20_9B_pe"}


@dataclass(frozen=True)
class DrawParams:
    prompt: str
    width: int = 768
    height: int = 768
    model_version: Model = DEFAULT_MODEL
    style: Style | None = None  # None: the API's default rendering
    seed: int = -1
    scale: float = 3.5
    steps: int = 25
    upscale: bool = False
    rewrite_prompt: bool = True
    watermark: Watermark | None = None  # the server's; None: the bot's configured one

    def payload(self, extras: ApiExtras) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": self.prompt,
            "model_version": self.model_version,
            "seed": self.seed,
            "scale": self.scale,
            "ddim_steps": self.steps,
            "width": self.width,
            "height": self.height,
            "use_pre_llm": self.rewrite_prompt,
            "use_sr": self.upscale,
            "return_url": True,
            "logo_info": _logo_info(self.watermark or extras.watermark),
        }
        if self.style is not None:
            body["req_schedule_conf"] = STYLES[self.style]
        if extras.llm_seed is not None:
            body["llm_seed"] = extras.llm_seed
        if self.upscale:
            body.update(_super_resolution(extras))
        return body


@dataclass(frozen=True)
class CharacterParams:
    prompt: str
    reference_url: str
    width: int = 768
    height: int = 768
    subject_strength: float = 0.7
    face_strength: float = 0.36
    seed: int = -1
    scale: float = 3.5
    steps: int = 9
    upscale: bool = False
    watermark: Watermark | None = None  # the server's; None: the bot's configured one

    def payload(self, extras: ApiExtras) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": self.prompt,
            "image_urls": [self.reference_url],
            "seed": self.seed,
            "scale": self.scale,
            "ddim_steps": self.steps,
            "width": self.width,
            "height": self.height,
            "ref_ip_weight": self.subject_strength,
            "ref_id_weight": self.face_strength,
            "use_sr": self.upscale,
            "return_url": True,
            "logo_info": _logo_info(self.watermark or extras.watermark),
        }
        if extras.cfg_rescale is not None:
            body["cfg_rescale"] = extras.cfg_rescale
        return body


Params = DrawParams | CharacterParams
PARAMS_FOR: dict[Command, type[DrawParams] | type[CharacterParams]] = {
    Command.DRAW: DrawParams,
    Command.CHARACTER: CharacterParams,
}


def params_to_dict(params: Params) -> dict[str, Any]:
    return asdict(params)


def params_from_dict(command: Command, values: dict[str, Any]) -> Params:
    values = dict(values)
    if values.get("watermark") is not None:
        values["watermark"] = Watermark(**values["watermark"])
    return PARAMS_FOR[command](**values)


def scale_to_fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Shrinks a size so that no side exceeds `max_side`, keeping the ratio as far as the API's range allows."""
    if max(width, height) <= max_side:
        return width, height
    factor = max_side / max(width, height)

    def side(value: int) -> int:
        return max(SIDE_RANGE[0], min(SIDE_RANGE[1], int(value * factor) // 16 * 16))

    return side(width), side(height)


def with_seed(params: Params, rng: random.Random | None = None) -> Params:
    """Picks a seed when the user left it random, so the seed shown is the seed used."""
    if params.seed >= 0:
        return params
    return replace(params, seed=(rng or random).randint(0, SEED_MAX))


def clean_prompt(text: str | None) -> str:
    """Normalises a prompt and refuses an empty or over-long one."""
    cleaned = unicodedata.normalize("NFC", text or "").strip()
    if not cleaned:
        raise InvalidInput("error.prompt_empty")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise InvalidInput("error.prompt_too_long", limit=MAX_PROMPT_CHARS, length=len(cleaned))
    return cleaned


def size_for(preset: str | None) -> tuple[int, int]:
    try:
        return SIZE_PRESETS[preset or DEFAULT_SIZE]
    except KeyError:
        raise InvalidInput("error.bad_choice", option="size") from None


def check_range(option: str, value: float | None, low: float, high: float) -> None:
    """Checks again on our side what Discord's option constraints should already have refused."""
    if value is not None and not low <= value <= high:
        raise InvalidInput("error.out_of_range", option=option, low=low, high=high)


def check_choice(option: str, value: str | None, allowed: Collection[str]) -> None:
    if value is not None and value not in allowed:
        raise InvalidInput("error.bad_choice", option=option)


def check_reference(
    *, content_type: str | None, width: int | None, height: int | None, size: int, max_bytes: int
) -> None:
    """A reference must be an image Discord could measure, of a type the API reads, under the size cap."""
    base_type = (content_type or "").split(";")[0].strip().lower()
    if base_type not in REFERENCE_TYPES or not width or not height:
        raise InvalidInput("error.reference_not_image")
    if size > max_bytes:
        raise InvalidInput("error.reference_too_large", limit_mb=round(max_bytes / 1024 / 1024, 1))


def _logo_info(mark: Watermark) -> dict[str, Any]:
    info: dict[str, Any] = {
        "add_logo": mark.enabled,
        "position": mark.position,
        "language": mark.language,
        "opacity": mark.opacity,
    }
    if mark.text:
        info["logo_text_content"] = mark.text
    return info


def _super_resolution(extras: ApiExtras) -> dict[str, Any]:
    fields = {
        "sr_seed": extras.sr_seed,
        "sr_strength": extras.sr_strength,
        "sr_scale": extras.sr_scale,
        "sr_steps": extras.sr_steps,
    }
    return {name: value for name, value in fields.items() if value is not None}
