"""Plan validation: exact field paths and messages, the empty plan, and the content hash."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from masking import MaskPlan, PlanError, parse_plan, plan_hash

CAL = [
    {"image": [0.1, 0.9], "ground": [0.0, 0.0]},
    {"image": [0.9, 0.9], "ground": [12.0, 0.0]},
    {"image": [0.7, 0.5], "ground": [12.0, 10.0]},
    {"image": [0.3, 0.5], "ground": [0.0, 10.0]},
]
STRIP = {"type": "facade_strip", "action": "keep", "facade": [[0, 0], [12, 0]], "width_m": 2}
GOTHENBURG = {
    "version": 1,
    "method": "blur",
    "default": "anonymise",
    "calibration": CAL,
    "zones": [STRIP],
}


def errors_of(data: Any) -> list[dict[str, str]]:
    with pytest.raises(PlanError) as info:
        parse_plan(data)
    assert isinstance(info.value, ValueError)
    return info.value.errors


def crossed() -> list[dict[str, Any]]:
    cal = copy.deepcopy(CAL)
    cal[2]["image"], cal[3]["image"] = cal[3]["image"], cal[2]["image"]
    return cal


BAD_PLANS: list[tuple[str, Any, list[dict[str, str]]]] = [
    (
        "bad method",
        {"method": "smudge"},
        [{"field": "method", "msg": "Input should be 'blur', 'pixelate' or 'fill'"}],
    ),
    ("bad version", {"version": 2}, [{"field": "version", "msg": "Input should be 1"}]),
    (
        "bad default",
        {"default": "hide"},
        [{"field": "default", "msg": "Input should be 'keep' or 'anonymise'"}],
    ),
    (
        "three calibration points",
        {"calibration": CAL[:3]},
        [{"field": "calibration", "msg": "needs at least 4 points, got 3"}],
    ),
    (
        "all image points on a line",
        {"calibration": [{"image": [0.1 * i + 0.1, 0.5], "ground": [i, i * i]} for i in range(4)]},
        [{"field": "calibration", "msg": "degenerate: the image points lie on one line"}],
    ),
    (
        "three of four ground points on a line",
        {
            "calibration": [
                {"image": [0.1, 0.9], "ground": [0, 0]},
                {"image": [0.9, 0.9], "ground": [6, 0]},
                {"image": [0.7, 0.5], "ground": [12, 0]},
                {"image": [0.3, 0.5], "ground": [0, 10]},
            ]
        },
        [{"field": "calibration", "msg": "degenerate: ground points 0, 1 and 2 lie on one line"}],
    ),
    (
        "repeated point",
        {"calibration": [*CAL[:3], CAL[0]]},
        [{"field": "calibration.3.image", "msg": "repeats point 0"}],
    ),
    (
        "image and ground in different orders",
        {"calibration": crossed()},
        [
            {
                "field": "calibration",
                "msg": "inconsistent: the points cannot all be in front of one camera "
                "(check that image and ground points are in the same order)",
            }
        ],
    ),
    (
        "one wrong point among six",
        {
            "calibration": [
                *CAL,
                {"image": [0.5, 0.9], "ground": [6, 0]},
                {"image": [0.5, 0.7], "ground": [30, 3]},
            ]
        },
        [
            {
                "field": "calibration.5",
                "msg": "does not fit the others (off by 1.231 of the frame); check this point",
            }
        ],
    ),
    (
        "unknown fields",
        {
            "colour": "red",
            "zones": [
                {
                    "type": "polygon",
                    "action": "keep",
                    "points": [[0, 0], [1, 0], [1, 1]],
                    "alpha": 1,
                }
            ],
        },
        [
            {"field": "zones.0.alpha", "msg": "unknown field"},
            {"field": "colour", "msg": "unknown field"},
        ],
    ),
    (
        "points outside 0..1",
        {"zones": [{"type": "polygon", "action": "keep", "points": [[0, 0], [1.2, 0], [1, -0.1]]}]},
        [
            {"field": "zones.0.points.1.0", "msg": "Input should be less than or equal to 1"},
            {"field": "zones.0.points.2.1", "msg": "Input should be greater than or equal to 0"},
        ],
    ),
    (
        "polygon with two points",
        {"zones": [{"type": "polygon", "action": "keep", "points": [[0, 0], [1, 0]]}]},
        [
            {
                "field": "zones.0.points",
                "msg": "List should have at least 3 items after validation, not 2",
            }
        ],
    ),
    (
        "unknown zone type",
        {"zones": [{"type": "circle"}]},
        [
            {
                "field": "zones.0",
                "msg": "Input tag 'circle' found using 'type' does not match any of the "
                "expected tags: 'polygon', 'facade_strip'",
            }
        ],
    ),
    (
        "facade strip without calibration",
        {"zones": [STRIP]},
        [{"field": "zones.0", "msg": "facade_strip needs 'calibration'"}],
    ),
    (
        "zero width",
        {"calibration": CAL, "zones": [{**STRIP, "width_m": 0}]},
        [{"field": "zones.0.width_m", "msg": "Input should be greater than 0"}],
    ),
    (
        "facade with a zero-length segment",
        {"calibration": CAL, "zones": [{**STRIP, "facade": [[0, 0], [0, 0], [5, 0]]}]},
        [{"field": "zones.0.facade", "msg": "consecutive facade points must differ"}],
    ),
    (
        "open side cannot be told",
        {"calibration": CAL, "zones": [{**STRIP, "facade": [[0, 5], [12, 5]]}]},
        [
            {
                "field": "zones.0.side",
                "msg": "cannot tell the open side from the calibration points; "
                "set side to 'left' or 'right'",
            }
        ],
    ),
    (
        "strength with fill",
        {"method": "fill", "strength": 10},
        [{"field": "strength", "msg": "is not used with method 'fill'"}],
    ),
    (
        "strength out of range",
        {"method": "pixelate", "strength": 1000},
        [{"field": "strength", "msg": "must be between 4 and 256 for method 'pixelate'"}],
    ),
    (
        "unknown detect class",
        {"detect": {"classes": ["face", "dog"]}},
        [{"field": "detect.classes.1", "msg": "Input should be 'face', 'person' or 'plate'"}],
    ),
    (
        "bad detect area",
        {"detect": {"classes": ["face"], "in": "nowhere"}},
        [{"field": "detect.in", "msg": "Input should be 'kept_area' or 'everywhere'"}],
    ),
    (
        "model path escaping the models folder",
        {"detect": {"classes": ["face"], "models": {"face": "../../etc/passwd"}}},
        [
            {
                "field": "detect.models.face",
                "msg": "String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]*$'",
            }
        ],
    ),
    (
        "not JSON",
        "{bad",
        [
            {
                "field": "",
                "msg": "not valid JSON: Expecting property name enclosed in double quotes: "
                "line 1 column 2 (char 1)",
            }
        ],
    ),
    ("not an object", "[1, 2]", [{"field": "", "msg": "a plan must be a JSON object"}]),
]


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in BAD_PLANS], ids=[n for n, _, _ in BAD_PLANS]
)
def test_bad_plans_name_the_field(data: Any, expected: list[dict[str, str]]) -> None:
    assert errors_of(data) == expected


def test_several_errors_are_reported_together() -> None:
    errs = errors_of({"method": "smudge", "default": "hide", "zones": [STRIP], "strength": 0})
    assert [e["field"] for e in errs] == ["method", "default"]
    # Cross-field checks run once the fields themselves are valid.
    errs = errors_of({"method": "fill", "strength": 5, "zones": [STRIP]})
    assert errs == [
        {"field": "strength", "msg": "is not used with method 'fill'"},
        {"field": "zones.0", "msg": "facade_strip needs 'calibration'"},
    ]
    assert str(PlanError(errs)).startswith("strength: is not used")


def test_gothenburg_plan_parses_with_defaults() -> None:
    plan = parse_plan(json.dumps(GOTHENBURG))
    assert plan.default == "anonymise"
    assert plan.zones[0].type == "facade_strip"
    assert plan.zones[0].side == "auto"
    assert plan.effective_strength() == 48
    full = parse_plan(
        {**GOTHENBURG, "detect": {"classes": ["face", "person", "plate"], "in": "everywhere"}}
    )
    assert full.detect is not None
    assert full.detect.in_ == "everywhere"
    assert full.detect.hold_frames == 5
    assert full.detect.models.face == "face_detection_yunet_2023mar.onnx"


@pytest.mark.parametrize("empty", [None, {}, "{}", "null", {"version": 1}, MaskPlan()])
def test_empty_plan_means_no_masking(empty: Any) -> None:
    plan = parse_plan(empty)
    assert plan == MaskPlan()
    assert plan.is_noop
    assert plan_hash(empty) == plan_hash(None)


def test_plan_hash_is_stable_across_key_order_and_defaults() -> None:
    reordered = json.loads(json.dumps(GOTHENBURG, sort_keys=True))
    reordered = dict(reversed(list(reordered.items())))
    assert plan_hash(GOTHENBURG) == plan_hash(reordered)
    assert plan_hash(GOTHENBURG) == plan_hash({**GOTHENBURG, "zones": [{**STRIP, "side": "auto"}]})
    # Integers and floats of the same value are the same plan.
    assert plan_hash({**GOTHENBURG, "zones": [{**STRIP, "width_m": 2.0}]}) == plan_hash(GOTHENBURG)
    assert plan_hash({**GOTHENBURG, "zones": [{**STRIP, "width_m": 2.5}]}) != plan_hash(GOTHENBURG)
    assert plan_hash({**GOTHENBURG, "method": "fill"}) != plan_hash(GOTHENBURG)
    digest = plan_hash(GOTHENBURG)
    assert len(digest) == 64
    assert int(digest, 16) >= 0


def test_plan_hash_of_an_invalid_plan_raises() -> None:
    with pytest.raises(PlanError):
        plan_hash({"method": "smudge"})
