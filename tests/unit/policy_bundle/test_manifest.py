"""policy_bundle.manifest: name, revision, description, settings; every problem with its line."""

from __future__ import annotations

import pytest

from meshwarden.policy_bundle.errors import BundleInvalid
from meshwarden.policy_bundle.manifest import parse_manifest


def problems(text: str) -> list[str]:
    with pytest.raises(BundleInvalid) as info:
        parse_manifest(text)
    return [str(p) for p in info.value.problems]


def test_a_full_manifest_parses() -> None:
    manifest = parse_manifest(
        'name = "demo"\nrevision = 7\ndescription = "d"\n[settings]\nstore_raw_arguments = true\n'
    )
    assert (manifest.name, manifest.revision, manifest.description) == ("demo", 7, "d")
    assert manifest.settings.store_raw_arguments is True
    assert manifest.label == "bundle demo rev 7"


def test_settings_default_to_not_storing_arguments() -> None:
    assert parse_manifest('name = "demo"\nrevision = 1\n').settings.store_raw_arguments is False


@pytest.mark.parametrize("revision", ["0", "-3", '"3"', "true", "1.5", str(2**63)])
def test_revision_must_be_a_positive_integer(revision: str) -> None:
    found = problems(f'name = "demo"\nrevision = {revision}\n')
    assert len(found) == 1 and found[0].startswith("manifest.toml:2: revision must be a positive integer")


def test_name_is_checked_and_missing_keys_point_at_line_1() -> None:
    assert problems("revision = 1\n") == [
        "manifest.toml:1: name must be a string of 1-63 characters of a-z, 0-9, '.', '_' and '-', "
        "starting with a letter or digit, got None"
    ]
    assert problems('name = "Demo Bundle"\nrevision = 1\n')[0].startswith("manifest.toml:1: name must be")


def test_allow_when_empty_is_refused_with_the_reason() -> None:
    found = problems('name = "demo"\nrevision = 1\n\n[settings]\nallow_when_empty = true\n')
    assert found == [
        "manifest.toml:5: settings.allow_when_empty is not a bundle setting: meshwarden always denies what no "
        "policy permits; write a permit policy for what should be allowed"
    ]
    assert (
        "allow_when_empty is not a bundle setting"
        in problems('name = "demo"\nrevision = 1\nallow_when_empty = false\n')[0]
    )


def test_unknown_keys_and_wrong_types_are_all_reported() -> None:
    found = problems('name = "demo"\nrevison = 2\n[settings]\nstore_raw_arguments = "yes"\nverbose = 1\n')
    assert found == [
        "manifest.toml:2: unknown key revison; known keys: description, name, revision, settings",
        "manifest.toml:1: revision must be a positive integer below 2^63 that grows with every release, got None",
        "manifest.toml:5: unknown key settings.verbose; known keys: settings.approvers_see_arguments, "
        "settings.store_raw_arguments",
        "manifest.toml:4: settings.store_raw_arguments must be true or false, got 'yes'",
    ]


def test_toml_syntax_errors_carry_their_line() -> None:
    found = problems('name = "demo"\nrevision = 1\n[settings]\n[settings]\n')
    assert len(found) == 1 and found[0].startswith("manifest.toml:4: not valid TOML")
