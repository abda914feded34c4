"""The errors policy bundles raise, branched by what the person or process holding the bundle
can do about them:

    BundleError                  every bundle problem; the message names the bundle (name, rev)
      BundleInvalid              the source is wrong: fix the files, rebuild (one problem per
                                 file:line, see `problems`)
      BundleUnreadable           the artifact is not a meshwarden bundle at all (truncated,
                                 not JSON, another format version): fetch or build it again
      BundleNotTrusted           do not use this bundle: the signature checks failed
        SignatureCountWrong      none, or more than one (exactly one is accepted)
        UnknownKeyId             signed with a key this verifier does not trust
        SignatureInvalid         the signature does not verify over the signed digests
        DigestMismatch           a file differs from the digest the signature covers
      RevisionNotNewer           a signed bundle older than (or as old as) the one in use:
                                 a rollback, refused
      AlreadySigned              sign takes the unsigned output of build, once
      KeyFileError               a key file is missing, unreadable or of the wrong kind

A sidecar that catches any BundleError keeps its last good policy active (docs/STYLE.md §6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """One thing wrong in a bundle's source, where a person can find it."""

    file: str  # relative to the bundle directory: "policies/refunds.cedar"
    line: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def bundle_label(name: str, revision: int | None) -> str:
    """How messages name a bundle: "bundle demo rev 3" (or less, when less is known)."""
    if not name:
        return "bundle"
    return f"bundle {name}" if revision is None else f"bundle {name} rev {revision}"


class BundleError(Exception):
    def __init__(self, message: str, *, bundle: str = "") -> None:
        super().__init__(f"{bundle}: {message}" if bundle else message)
        self.bundle = bundle


class BundleInvalid(BundleError):
    """The bundle's source breaks a rule; `problems` lists each one with its file and line."""

    def __init__(self, problems: Sequence[SourceProblem], *, bundle: str = "") -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        summary = f"{count} problem{'s' if count != 1 else ''}; fix them and build again"
        lines = "\n".join(str(p) for p in self.problems)
        super().__init__(f"{summary}:\n{lines}" if lines else summary, bundle=bundle)


class BundleUnreadable(BundleError):
    pass


class BundleNotTrusted(BundleError):
    pass


class SignatureCountWrong(BundleNotTrusted):
    def __init__(self, count: int, *, bundle: str = "") -> None:
        super().__init__(
            f"carries {count} signatures; exactly one is accepted "
            "(sign the unsigned output of `meshwarden bundle build` once)",
            bundle=bundle,
        )
        self.count = count


class UnknownKeyId(BundleNotTrusted):
    def __init__(self, key_id: str, trusted: Sequence[str], *, bundle: str = "") -> None:
        known = ", ".join(sorted(trusted)) or "none"
        super().__init__(
            f"signed with key id {key_id!r}, which is not trusted here (trusted: {known}); "
            "add its public key to the trusted keys, or sign with a trusted key",
            bundle=bundle,
        )
        self.key_id = key_id


class SignatureInvalid(BundleNotTrusted):
    pass


class DigestMismatch(BundleNotTrusted):
    def __init__(self, file: str, expected: str, actual: str, *, bundle: str = "") -> None:
        super().__init__(
            f"{file} does not match its signed digest: expected {expected}, actual {actual}; "
            "the file changed after signing: do not use this bundle, fetch it again or rebuild and sign it",
            bundle=bundle,
        )
        self.file, self.expected, self.actual = file, expected, actual


class RevisionNotNewer(BundleError):
    def __init__(self, revision: int, active: int, *, bundle: str = "") -> None:
        super().__init__(
            f"revision {revision} is not newer than the active revision {active}; "
            "revisions only increase: raise `revision` in manifest.toml, rebuild and sign",
            bundle=bundle,
        )
        self.revision, self.active = revision, active


class AlreadySigned(BundleError):
    def __init__(self, key_id: str, *, bundle: str = "") -> None:
        super().__init__(
            f"is already signed (key id {key_id!r}); a bundle carries exactly one signature: "
            "sign the unsigned output of `meshwarden bundle build`",
            bundle=bundle,
        )


class KeyFileError(BundleError):
    pass
