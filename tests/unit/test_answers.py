"""Reading answers: final results for agreement, and the features the verifier weighs."""

from __future__ import annotations

import pytest

from rung.classifiers.answers import FEATURES, equations, read


def feature(text: str, name: str, prompt: str = "") -> float:
    return read(text, prompt).features[FEATURES.index(name)]


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ('{"reasoning": "8 * 5 = 40, 40 + 24 = 64", "answer": "64"}', "64"),
        ('```json\n{"reasoning": "…", "answer": "$1,200"}\n```', "1200"),
        ('{"reasoning": "…", "answer": "18 dollars"}', "18"),
        ('{"reasoning": "…", "answer": "\\\\frac{3}{4}"}', "\\\\frac{3}{4}"),
        ("We refer to Wikipedia. The answer is (C).", "C"),
        ("First (A) looks right, but the answer is (B)", "B"),
        ("So the total is 42.", "42"),
        ("I do not know.", None),
    ],
)
def test_the_final_result_is_read_the_way_the_answer_gives_it(text: str, result: str | None):
    assert read(text).result == result


def test_every_answer_gets_every_feature():
    for text in ("", "x", '{"answer": "1"}', "The answer is (A)", "```py\nprint(1)\n```"):
        features = read(text, "What is 1?", "stop").features
        assert len(features) == len(FEATURES)
        assert all(isinstance(v, float) for v in features)


def test_json_answers_that_change_their_mind_are_flagged():
    once = '{"reasoning": "3 + 4 = 7", "answer": "7"}'
    twice = once + '\nWait, that is wrong.\n{"reasoning": "3 + 5 = 8", "answer": "8"}'
    assert feature(once, "json_answers_differ") == 0.0
    assert feature(twice, "json_answers_differ") == 1.0
    assert feature(twice, "corrections") >= 1.0
    assert read(twice).result == "7"  # the first answer is the one graded


def test_arithmetic_is_checked_where_it_can_be():
    assert equations("8 * $5 = $40 and 40 + 24 = 64") == (2, 0)
    assert equations("3 x 4 = 13, then 10 / 4 = 2.5, 2 + 3 * 4 = 14") == (3, 1)
    assert equations("the ratio 3:4 = 0.75 and 5% = 0.05") == (0, 0)


def test_the_prompts_numbers_used_in_the_reasoning():
    prompt = "Ann has 3 apples and buys 5 more for 2 dollars each."
    used = '{"reasoning": "3 + 5 = 8 apples", "answer": "8"}'
    assert feature(used, "prompt_numbers_used", prompt) == pytest.approx(2 / 3)
    assert feature(used, "prompt_numbers_missing", prompt) == 1.0
    assert feature(used, "number_is_last", prompt) == 1.0


def test_a_truncated_answer_and_a_multiple_choice_one():
    assert read("The answer", "", "length").features[FEATURES.index("truncated")] == 1.0
    mmlu = "(A) is wrong. (B) is wrong. The answer is (C). Indeed, the answer is (C)."
    assert feature(mmlu, "choice_found") == 1.0
    assert feature(mmlu, "choice_letters") == 1.0
    assert feature(mmlu, "choice_repeats") == 2.0


MC_PROMPT = (
    "A loan of $1,000 at 5% simple interest for 3 years earns how much?\n\n"
    "Options:\nA. $150\nB. $157.63\nC. $50\nD. compound interest only"
)


def test_a_multiple_choice_answer_is_read_against_the_options_it_chose_from():
    supported = "Interest = 1000 * 0.05 * 3 = 150. The answer is (A)."
    picked_other = "Interest = 1000 * 0.05 * 3 = 150. The answer is (B)."
    assert feature(supported, "choice_numeric", MC_PROMPT) == 1.0
    assert feature(supported, "choice_number_in_reasoning", MC_PROMPT) == 1.0
    assert feature(supported, "choice_nearest_last_number", MC_PROMPT) == 1.0
    # the reasoning computed 150 but picked 157.63: neither computed nor nearest
    assert feature(picked_other, "choice_number_in_reasoning", MC_PROMPT) == 0.0
    assert feature(picked_other, "choice_nearest_last_number", MC_PROMPT) == 0.0


def test_an_option_named_in_the_reasoning_counts_only_for_the_option_picked():
    named = "Only compound interest only applies here. The answer is (D)."
    other = "It is not compound interest only, so the answer is (C)."
    assert feature(named, "choice_text_in_answer", MC_PROMPT) == 1.0
    assert feature(named, "choice_numeric", MC_PROMPT) == 0.0
    assert feature(other, "choice_text_in_answer", MC_PROMPT) == 0.0
    assert feature(other, "other_options_in_answer", MC_PROMPT) == 1.0


def test_choice_features_are_zero_without_options_or_a_choice():
    for text, prompt in (("The answer is (A).", "What is 2 + 2?"), ("It is 150.", MC_PROMPT)):
        for name in ("choice_text_in_answer", "choice_numeric", "choice_nearest_last_number"):
            assert feature(text, name, prompt) == 0.0
