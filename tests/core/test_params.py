"""Request options: validation that costs nothing, and the payloads sent to the API."""

from __future__ import annotations

import random

import pytest

from core.config import ApiExtras, Watermark
from core.errors import InvalidInput
from core.params import (
    MAX_PROMPT_CHARS,
    SIDE_RANGE,
    SIZE_PRESETS,
    CharacterParams,
    DrawParams,
    check_reference,
    clean_prompt,
    size_for,
    with_seed,
)

MIB = 1024 * 1024


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t ", None])
def test_empty_prompt_is_refused(prompt: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        clean_prompt(prompt)
    assert caught.value.key == "error.prompt_empty"


def test_prompt_over_the_limit_is_refused_with_the_limit() -> None:
    assert clean_prompt("x" * MAX_PROMPT_CHARS) == "x" * MAX_PROMPT_CHARS
    with pytest.raises(InvalidInput) as caught:
        clean_prompt("x" * (MAX_PROMPT_CHARS + 1))
    assert caught.value.key == "error.prompt_too_long"
    assert caught.value.params == {"limit": MAX_PROMPT_CHARS, "length": MAX_PROMPT_CHARS + 1}


def test_prompt_is_trimmed() -> None:
    assert clean_prompt("  a cat  ") == "a cat"


def test_size_presets_cover_the_ratios_inside_the_api_range() -> None:
    assert set(SIZE_PRESETS) == {"1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3"}
    for ratio, (width, height) in SIZE_PRESETS.items():
        assert SIDE_RANGE[0] <= width <= SIDE_RANGE[1] and SIDE_RANGE[0] <= height <= SIDE_RANGE[1]
        a, b = (int(part) for part in ratio.split(":"))
        assert abs(width / height - a / b) < 0.01
    assert size_for(None) == (768, 768)
    with pytest.raises(InvalidInput):
        size_for("5:4")


@pytest.mark.parametrize(
    ("content_type", "width", "height", "size", "key"),
    [
        ("text/plain", None, None, 100, "error.reference_not_image"),
        ("image/png", None, None, 100, "error.reference_not_image"),
        (None, 64, 64, 100, "error.reference_not_image"),
        ("image/gif", 64, 64, 100, "error.reference_not_image"),
        ("image/png", 64, 64, 10 * MIB + 1, "error.reference_too_large"),
    ],
)
def test_bad_references_are_refused(content_type, width, height, size, key) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_reference(content_type=content_type, width=width, height=height, size=size, max_bytes=10 * MIB)
    assert caught.value.key == key


def test_good_reference_passes() -> None:
    check_reference(content_type="image/jpeg; charset=binary", width=10, height=10, size=10 * MIB, max_bytes=10 * MIB)


def test_random_seed_is_chosen_so_it_can_be_shown() -> None:
    params = with_seed(DrawParams(prompt="p"), random.Random(1))
    assert 0 <= params.seed < 2**31
    assert with_seed(DrawParams(prompt="p", seed=42)).seed == 42


def test_draw_payload_has_every_field_and_the_configured_extras() -> None:
    extras = ApiExtras(
        watermark=Watermark(enabled=True, text="ours", position=3, language=1, opacity=0.5),
        llm_seed=7,
        sr_strength=0.4,
        sr_steps=20,
    )
    params = DrawParams(prompt="a cat", width=768, height=432, style="aesthetic", seed=5, upscale=True)
    assert params.payload(extras) == {
        "prompt": "a cat",
        "model_version": "general_v2.1_L",
        "req_schedule_conf": "general_v20_9B_pe",
        "llm_seed": 7,
        "seed": 5,
        "scale": 3.5,
        "ddim_steps": 25,
        "width": 768,
        "height": 432,
        "use_pre_llm": True,
        "use_sr": True,
        "sr_strength": 0.4,
        "sr_steps": 20,
        "return_url": True,
        "logo_info": {
            "add_logo": True,
            "position": 3,
            "language": 1,
            "opacity": 0.5,
            "logo_text_content": "ours",
        },
    }


def test_draw_payload_leaves_out_super_resolution_when_not_upscaling() -> None:
    payload = DrawParams(prompt="p").payload(ApiExtras(sr_steps=20))
    assert payload["use_sr"] is False
    assert "sr_steps" not in payload and "req_schedule_conf" not in payload


def test_character_payload() -> None:
    params = CharacterParams(prompt="p", reference_url="https://cdn/ref.png", seed=3)
    payload = params.payload(ApiExtras())
    assert "cfg_rescale" not in payload
    assert params.payload(ApiExtras(cfg_rescale=0.7))["cfg_rescale"] == 0.7
    assert payload["image_urls"] == ["https://cdn/ref.png"]
    assert (payload["ref_ip_weight"], payload["ref_id_weight"], payload["ddim_steps"]) == (0.7, 0.36, 9)
    assert payload["logo_info"]["add_logo"] is False
