"""Tests for portal.merkle: RFC 9162 trees, proofs, verifiers and transparency-dev vectors."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal.merkle import (
    ProofError,
    consistency_proof,
    frontier_append,
    frontier_extend,
    frontier_root,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "merkle"
LEAVES = [leaf_hash(f"leaf {i}".encode()) for i in range(128)]


# --- independent reference: the recursive definitions of RFC 9162 section 2.1 ----------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], complete: bool) -> list[bytes]:
    if m == len(d):
        return [] if complete else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return ref_subproof(m, d[:k], complete) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


# --- transparency-dev/merkle test vectors ------------------------------------------------


def _vector_files() -> list[Path]:
    if not VECTORS.is_dir():
        return []
    return sorted(p for p in VECTORS.rglob("*.json") if p.parts[-3] in ("inclusion", "consistency"))


def _vector_params() -> list[pytest.param]:
    files = _vector_files()
    if not files:
        return [pytest.param(None, id="testdata-missing")]
    return [pytest.param(p, id=p.relative_to(VECTORS).as_posix()) for p in files]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value, validate=True) if value else b""


def _run_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b64(h) for h in case.get("proof") or []]
    kind = path.relative_to(VECTORS).parts[0]
    if kind == "inclusion":
        leaf, root_hash = _b64(case.get("leafHash")), _b64(case.get("root"))
        verify_inclusion(leaf, case["leafIdx"], case["treeSize"], proof, root_hash)
    else:
        root1, root2 = _b64(case.get("root1")), _b64(case.get("root2"))
        verify_consistency(case["size1"], case["size2"], proof, root1, root2)


def _vectors_missing() -> None:
    """Fail in CI (CI=true), skip elsewhere."""
    message = f"Merkle test vectors not found at {VECTORS}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.parametrize("path", _vector_params())
def test_vector(path: Path | None) -> None:
    if path is None:
        _vectors_missing()
    if json.loads(path.read_text())["wantErr"]:
        with pytest.raises(ProofError):
            _run_vector(path)
    else:
        _run_vector(path)


def test_vectors_cover_both_kinds() -> None:
    files = _vector_files()
    if not files:
        _vectors_missing()
    kinds = {p.relative_to(VECTORS).parts[0] for p in files}
    assert kinds == {"inclusion", "consistency"}


# --- known answers -----------------------------------------------------------------------


def test_known_answer_three_leaves() -> None:
    data = [b"alpha", b"beta", b"gamma"]
    h = [hashlib.sha256(b"\x00" + d).digest() for d in data]
    h01 = hashlib.sha256(b"\x01" + h[0] + h[1]).digest()
    expected = hashlib.sha256(b"\x01" + h01 + h[2]).digest()
    leaves = [leaf_hash(d) for d in data]
    assert leaves == h
    assert node_hash(h[0], h[1]) == h01
    assert root(leaves) == expected
    assert frontier_root(frontier_extend([], 0, leaves)) == expected
    assert frontier_extend([], 0, leaves) == [h01, h[2]]
    assert inclusion_proof(leaves, 0, 3) == [h[1], h[2]]
    assert inclusion_proof(leaves, 2, 3) == [h01]
    assert consistency_proof(leaves, 1, 3) == [h[1], h[2]]
    assert consistency_proof(leaves, 2, 3) == [h[2]]


def test_empty_and_single_roots() -> None:
    assert root([]) == hashlib.sha256(b"").digest()
    assert frontier_root([]) == hashlib.sha256(b"").digest()
    assert root(LEAVES[:1]) == LEAVES[0]


@pytest.mark.parametrize("n", range(0, 101))
def test_root_matches_recursive_definition(n: int) -> None:
    assert root(LEAVES[:n]) == ref_mth(LEAVES[:n])


@pytest.mark.parametrize("size", range(1, 34))
def test_proofs_match_recursive_definition(size: int) -> None:
    d = LEAVES[:size]
    for i in range(size):
        assert inclusion_proof(LEAVES, i, size) == ref_path(i, d)
    for m in range(1, size + 1):
        assert consistency_proof(LEAVES, m, size) == ref_subproof(m, d, True)


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, 71))
def test_inclusion_round_trip(size: int) -> None:
    root_hash = root(LEAVES[:size])
    for index in range(size):
        proof = inclusion_proof(LEAVES, index, size)
        verify_inclusion(LEAVES[index], index, size, proof, root_hash)


@pytest.mark.parametrize("size2", range(1, 41))
def test_consistency_round_trip(size2: int) -> None:
    root2 = root(LEAVES[:size2])
    for size1 in range(1, size2 + 1):
        proof = consistency_proof(LEAVES, size1, size2)
        verify_consistency(size1, size2, proof, root(LEAVES[:size1]), root2)


def test_consistency_from_empty_tree() -> None:
    empty = root([])
    for size2 in range(0, 10):
        assert consistency_proof(LEAVES, 0, size2) == []
        verify_consistency(0, size2, [], empty, root(LEAVES[:size2]))


# --- tampering ---------------------------------------------------------------------------


def _flips(proof: list[bytes]) -> Iterator[list[bytes]]:
    """Yield copies of `proof` with one byte of one element inverted."""
    for i, node in enumerate(proof):
        for j in range(len(node)):
            bad = bytearray(node)
            bad[j] ^= 0xFF
            yield proof[:i] + [bytes(bad)] + proof[i + 1 :]


@pytest.mark.parametrize("size", range(1, 34))
def test_inclusion_tampering_rejected(size: int) -> None:
    root_hash = root(LEAVES[:size])
    for index in range(size):
        proof = inclusion_proof(LEAVES, index, size)
        for bad in _flips(proof):
            with pytest.raises(ProofError):
                verify_inclusion(LEAVES[index], index, size, bad, root_hash)
        for other in (index - 1, index + 1):
            with pytest.raises(ProofError):
                verify_inclusion(LEAVES[index], other, size, proof, root_hash)
        with pytest.raises(ProofError):
            verify_inclusion(LEAVES[index], index, size, [*proof, root_hash], root_hash)
        if proof:
            with pytest.raises(ProofError):
                verify_inclusion(LEAVES[index], index, size, proof[:-1], root_hash)


@pytest.mark.parametrize("size2", range(2, 25))
def test_consistency_tampering_rejected(size2: int) -> None:
    root2 = root(LEAVES[:size2])
    for size1 in range(1, size2):
        root1 = root(LEAVES[:size1])
        proof = consistency_proof(LEAVES, size1, size2)
        for bad in _flips(proof):
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, bad, root1, root2)
        # Neighbouring size1 must fail. (A neighbouring size2 can verify: proofs do not bind the
        # tree size by themselves, the (size, root) pair does, as in the Go verifier.)
        for s1 in (size1 - 1, size1 + 1):
            with pytest.raises(ProofError):
                verify_consistency(s1, size2, proof, root1, root2)
        for r1, r2 in ((root2, root1), (root1, root1), (root2, root2)):
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, proof, r1, r2)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof[:-1], root1, root2)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, [*proof, root2], root1, root2)


def test_verifier_edge_cases() -> None:
    r1, r3 = root(LEAVES[:1]), root(LEAVES[:3])
    good = consistency_proof(LEAVES, 1, 3)
    with pytest.raises(ProofError, match="size1"):
        verify_consistency(3, 1, good, r3, r1)
    verify_consistency(3, 3, [], r3, r3)
    with pytest.raises(ProofError):
        verify_consistency(3, 3, [r3], r3, r3)
    with pytest.raises(ProofError):
        verify_consistency(3, 3, [], r3, r1)
    with pytest.raises(ProofError):
        verify_consistency(0, 3, good, root([]), r3)
    with pytest.raises(ProofError):
        verify_consistency(0, 3, [], r1, r3)
    with pytest.raises(ProofError, match="32 bytes"):
        verify_consistency(1, 3, [good[0][:31], good[1]], r1, r3)
    with pytest.raises(ProofError, match="32 bytes"):
        verify_consistency(1, 3, good, r1 + b"\x00", r3)
    proof = inclusion_proof(LEAVES, 1, 3)
    verify_inclusion(LEAVES[1], 1, 3, proof, r3)
    with pytest.raises(ProofError, match="32 bytes"):
        verify_inclusion(LEAVES[1][:-1], 1, 3, proof, r3)
    with pytest.raises(ProofError, match="32 bytes"):
        verify_inclusion(LEAVES[1], 1, 3, [proof[0], b""], r3)
    with pytest.raises(ProofError, match="out of range"):
        verify_inclusion(LEAVES[1], 3, 3, proof, r3)
    with pytest.raises(ProofError, match="out of range"):
        verify_inclusion(LEAVES[1], -1, 3, proof, r3)
    with pytest.raises(ProofError):
        verify_inclusion(LEAVES[0], 0, 0, [], root([]))


def test_generators_reject_bad_ranges() -> None:
    leaves = LEAVES[:5]
    for index, size in ((5, 5), (-1, 5), (0, 0), (0, 6), (0, -1)):
        with pytest.raises(ValueError):
            inclusion_proof(leaves, index, size)
    for size1, size2 in ((3, 2), (-1, 2), (1, 6), (0, -1)):
        with pytest.raises(ValueError):
            consistency_proof(leaves, size1, size2)


def test_proof_error_is_value_error() -> None:
    assert issubclass(ProofError, ValueError)


# --- frontiers ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(0, 101))
def test_frontier_matches_root_and_chunking(n: int) -> None:
    whole = frontier_extend([], 0, LEAVES[:n])
    assert len(whole) == n.bit_count()
    assert frontier_root(whole) == root(LEAVES[:n])
    for j in range(n + 1):
        first = frontier_extend([], 0, LEAVES[:j])
        assert frontier_extend(first, j, iter(LEAVES[j:n])) == whole


def test_frontier_append_does_not_mutate() -> None:
    frontier: list[bytes] = []
    for size in range(40):
        before = list(frontier)
        new = frontier_append(frontier, size, LEAVES[size])
        assert frontier == before
        assert new is not frontier
        assert frontier_root(new) == root(LEAVES[: size + 1])
        frontier = new
    snapshot = list(frontier)
    frontier_extend(frontier, 40, LEAVES[40:50])
    assert frontier == snapshot


def test_frontier_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError):
        frontier_append([], 1, LEAVES[0])
    with pytest.raises(ValueError):
        frontier_extend([LEAVES[0]], 3, LEAVES[:1])
    with pytest.raises(ValueError):
        frontier_append([], -1, LEAVES[0])


def test_large_tree_is_fast_enough() -> None:
    size = 100_003
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size)]
    root_hash = root(leaves)
    for index in (0, 65_535, 65_536, size - 1):
        verify_inclusion(
            leaves[index], index, size, inclusion_proof(leaves, index, size), root_hash
        )
    verify_consistency(
        70_000, size, consistency_proof(leaves, 70_000, size), root(leaves[:70_000]), root_hash
    )


@pytest.mark.parametrize("start", [0, 1, 2, 3, 63, 64, 65, 511, 512, 513, 1000])
def test_frontier_extend_level_by_level_equals_leaf_by_leaf(start: int) -> None:
    """frontier_extend hashes a level at a time; append one leaf at a time must agree,
    from any starting size (the old frontier's nodes join the new ones at their level)."""
    leaves = [leaf_hash(f"x {i}".encode()) for i in range(start + 700)]
    frontier = frontier_extend([], 0, leaves[:start])
    one_by_one = list(frontier)
    for size in range(start, len(leaves)):
        one_by_one = frontier_append(one_by_one, size, leaves[size])
    assert frontier_extend(frontier, start, leaves[start:]) == one_by_one
    assert frontier_root(one_by_one) == root(leaves)
