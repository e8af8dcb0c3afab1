"""The scene template library: its contents, lookups, negative prompts and the listing route."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pipelines.background.scene_templates import (
    BASE_NEGATIVE_PROMPT,
    CATEGORIES,
    SceneTemplate,
    get_scene_template,
    negative_prompt_for,
    scene_templates,
)
from pipelines.common.errors import InvalidInputError

PEOPLE_WORDS = re.compile(r"\b(person|persons|people|man|men|woman|women|human|humans|crowd|crowds)\b", re.I)


def test_library_has_24_templates_in_five_categories() -> None:
    templates = scene_templates()
    assert len(templates) == 24
    assert CATEGORIES == ("professional", "nature", "urban", "artistic", "seasonal")
    counts = Counter(t.category for t in templates)
    assert [counts[c] for c in CATEGORIES] == [5, 6, 5, 4, 4]


def test_templates_are_grouped_in_category_order() -> None:
    order = [CATEGORIES.index(t.category) for t in scene_templates()]
    assert order == sorted(order)


def test_ids_are_unique_snake_case_and_include_known_ones() -> None:
    ids = [t.id for t in scene_templates()]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", i) for i in ids)
    for known in ("white_studio", "beach_sunset", "cosy_cafe", "neon_night_street", "soft_gradient", "winter_snow"):
        assert get_scene_template(known).id == known


def test_guidance_within_range() -> None:
    assert all(6.5 <= t.guidance_scale <= 8.0 for t in scene_templates())


def test_prompts_nonempty_unique_and_sized() -> None:
    prompts = [t.prompt for t in scene_templates()]
    assert len({p.lower() for p in prompts}) == len(prompts)
    for t in scene_templates():
        assert 20 <= len(t.prompt.split()) <= 60, t.id
        assert t.name and t.negative_prompt, t.id


def test_prompts_do_not_ask_for_people() -> None:
    for t in scene_templates():
        assert not PEOPLE_WORDS.search(t.prompt), (t.id, PEOPLE_WORDS.search(t.prompt))


def test_unknown_id_raises_invalid_input_pointing_at_listing() -> None:
    with pytest.raises(InvalidInputError) as info:
        get_scene_template("moon_base")
    assert info.value.field == "scene_id"
    assert "/v1/templates/scenes" in info.value.message


def test_template_rejects_unknown_keys_and_out_of_range_guidance() -> None:
    good = {"id": "x_y", "name": "X", "category": "urban", "prompt": "p", "negative_prompt": "", "guidance_scale": 7}
    SceneTemplate(**good)
    with pytest.raises(ValueError):
        SceneTemplate(**good, extra="nope")
    with pytest.raises(ValueError):
        SceneTemplate(**{**good, "guidance_scale": 9.0})


def test_negative_prompt_for_combines_without_duplicates() -> None:
    template = get_scene_template("white_studio").model_copy(
        update={"negative_prompt": "Watermark, clutter,  text , clutter, shadows on wall"}
    )
    terms = [t.strip().lower() for t in negative_prompt_for(template).split(",")]
    assert len(terms) == len(set(terms))
    base = [t.strip().lower() for t in BASE_NEGATIVE_PROMPT.split(",")]
    assert terms[: len(base)] == base
    assert terms[len(base) :] == ["clutter", "shadows on wall"]


def test_negative_prompt_for_every_template_keeps_base_and_own_terms() -> None:
    for t in scene_templates():
        combined = negative_prompt_for(t)
        assert combined.startswith(BASE_NEGATIVE_PROMPT)
        assert all(term.strip() in combined for term in t.negative_prompt.split(","))


def test_route_lists_all_templates() -> None:
    from deployments.http.scene_routes import scene_template_router

    app = FastAPI()
    app.include_router(scene_template_router())
    response = TestClient(app).get("/v1/templates/scenes")
    assert response.status_code == 200
    body = response.json()
    assert body["categories"] == list(CATEGORIES)
    assert len(body["templates"]) == 24
    keys = {"id", "name", "category", "prompt", "negative_prompt", "guidance_scale"}
    assert all(set(t) == keys for t in body["templates"])
    assert body["templates"][0]["id"] == scene_templates()[0].id
