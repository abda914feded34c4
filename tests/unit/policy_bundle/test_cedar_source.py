"""policy_bundle.cedar_source: statements with their lines, and the line of a Cedar error."""

from __future__ import annotations

import cedarpy
import pytest

from meshwarden.policy_bundle.cedar_source import culprit_line, locate_error, split_statements


def test_statements_keep_their_first_line_and_skip_comments() -> None:
    text = '// header; with a semicolon\n\n@id("a")\npermit (principal, action, resource);  permit (principal, action, resource);\n// tail\n'
    found = split_statements(text)
    assert [(s.line, s.terminated) for s in found] == [(3, True), (4, True)]
    assert found[0].text.startswith('@id("a")') and found[1].text.startswith("permit")


def test_strings_with_semicolons_quotes_and_comment_markers_stay_whole() -> None:
    text = '@reason("a; \\"b\\" // c") permit (principal, action, resource) when { "x;y" == "x;y" };\n'
    assert [s.text for s in split_statements(text)] == [text.strip()]


def test_an_unterminated_statement_is_kept_and_marked() -> None:
    found = split_statements("permit (principal, action, resource);\n\nforbid (principal,\n")
    assert [(s.line, s.terminated) for s in found] == [(1, True), (3, False)]


def _line(text: str, first_line: int = 1) -> int:
    with pytest.raises(ValueError) as info:
        cedarpy.PolicySet.from_str(text)
    return locate_error(text, first_line, str(info.value), cedarpy.PolicySet.from_str)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("permit (principal, action, resource)\nwhen {\n  principal.x > \n};", 4),
        ("permit (principal, action, resource)\nwhen {\n  principal.x === 3\n};", 3),
        ("permit (principal, action, resource)\nwhen {\n  true &&\n  foo(1)\n};", 4),
        ('permit (principal, action, resource)\nwhen {\n  "\\q" == "x"\n};', 3),
        ("permitt (principal, action, resource);", 1),
        ("permit (principal, action, resource)\nwhen { true }\n", 2),
    ],
)
def test_errors_are_located_on_their_line(text: str, line: int) -> None:
    assert _line(text) == line
    assert _line(text, first_line=10) == line + 9


def test_validation_messages_point_at_the_culprit_inside_the_policy() -> None:
    text = "permit (principal, action, resource)\nwhen {\n  principal.tier > 1 &&\n  resource.colour == 1\n};"
    assert culprit_line(text, 20, "attribute `colour` on entity type `Capability` not found") == 23
    assert culprit_line(text, 20, "something without quotes") == 20
