"""Session labels: one set of rules at every edge, each refusal naming what is wrong."""

from __future__ import annotations

import pytest

from meshwarden import client, model_clients, session_labels
from meshwarden.session_labels import InvalidLabels


def test_labels_come_back_in_one_order_and_through_the_header() -> None:
    labels = {"resource": "db-prod", "repository": "acme/api"}
    assert session_labels.checked(labels) == (("repository", "acme/api"), ("resource", "db-prod"))
    header = session_labels.to_header(labels)
    assert header == "repository=acme/api,resource=db-prod"
    assert session_labels.from_header(" repository = acme/api , resource=db-prod,") == session_labels.checked(labels)
    assert session_labels.from_header("") == ()


@pytest.mark.parametrize(
    ("labels", "label", "words"),
    [
        ({f"k{n}": "v" for n in range(9)}, "", "9 labels; at most 8"),
        ({"Repo": "x"}, "Repo", "not a label key"),
        ({"a" * 33: "x"}, "a" * 33, "not a label key"),
        ({"repo": ""}, "repo", "value of 0 characters"),
        ({"repo": "x" * 129}, "repo", "value of 129 characters"),
        ({"repo": "a\nb"}, "repo", "control character"),
    ],
)
def test_each_broken_rule_is_named(labels: dict[str, str], label: str, words: str) -> None:
    with pytest.raises(InvalidLabels) as info:
        session_labels.checked(labels)
    assert info.value.label == label and words in info.value.message


@pytest.mark.parametrize(
    ("header", "words"),
    [("repository", "is not key=value"), ("a=1,a=2", "given twice"), ("BAD=1", "not a label key")],
)
def test_a_bad_header_is_named(header: str, words: str) -> None:
    with pytest.raises(InvalidLabels, match=words):
        session_labels.from_header(header)


def test_the_sdk_refuses_bad_labels_before_sending_and_sends_good_ones() -> None:
    with pytest.raises(InvalidLabels, match="control character"):
        client.request("a.b", {}, session_labels={"repo": "x\ty"})
    sent = client.request("a.b", {}, session_labels={"repository": "acme/api"})
    assert dict(sent.session_labels) == {"repository": "acme/api"}
    headers = model_clients.attribution("s-1", labels={"resource": "db-prod"})
    assert headers[session_labels.HEADER] == "resource=db-prod"
    with pytest.raises(InvalidLabels, match="','"):
        model_clients.attribution("s-1", labels={"resource": "a,b"})
