import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deployments.http.template_routes import template_router
from pipelines.common.errors import InvalidInputError
from pipelines.video.motion_templates import (
    compose_prompt,
    get_motion_template,
    motion_categories,
    parse_motion_library,
)

CATEGORY_IDS = [
    "fashion_beauty_facial",
    "portrait_subtle",
    "portrait_dynamic",
    "animals",
    "landscape_nature",
    "animation_cartoon",
    "product_object",
    "abstract_artistic",
]
# Clients store these ids; if one disappears, a saved request breaks.
STABLE_IDS = [
    "fashion_beauty_facial.hair_breeze",
    "portrait_subtle.soft_smile",
    "portrait_dynamic.wave_hello",
    "animals.head_tilt",
    "landscape_nature.waterfall",
    "animation_cartoon.power_up",
    "product_object.turntable_360",
    "abstract_artistic.ink_flow",
]
LIMB_WORDS = re.compile(r"\b(hand|hands|arm|arms|finger|fingers|gesture|gestures|gesturing|wave|waves|waving)\b", re.I)


def all_templates():
    return [template for category in motion_categories() for template in category.prompts]


def test_categories_are_the_eight_in_order():
    assert [category.id for category in motion_categories()] == CATEGORY_IDS
    for category in motion_categories():
        assert category.name.strip() and category.when_to_use.strip()


def test_prompt_counts():
    assert len(all_templates()) >= 64
    for category in motion_categories():
        assert len(category.prompts) >= 6, category.id


def test_ids_unique_prefixed_and_stable():
    ids = [template.id for template in all_templates()]
    assert len(ids) == len(set(ids))
    for category in motion_categories():
        assert all(template.id.startswith(f"{category.id}.") for template in category.prompts)
    for template_id in STABLE_IDS:
        assert get_motion_template(template_id).id == template_id


def test_prompts_are_distinct_printable_motion_chains():
    prompts = [template.prompt for template in all_templates()]
    assert len({prompt.lower() for prompt in prompts}) == len(prompts)
    for prompt in prompts:
        assert prompt == prompt.strip() and re.fullmatch(r"[ -~]+", prompt), prompt
        assert 12 <= len(prompt.split()) <= 45, prompt
        clauses = [clause.strip() for clause in prompt.split(",")]
        assert len(clauses) >= 3 and all(clauses), prompt


def test_facial_only_prompts_never_mention_limbs():
    facial = next(category for category in motion_categories() if category.id == "fashion_beauty_facial")
    for template in facial.prompts:
        assert not LIMB_WORDS.search(template.prompt), template.id
    # The regex itself must catch what it guards against, or the loop above proves nothing.
    assert LIMB_WORDS.search(get_motion_template("portrait_dynamic.wave_hello").prompt)


@pytest.mark.parametrize("bad_id", ["portrait_subtle.nope", "", "PORTRAIT_SUBTLE.SOFT_SMILE", "soft_smile"])
def test_unknown_id_is_invalid_input(bad_id):
    with pytest.raises(InvalidInputError) as info:
        get_motion_template(bad_id)
    assert info.value.field == "template_id"
    assert "GET /v1/templates/motion" in info.value.message


def test_unknown_id_suggests_a_close_match():
    with pytest.raises(InvalidInputError, match="portrait_subtle.soft_smile"):
        get_motion_template("portrait_subtle.soft_smil")


def test_compose_prompt():
    template = get_motion_template("animals.slow_blink").prompt
    assert compose_prompt("animals.slow_blink", None) == template
    assert compose_prompt("animals.slow_blink", "   ") == template
    assert compose_prompt("animals.slow_blink", " a ginger cat ") == f"{template}, a ginger cat"
    assert compose_prompt(None, " the boat drifts ") == "the boat drifts"
    assert compose_prompt("", "the boat drifts") == "the boat drifts"
    assert compose_prompt(None, None) == ""
    with pytest.raises(InvalidInputError):
        compose_prompt("animals.unicorn", "anything")


def _one_category(**overrides):
    category = {
        "id": "animals",
        "name": "Animals",
        "when_to_use": "Pets.",
        "prompts": [{"id": "animals.a", "prompt": "static shot, the dog blinks, soft light"}],
    }
    return {"categories": [category | overrides]}


def test_parse_accepts_minimal_data():
    assert parse_motion_library(_one_category()).categories[0].prompts[0].id == "animals.a"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (_one_category(colour="red"), "colour"),
        (_one_category(prompts=[{"id": "landscape_nature.a", "prompt": "x, y, z"}]), "must start with"),
        (_one_category(prompts=[{"id": "animals.a", "prompt": "caf\u00e9, y, z"}]), "prompt"),
        (
            _one_category(prompts=[{"id": "animals.a", "prompt": "x, y, z"}, {"id": "animals.a", "prompt": "p, q, r"}]),
            "duplicate template id",
        ),
        (
            _one_category(prompts=[{"id": "animals.a", "prompt": "x, y, z"}, {"id": "animals.b", "prompt": "x, y, z"}]),
            "duplicate prompt",
        ),
        ({"categories": []}, "categories"),
        (None, "invalid motion template data"),
    ],
)
def test_parse_rejects_bad_data_with_clear_errors(data, needle):
    with pytest.raises(ValueError, match=needle):
        parse_motion_library(data)


def test_route_lists_the_library():
    app = FastAPI()
    app.include_router(template_router())
    response = TestClient(app).get("/v1/templates/motion")
    assert response.status_code == 200
    categories = response.json()["categories"]
    assert [category["id"] for category in categories] == CATEGORY_IDS
    for category in categories:
        assert set(category) == {"id", "name", "when_to_use", "prompts"}
        assert all(set(prompt) == {"id", "prompt"} for prompt in category["prompts"])
    total = sum(len(category["prompts"]) for category in categories)
    assert total == len(all_templates())
