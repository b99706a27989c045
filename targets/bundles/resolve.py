"""Which bundle a name means: a built-in (``digits``, ``vision``, ``null``) or the
user's own (a bundle module's path, or ``model:...``; :mod:`targets.bundles.user`).

Above both :mod:`targets.bundles.protocol` (the protocol every bundle implements, which imports
no bundle) and :mod:`targets.bundles.user`, so neither needs the other's resolver.
"""

from __future__ import annotations

import importlib

from targets.bundles import user
from targets.bundles.protocol import BUILTIN_BUNDLES, Bundle
from targets.errors import BundleError


def get_bundle(name: str) -> Bundle:
    """Return a fresh, not yet loaded bundle: a built-in by name, or the user's own by
    its spec (a bundle module's path, or ``model:...``: see :mod:`targets.bundles.user`)."""
    if user.is_user_spec(name):
        return user.user_bundle(name)
    try:
        ref = BUILTIN_BUNDLES[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_BUNDLES))
        raise BundleError(f"unknown bundle ({name!r}). Choose one of: {known}, or give "
                          "the path of your own bundle module (.py) or --model") from None
    module_name, _, class_name = ref.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    bundle: Bundle = cls()
    return bundle
