"""registry.console.render: every template escapes what it is given."""

from __future__ import annotations

from meshwarden.registry.console.render import environment, pretty_json

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(1)>\"'"


def test_templates_escape_by_default_whatever_their_name() -> None:
    env = environment()
    assert env.from_string("{{ v }}").render(v=HOSTILE) == (
        "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&#34;&#39;"
    )
    rendered = env.get_template("problem.html").render(
        problem=HOSTILE, login=None, notices=[HOSTILE], views=(), path="/x", live_every_ms=1
    )
    assert "<script>alert" not in rendered and "<img src=x" not in rendered
    assert rendered.count("&lt;script&gt;alert(1)") == 2


def test_arguments_are_indented_when_json_and_kept_when_not() -> None:
    assert pretty_json('{"b": 1, "a": "<x>"}') == '{\n  "a": "<x>",\n  "b": 1\n}'
    assert pretty_json(b"not json <x>") == "not json <x>"
