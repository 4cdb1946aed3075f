"""`invispose keys create|list|revoke`, and the admin key made on first start.

The commands work on the store database named by the config (``store.path``), with or
without the system running: a running gateway sees a new or revoked key within
``auth.recheck_s`` seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from invispose.errors import InvisPoseError
from invispose.output import print_json
from invispose.security import ADMIN_ALL, KEY_ID, SCOPES, TIERS, key_digest, new_api_key
from invispose.store import Store


def first_admin_key(store_path: Path) -> str | None:
    """On a store that never had a key, create an ``admin:all`` key and return it (to be
    shown once); None when keys exist already."""
    with Store(store_path) as store:
        if store.keys_count():
            return None
        record, key = new_api_key("admin (created on first start)", [ADMIN_ALL])
        store.key_add(record, key_digest(key))
        return key


def _store(args: argparse.Namespace) -> Store:
    from invispose.config import DEFAULT_CONFIG, load_config, resolve_paths

    site = resolve_paths(load_config(args.config or DEFAULT_CONFIG))
    return Store(site.store.path)


def _scopes(text: str) -> list[str]:
    scopes = [s for s in text.replace(",", " ").split() if s]
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise InvisPoseError(
            f"--scopes takes scopes separated by commas or spaces ({', '.join(SCOPES)}); "
            f"got {text!r}"
        )
    return scopes


def _create(args: argparse.Namespace) -> int:
    try:
        record, key = new_api_key(args.name, _scopes(args.scopes), args.tier)
    except ValueError as exc:
        raise InvisPoseError(str(exc)) from exc
    with _store(args) as store:
        store.key_add(record, key_digest(key))
    if args.quiet:
        print(key)
    else:
        print_json({**record.public(), "key": key}, indent=2)
        print("the key is shown only now; keep it somewhere safe", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        keys: list[dict[str, Any]] = [k.public() for k in store.keys()]
    if args.json:
        print_json(keys, indent=None)
        return 0
    for key in keys:
        state = "active" if key["active"] else f"revoked {key['revoked_at']}"
        print(f"{key['id']}  {key['name']}  [{' '.join(key['scopes'])}]  {key['tier']}  "
              f"created {key['created_at']}  last used {key['last_used_at'] or 'never'}  "
              f"{state}")
    if not keys:
        print("no API keys", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    if not KEY_ID.fullmatch(args.key_id):
        raise InvisPoseError(f"{args.key_id!r} is not a key id (12 hex digits, see keys list)")
    with _store(args) as store:
        if not store.key_revoke(args.key_id, time.time()):
            raise InvisPoseError(f"no active API key {args.key_id}")
    print(f"revoked {args.key_id}")
    return 0


def register(sub: Any) -> None:
    """Add `invispose keys` to the command parser."""
    keys = sub.add_parser("keys", help="API keys (kept hashed in the store)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=None,
                        help="site config whose store keeps the keys (default: the demo's)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once",
                                 parents=[common])
    create.add_argument("--scopes", required=True,
                        help=f"comma- or space-separated: {', '.join(SCOPES)}")
    create.add_argument("--name", default="created with invispose keys",
                        help="what the key is for")
    create.add_argument("--tier", default="authenticated", choices=TIERS,
                        help="rate-limit tier")
    create.add_argument("--quiet", action="store_true", help="print only the key")
    create.set_defaults(func=_create)
    listing = keys_sub.add_parser("list", help="every key (never the secrets)",
                                  parents=[common])
    listing.add_argument("--json", action="store_true", help="one JSON document")
    listing.set_defaults(func=_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id", parents=[common])
    revoke.add_argument("key_id")
    revoke.set_defaults(func=_revoke)
