"""Every Redis key the server uses, named in one place.

Keys of one upload share the ``{id}`` hash tag, so that scripts and transactions touching
several of them stay valid on Redis Cluster (one slot). Global keys are each a single key
touched by single-key commands (the expiry and finalizing indexes, the quota users, an
instance's liveness), or a family under one tag of their own (the events stream and its
per-user fairness index), so no command ever spans two slots. Named locks (a destination,
an on-demand metadata computation, the janitor's lease) use the lock key scheme with a
tag made from their name.
"""

from __future__ import annotations

import hashlib

KEY_PREFIX = "tus-staging"


def upload_key(upload_id: str) -> str:
    """The upload's record (a hash)."""
    return f"{KEY_PREFIX}:{{{upload_id}}}:upload"


def lock_key(name: str) -> str:
    """The lock of an upload, or of any named resource (see the *_lock_name functions)."""
    return f"{KEY_PREFIX}:{{{name}}}:lock"


def release_key(name: str) -> str:
    """Set by a request that wants the lock: asks the holder to commit and let go."""
    return f"{KEY_PREFIX}:{{{name}}}:release"


def finals_key(upload_id: str) -> str:
    """The final uploads waiting for this partial upload (concatenation-unfinished)."""
    return f"{KEY_PREFIX}:{{{upload_id}}}:finals"


def claim_key(upload_id: str) -> str:
    """The final upload a partial upload belongs to (each feeds exactly one final)."""
    return f"{KEY_PREFIX}:{{{upload_id}}}:claim"


def user_uploads_key(user: str) -> str:
    """The user's unfinished uploads: id -> bytes reserved (open-upload and byte limits)."""
    return f"{KEY_PREFIX}:user:{{{_tag(user)}}}:uploads"


def instance_key(instance_id: str) -> str:
    """A live server process (store/liveness.py)."""
    return f"{KEY_PREFIX}:instance:{instance_id}"


# Unfinished uploads scored by their expiry time.
EXPIRY_INDEX_KEY = f"{KEY_PREFIX}:expiry"
# Uploads in the FINALIZING state, scored by when they entered it (for the janitor).
FINALIZING_INDEX_KEY = f"{KEY_PREFIX}:finalizing"
# Every user who ever reserved bytes (store/quotas.py): where the janitor finds their hashes.
QUOTA_USERS_KEY = f"{KEY_PREFIX}:quota-users"
# The events stream for importers; its per-user indexes share its tag (one slot).
EVENTS_STREAM_KEY = f"{KEY_PREFIX}:{{events}}"


def events_user_key(user: str) -> str:
    """The ids of the user's entries in the events stream, oldest first."""
    return f"{KEY_PREFIX}:{{events}}:user:{_tag(user)}"


def _tag(text: str) -> str:
    # Names and paths may hold braces or any character: a digest keeps the key well formed.
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def destination_lock_name(user: str, twin_key: str) -> str:
    """Finalizes (and other creations) of one name in one folder, serialized. Keyed by the
    name's twin key (its NFC form), so two names that look alike also take turns."""
    return "dest-" + _tag(f"{user}\0{twin_key}")


def metadata_lock_name(user: str, relative: str) -> str:
    """One on-demand metadata computation of a file at a time, across workers and hosts."""
    return "meta-" + _tag(f"{user}\0{relative}")


# The lock one janitor pass holds at a time, across every worker and host.
JANITOR_LOCK_NAME = "janitor"
