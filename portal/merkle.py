"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and verification (pure, no I/O).

Leaves passed to `root`, the frontier functions and the proof generators are leaf
hashes (see `leaf_hash`). Verifiers follow RFC 9162 section 2.1 with the edge-case
semantics of the transparency-dev/merkle Go verifier, and raise `ProofError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ProofError",
    "consistency_proof",
    "frontier_append",
    "frontier_extend",
    "frontier_root",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
_sha256 = hashlib.sha256
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A Merkle proof, hash or size failed verification."""


def leaf_hash(data: bytes) -> bytes:
    """Return SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


# --- compact ranges ("frontiers") -------------------------------------------------------


def _push(frontier: list[bytes], size: int, leaf: bytes) -> None:
    """Append `leaf` to `frontier` (covering `size` leaves) in place."""
    node = leaf
    while size & 1:
        node = node_hash(frontier.pop(), node)
        size >>= 1
    frontier.append(node)


def _check_frontier(frontier: Sequence[bytes], size: int) -> None:
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if len(frontier) != size.bit_count():
        raise ValueError(
            f"frontier has {len(frontier)} hashes, size {size} needs {size.bit_count()}"
        )


def frontier_append(frontier: list[bytes], size: int, leaf: bytes) -> list[bytes]:
    """Return the frontier for `size + 1` leaves; `frontier` is not modified."""
    _check_frontier(frontier, size)
    new = list(frontier)
    _push(new, size, leaf)
    return new


def frontier_extend(frontier: list[bytes], size: int, leaves: Iterable[bytes]) -> list[bytes]:
    """Return the frontier after appending every leaf hash in `leaves`.

    Level by level rather than leaf by leaf: the new nodes of one level are hashed in
    pairs by one comprehension (a checkpoint of 100k leaves makes ~100k node hashes
    either way, but without a Python call and loop per leaf). At level h the old
    frontier's node, if the old size has bit h set, is the left neighbour of the first
    new node; an odd node left over at the end of a level is the new frontier's node
    for that level."""
    _check_frontier(frontier, size)
    old = dict(zip(_levels(size), frontier, strict=True))
    kept: dict[int, bytes] = {}
    nodes = list(leaves)
    level = 0
    while nodes or size >> level:
        if size >> level & 1:
            nodes.insert(0, old[level])
        if len(nodes) & 1:
            kept[level] = nodes.pop()
        pairs = zip(nodes[0::2], nodes[1::2], strict=True)
        nodes = [_sha256(b"\x01" + left + right).digest() for left, right in pairs]
        level += 1
    return [kept[h] for h in sorted(kept, reverse=True)]


def _levels(size: int) -> list[int]:
    """Heights of the frontier's subtrees for `size` leaves, highest (leftmost) first."""
    return [h for h in range(size.bit_length() - 1, -1, -1) if size >> h & 1]


def frontier_root(frontier: list[bytes]) -> bytes:
    """Return the Merkle tree hash of the tree covered by `frontier`."""
    if not frontier:
        return EMPTY_ROOT
    acc = frontier[-1]
    for node in reversed(frontier[:-1]):
        acc = node_hash(node, acc)
    return acc


# --- tree hashes and proof generation ---------------------------------------------------


def _subtree_root(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(leaves[start:end]) in O(end - start) hashes."""
    return frontier_root(frontier_extend([], 0, (leaves[i] for i in range(start, end))))


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash (MTH) of a sequence of leaf hashes."""
    return _subtree_root(leaves, 0, len(leaves))


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """Return PATH(index, leaves[:size]) (RFC 9162 2.1.3.1), leaf-most hash first."""
    if not 0 <= size <= len(leaves):
        raise ValueError(f"size {size} out of range [0, {len(leaves)}]")
    if not 0 <= index < size:
        raise ValueError(f"index {index} out of range [0, {size})")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            path.append(_subtree_root(leaves, start + k, end))
            end = start + k
        else:
            path.append(_subtree_root(leaves, start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(leaves: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """Return PROOF(size1, leaves[:size2]) (RFC 9162 2.1.4.1); empty if size1 is 0 or size2."""
    if not 0 <= size2 <= len(leaves):
        raise ValueError(f"size2 {size2} out of range [0, {len(leaves)}]")
    if not 0 <= size1 <= size2:
        raise ValueError(f"size1 {size1} out of range [0, {size2}]")
    if size1 == 0:
        return []
    path: list[bytes] = []
    start, end, whole = 0, size2, True
    while size1 - start < end - start:
        k = _split(end - start)
        if size1 - start <= k:
            path.append(_subtree_root(leaves, start + k, end))
            end = start + k
        else:
            path.append(_subtree_root(leaves, start, start + k))
            start, whole = start + k, False
    if not whole:
        path.append(_subtree_root(leaves, start, end))
    path.reverse()
    return path


# --- verification -----------------------------------------------------------------------


def _check_hash(what: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, got {size}")


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise ProofError(f"wrong proof length {len(proof)}, want {want}")
    for i, node in enumerate(proof):
        _check_hash(f"proof[{i}]", node)


def _expect_match(got: bytes, want: bytes, what: str) -> None:
    if got != want:
        raise ProofError(f"{what} mismatch: calculated {got.hex()}, expected {want.hex()}")


def _inclusion_len(index: int, size: int) -> int:
    """Number of hashes in PATH(index, D[size])."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check `leaf` is at `index` in the `size`-leaf tree with `root_hash` (RFC 9162 2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} out of range for tree size {size}")
    _check_hash("leaf hash", leaf)
    _check_hash("root hash", root_hash)
    _check_proof(proof, _inclusion_len(index, size))
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof has too many elements")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof has too few elements")
    _expect_match(r, root_hash, "root hash")


def _consistency_len(size1: int, size2: int) -> int:
    """Number of hashes in PROOF(size1, D[size2]) for 0 < size1 < size2."""
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    shift = (size1 & -size1).bit_length() - 1
    return inner - shift + border + (0 if size1 == 1 << shift else 1)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that tree (`size2`, `root2`) extends tree (`size1`, `root1`) (RFC 9162 2.1.4.2)."""
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    if not 0 <= size1 <= size2:
        raise ProofError(f"need 0 <= size1 <= size2, got size1={size1}, size2={size2}")
    if size1 == size2 or size1 == 0:
        if proof:
            raise ProofError(f"size1={size1}, size2={size2} requires an empty proof")
        if size1 == 0:
            _expect_match(bytes(root1), EMPTY_ROOT, "root1 (empty tree)")
        if size1 == size2:
            _expect_match(bytes(root1), bytes(root2), "root1/root2")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    _check_proof(proof, _consistency_len(size1, size2))
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fr, sr = _chain_consistency(size1, size2, path)
    _expect_match(fr, root1, "root1")
    _expect_match(sr, root2, "root2")


def _chain_consistency(size1: int, size2: int, path: list[bytes]) -> tuple[bytes, bytes]:
    """Steps 3-7 of RFC 9162 2.1.4.2: return the (first, second) roots the path implies."""
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = bytes(path[0])
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof has too many elements")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof has too few elements")
    return fr, sr
