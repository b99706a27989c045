"""A scenario's ``monitoring`` key: the monitoring modes ``run`` compares when
``--monitoring`` is not given (scenario ``monitoring``: off, metrics, metrics+log).

Checked here (:func:`targets.monitoring.check_modes`, as ``--monitoring`` is), so a
typo is refused when the scenario is loaded, not after the first target has been
measured.
"""

from __future__ import annotations

from typing import Any

from targets.monitoring import check_modes


def parse_modes(value: Any) -> tuple[str, ...]:
    """The modes listed, each one of MODES, none twice; raises ValueError saying why."""
    if value is None:
        return ()
    if isinstance(value, list):
        # YAML 1.1 reads a bare `off` as false: that is the mode "off" written plainly.
        value = ["off" if m is False else m for m in value]
    if not isinstance(value, list) or not value \
            or not all(isinstance(m, str) for m in value):
        raise ValueError(f"'monitoring' must be a list of modes, e.g. [off, metrics, "
                         f"metrics+log] (got {value!r})")
    return check_modes(value, "the scenario's 'monitoring'")
