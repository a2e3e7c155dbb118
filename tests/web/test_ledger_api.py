"""The public ledger endpoints, in exactly the formats of channel-api.md."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine
from starlette.testclient import TestClient

from portal import ledger, merkle
from portal.config import Settings
from portal.ratings import record
from tests.factories import make_world, rating_in


def _sign_some(engine: Engine, settings: Settings, n: int) -> list[str]:
    world = make_world(engine)
    ids = [record(engine, rating_in(world)).id for _ in range(n)]
    key = ledger.load_key(settings.ledger_key_path, settings.ledger_origin)
    ledger.checkpoint(engine, key)
    return ids


def test_checkpoint_key_and_proof_verify_without_our_code(
    client: TestClient, engine: Engine, app_settings: Settings
) -> None:
    rid = _sign_some(engine, app_settings, 3)[1]
    key = client.get("/api/v1/checkpoints/key").json()
    assert key["algorithm"] == "ed25519"
    cp = client.get("/api/v1/checkpoints/latest").json()
    assert set(cp) == {
        "origin",
        "tree_size",
        "root_hash",
        "timestamp",
        "note",
        "signature",
        "key_id",
    }
    assert (
        cp["note"] == f"{cp['origin']}\n{cp['tree_size']}\n"
        f"{base64.b64encode(bytes.fromhex(cp['root_hash'])).decode()}\n"
    )
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
    public.verify(base64.b64decode(cp["signature"]), cp["note"].encode())
    assert cp["key_id"] == key["key_id"]
    assert client.get(f"/api/v1/checkpoints/{cp['tree_size']}").json() == cp

    proof = client.get(f"/api/v1/ratings/{rid}/proof").json()
    assert proof["id"] == rid and proof["checkpoint"] == cp
    merkle.verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        proof["leaf_index"],
        proof["tree_size"],
        [bytes.fromhex(p) for p in proof["proof"]],
        bytes.fromhex(cp["root_hash"]),
    )


def test_consistency_endpoint(client: TestClient, engine: Engine, app_settings: Settings) -> None:
    _sign_some(engine, app_settings, 1)
    first = client.get("/api/v1/checkpoints/latest").json()
    _sign_some(engine, app_settings, 4)
    second = client.get("/api/v1/checkpoints/latest").json()
    body = client.get(
        f"/api/v1/checkpoints/consistency?from={first['tree_size']}&to={second['tree_size']}"
    ).json()
    merkle.verify_consistency(
        first["tree_size"],
        second["tree_size"],
        [bytes.fromhex(p) for p in body["proof"]],
        bytes.fromhex(first["root_hash"]),
        bytes.fromhex(second["root_hash"]),
    )


def test_unsequenced_and_unknown_ratings(client: TestClient, engine: Engine) -> None:
    rid = record(engine, rating_in(make_world(engine))).id
    pending = client.get(f"/api/v1/ratings/{rid}/proof")
    assert pending.status_code == 404
    assert pending.json()["error"]["code"] == "not_yet_sequenced"
    unknown = client.get(f"/api/v1/ratings/{hashlib.md5(b'x').hexdigest()}/proof")  # noqa: S324
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def test_bad_consistency_parameters(client: TestClient) -> None:
    for query in (
        "from=a&to=2",
        "from=0&to=1",
        "from=%C2%B2&to=2",
        "from=5&to=2",
        "to=2",
        "from=1&to=999999999",
    ):
        r = client.get(f"/api/v1/checkpoints/consistency?{query}")
        assert r.status_code == 400, query
        assert set(r.json()["error"]) == {"code", "message", "field"}
